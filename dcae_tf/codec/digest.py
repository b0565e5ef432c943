"""The digest of a codec's coded symbols, carried at the end of its payload.

A codec appends its encoder's digest to the rANS stream and compares it with
the digest of what its decoder got back from that stream: a decoder whose
arithmetic differs from the encoder's enough to change a scale index decodes
other symbols, and is stopped with a clear error (`errors.LATENTS_MISMATCH`)
instead of producing a wrong image.
"""
import tensorflow as tf

from dcae_tf.codec import container
from dcae_tf.codec import container_ops

# farmhash64, as the container's checksum.
DIGEST_SIZE = container.CHECKSUM_SIZE


def symbols_digest(symbols):
  """8 raw bytes identifying a list of integer symbol tensors (farmhash64
  of their int32 values, in order), as a tf.string scalar."""
  flat = tf.concat([tf.reshape(tf.cast(s, tf.int32), [-1]) for s in symbols],
                   0)
  return container_ops.fingerprint_string(tf.reshape(flat, [1, -1]))


def split_payload(payload):
  """(stream, digest) of a codec payload: the digest is its last 8 bytes."""
  size = tf.cast(tf.strings.length(payload), tf.int64)
  check = tf.debugging.Assert(
      size >= DIGEST_SIZE,
      [f"truncated DCAE bitstream: its payload has fewer than {DIGEST_SIZE} "
       "bytes"], summarize=1)
  with tf.control_dependencies([check]):
    size = tf.identity(size)
  start = size - DIGEST_SIZE
  return (tf.strings.substr(payload, tf.constant(0, tf.int64), start),
          tf.strings.substr(payload, start, tf.constant(DIGEST_SIZE, tf.int64)))
