"""Bits: integer helpers, and the bypass's bit fields and Elias gamma codes.

The bypass is read from the end of the stream. An Elias gamma block is
stored as all of its unary prefixes, then all mantissas, so the decoder
parses a block with a popcount, a cumsum and gathers, without a loop.
Fields are at most MAX_GAMMA_EXPONENT + 1 bits wide.
"""
import numpy as np
import tensorflow as tf

from dcae_tf.rans.params import (BYTE_BITS, FIELD_WINDOW_BYTES,
                                 MAX_GAMMA_EXPONENT, PACK_WORD_BITS)

BYTE_MASK = (1 << BYTE_BITS) - 1
_POPCOUNT = np.array([bin(i).count("1") for i in range(1 << BYTE_BITS)],
                     np.int32)


def shl(a, b):
  a = tf.convert_to_tensor(a, tf.int64)
  return tf.bitwise.left_shift(a, tf.cast(b, tf.int64))


def shr(a, b):
  a = tf.convert_to_tensor(a, tf.int64)
  return tf.bitwise.right_shift(a, tf.cast(b, tf.int64))


def bit_length(v):
  """Bits of each positive int64 (1 -> 1, 2..3 -> 2, ...)."""
  powers = tf.constant([1 << k for k in range(MAX_GAMMA_EXPONENT + 2)],
                       tf.int64)
  v = tf.convert_to_tensor(v, tf.int64)
  flat = tf.searchsorted(powers, tf.reshape(v, [-1]), side="right")
  return tf.reshape(tf.cast(flat, tf.int64), tf.shape(v))


def check(condition, message):
  """An assertion whose error is `message` alone."""
  return tf.debugging.Assert(condition, [tf.constant(message)], summarize=1)


def ceil_div(a, b):
  return (a + b - 1) // b


def position_width(count):
  """Bits of a position among `count` (0 for count <= 1)."""
  count = tf.cast(count, tf.int64)
  return tf.where(count > 1, bit_length(tf.maximum(count - 1, 1)), 0)


# -- writing -----------------------------------------------------------------

def gamma_fields(magnitude, sign=None):
  """Fields (values, widths) of an Elias gamma block: all unary prefixes,
  then all mantissas (each followed by its sign bit when `sign` is given)."""
  magnitude = tf.cast(magnitude, tf.int64)
  exponent = bit_length(magnitude) - 1
  prefix_values = tf.ones_like(magnitude)
  prefix_widths = exponent + 1
  mantissa = magnitude - shl(tf.ones_like(magnitude), exponent)
  widths = exponent
  if sign is not None:
    mantissa = shl(mantissa, 1) | tf.cast(sign, tf.int64)
    widths += 1
  return [(prefix_values, prefix_widths), (mantissa, widths)]


def pack_bits(fields):
  """Concatenated big-endian bit fields -> bytes (uint8), zero padded."""
  values = tf.concat([tf.cast(v, tf.int64) for v, _ in fields], 0)
  widths = tf.concat([tf.cast(w, tf.int64) for _, w in fields], 0)
  ends = tf.cumsum(widths)
  total = tf.reduce_sum(widths)
  starts = ends - widths
  # Each field touches at most two words.
  word = starts // PACK_WORD_BITS
  offset = starts % PACK_WORD_BITS
  spill = offset + widths - PACK_WORD_BITS  # bits for the next word, if > 0
  over = tf.maximum(spill, 0)
  first = tf.where(spill > 0, shr(values, over),
                   shl(values, tf.maximum(-spill, 0)))
  second = tf.where(spill > 0,
                    shl(values & (shl(tf.ones_like(values), over) - 1),
                        PACK_WORD_BITS - over),
                    tf.zeros_like(values))
  num_words = ceil_div(total, PACK_WORD_BITS) + 2
  words = (tf.math.unsorted_segment_sum(first, word, num_words) +
           tf.math.unsorted_segment_sum(second, word + 1, num_words))
  shifts = tf.constant(list(range(PACK_WORD_BITS - BYTE_BITS, -1,
                                  -BYTE_BITS)), tf.int64)
  data = tf.reshape(shr(words[:, None], shifts[None]) & BYTE_MASK, [-1])
  return tf.cast(data[:ceil_div(total, BYTE_BITS)], tf.uint8)


