"""The digest of a codec's coded symbols, carried as its bitstream's last string.

A codec stores its encoder's digest among its strings and compares it with
the digest of what its decoder got back from the range decoder: a decoder
whose arithmetic differs from the encoder's enough to change a scale index
decodes other symbols, and is stopped with a clear error
(`errors.LATENTS_MISMATCH`) instead of producing a wrong image.
"""
import tensorflow as tf

from dcae_tf.codec import container_ops


def symbols_digest(symbols):
  """8 raw bytes identifying a list of integer symbol tensors (farmhash64
  of their int32 values, in order), as a tf.string scalar."""
  flat = tf.concat([tf.reshape(tf.cast(s, tf.int32), [-1]) for s in symbols],
                   0)
  return container_ops.fingerprint_string(tf.reshape(flat, [1, -1]))