def words_to_bytes(words):
  words = tf.cast(words, tf.int64)
  pairs = tf.stack([shr(words, BYTE_BITS), words & BYTE_MASK], axis=1)
  return tf.cast(tf.reshape(pairs, [-1]), tf.uint8)


def bytes_to_string(data):
  """uint8 vector -> string of those bytes (stock ops only)."""
  data = tf.convert_to_tensor(data, tf.uint8)
  serialized = tf.io.serialize_tensor(data)
  n = tf.size(data)
  # A serialized TensorProto ends with the raw tensor content.
  return tf.strings.substr(serialized, tf.strings.length(serialized) - n, n)


# -- reading -----------------------------------------------------------------
# `state` is a decoder's state (`decoder.DecoderState`): the bypass is its
# `tail` (the stream's bytes in reverse and FIELD_WINDOW_BYTES zeros), read
# from `bit_cursor`.

def read_fields(state, widths):
  """Reads fields of `widths` from the bypass. Returns (values int64,
  state)."""
  widths = tf.cast(widths, tf.int64)
  starts = state.bit_cursor + tf.cumsum(widths, exclusive=True)
  limit = tf.size(state.tail, out_type=tf.int64) - FIELD_WINDOW_BYTES
  byte = tf.minimum(starts // BYTE_BITS, limit)
  window = tf.zeros_like(starts)
  for k in range(FIELD_WINDOW_BYTES):
    window = shl(window, BYTE_BITS) | tf.gather(state.tail, byte + k)
  shift = FIELD_WINDOW_BYTES * BYTE_BITS - starts % BYTE_BITS - widths
  values = shr(window, shift) & (shl(tf.ones_like(widths), widths) - 1)
  return values, state._replace(
      bit_cursor=state.bit_cursor + tf.reduce_sum(widths))


def read_gamma(state, count, signed):
  """Reads an Elias gamma block of `count` magnitudes (see `gamma_fields`).

  The unary prefixes end at the first `count` one bits: found with a
  popcount over a window of bytes bounded by the stream and by the longest
  valid prefixes. Returns (magnitudes, signs or None, state).
  """
  count = tf.cast(count, tf.int64)
  tail = state.tail
  limit = tf.size(tail, out_type=tf.int64)
  first = tf.minimum(state.bit_cursor // BYTE_BITS, limit)
  skip = state.bit_cursor % BYTE_BITS
  span = tf.minimum(ceil_div(count * (MAX_GAMMA_EXPONENT + 1) + skip,
                             BYTE_BITS), limit - first)
  window = tail[first:first + span]
  # Bits before the cursor in the first byte do not count.
  window = tf.concat([window[:1] & (shl(tf.constant(1, tf.int64),
                                        BYTE_BITS - skip) - 1),
                      window[1:]], 0)
  ones = tf.cumsum(tf.gather(tf.constant(_POPCOUNT, tf.int64), window))
  used = tf.searchsorted(ones, count[None], side="left")[0]
  bits = tf.reshape(shr(window[:used + 1, None], tf.range(
      BYTE_BITS - 1, -1, -1, dtype=tf.int64)[None]) & 1, [-1])
  positions = tf.where(bits > 0)[:, 0][:count] - skip
  found = tf.size(positions, out_type=tf.int64)
  lengths = positions - tf.concat([[-1], positions[:-1]], 0) - 1
  checks = [
      check(tf.equal(found, count), "rans: stream truncated (bypass)"),
      check(tf.reduce_all(lengths <= MAX_GAMMA_EXPONENT),
            "rans: an escape claims an absurd length"),
  ]
  with tf.control_dependencies(checks):
    lengths = tf.identity(lengths)
  consumed = tf.reduce_max(tf.concat([positions + 1, [0]], 0))
  state = state._replace(bit_cursor=state.bit_cursor + consumed)
  widths = lengths + (1 if signed else 0)
  fields, state = read_fields(state, widths)
  if signed:
    mantissa, sign = shr(fields, 1), tf.equal(fields & 1, 1)
  else:
    mantissa, sign = fields, None
  return shl(tf.ones_like(lengths), lengths) | mantissa, sign, state
