"""The decoder: a rANS stream -> groups of integers, resumable.

`start(stream)`, then `decode_group` per group (its table indexes may depend
on the groups decoded before), then `finish`, whose checks the outputs must
depend on. Every loop's trip count comes from symbol counts and every read
is clamped into the stream (see the package docstring).
"""
import collections

import tensorflow as tf

from dcae_tf.rans.bits import (ceil_div, check, position_width, read_fields,
                               read_gamma, shl, shr)
from dcae_tf.rans.params import (BYTE_BITS, FIELD_WINDOW_BYTES,
                                 HEAD_EXPONENT_BITS, MAX_LANES, STATE_BITS,
                                 STATE_LOWER, WORD_BITS)
from dcae_tf.rans.tables import split_group


class DecoderState(collections.namedtuple(
    "DecoderState", "words tail num_bytes x word_cursor bit_cursor")):
  """Where a decoder is: lane states and read positions in the stream.

  words: the stream's 16-bit words (int64) and one 0 past them, for clamped
    reads; tail: the stream's bytes in reverse (the bypass, read from the
    end) and FIELD_WINDOW_BYTES zeros; num_bytes: the stream's length;
    x: lane states (int64 [K]); word_cursor / bit_cursor: words read from
    the front, bypass bits read from the end.
  """


def start(stream):
  """A decoder at the start of `stream` (a string scalar)."""
  data = tf.cast(tf.io.decode_raw(stream, tf.uint8), tf.int64)
  num_bytes = tf.size(data, out_type=tf.int64)
  even = data[:num_bytes // 2 * 2]
  words = tf.reshape(even, [-1, 2])
  words = tf.concat([shl(words[:, 0], BYTE_BITS) | words[:, 1], [0]], 0)
  tail = tf.concat([tf.reverse(data, [0]),
                    tf.zeros([FIELD_WINDOW_BYTES], tf.int64)], 0)
  state = DecoderState(words, tail, num_bytes,
                       tf.zeros([0], tf.int64), tf.constant(0, tf.int64),
                       tf.constant(0, tf.int64))
  lanes, _, state = read_gamma(state, 1, signed=False)
  lanes = lanes[0] - 1
  with tf.control_dependencies([
      check(lanes <= MAX_LANES, "rans: absurd lane count")]):
    lanes = tf.identity(lanes)
  exponent, state = read_fields(state, tf.fill([lanes], tf.constant(
      HEAD_EXPONENT_BITS, tf.int64)))
  mantissa, state = read_fields(state, exponent + STATE_BITS)
  x = shl(tf.ones_like(exponent), exponent + STATE_BITS) | mantissa
  with tf.control_dependencies([
      _check_within(state, state.word_cursor, state.bit_cursor)]):
    return state._replace(x=tf.identity(x))


def _check_within(state, word_cursor, bit_cursor):
  used = 2 * word_cursor + ceil_div(bit_cursor, BYTE_BITS)
  return check(used <= state.num_bytes, "rans: stream truncated")


def _decode_loop(state, rows, table, tables):
  """Decodes loop symbols whose tables (`rows`, in lane order) all belong to
  the width class of `table` (the first columns of every row of the
  `TableView` `tables`). Returns (bins, state)."""
  lanes = tf.size(state.x, out_type=tf.int64)
  n = tf.size(rows, out_type=tf.int64)
  steps = ceil_div(n, tf.maximum(lanes, 1))
  pad = steps * lanes - n
  rows = tf.reshape(tf.concat([rows, tf.fill([pad], tables.empty_row)], 0),
                    [steps, lanes])
  rows = tf.cast(rows, tf.int32)
  p = tables.precision
  slot_mask = (1 << p) - 1
  stride = tables.bin_stride
  # Reads past the stream's words (only a damaged stream makes them) get
  # zeros: this group cannot read more words than it has symbols.
  words = tf.concat([state.words, tf.zeros([steps * lanes], tf.int64)], 0)
  # One more element than steps, so that an empty loop's stack has a shape.
  out = tf.TensorArray(tf.int32, size=tf.cast(steps, tf.int32) + 1,
                       element_shape=tf.TensorShape([None]))

  def body(t, x, cursor, out):
    r = tf.gather(rows, t)
    slot = x & slot_mask
    found = tf.cast(tf.gather(table, r) <= slot[:, None], tf.int32)
    bins = tf.reduce_sum(found, axis=1)
    at = r * stride + bins
    x = tf.gather(tables.freq, at) * shr(x, p) + slot - tf.gather(
        tables.lower, at)
    refill = x < STATE_LOWER
    count = tf.cast(refill, tf.int64)
    word = tf.gather(words, cursor + tf.cumsum(count, exclusive=True))
    x = tf.where(refill, shl(x, WORD_BITS) | word, x)
    return t + 1, x, cursor + tf.reduce_sum(count), out.write(t, bins)

  _, x, cursor, out = tf.while_loop(
      lambda t, *_: t < tf.cast(steps, tf.int32), body,
      (tf.constant(0), state.x, state.word_cursor, out))
  out = out.write(tf.cast(steps, tf.int32), tf.zeros(tf.shape(x), tf.int32))
  bins = tf.reshape(out.stack(), [-1])[:n]
  return tf.cast(bins, tf.int64), state._replace(x=x, word_cursor=cursor)


def decode_group(state, table_index, tables):
  """Decodes the next group: its values (int32, the shape of table_index)
  and the state after it. `tables`: a `CodingTables`."""
  tables = tables.view()
  shape = tf.shape(table_index)
  index = tf.cast(tf.reshape(table_index, [-1]), tf.int64)
  n = tf.size(index, out_type=tf.int64)
  sparse_at, loop_at, rows, counts = split_group(index, tables)
  num_sparse = tf.size(sparse_at, out_type=tf.int64)
  with tf.control_dependencies([check(
      tf.logical_or(tf.size(state.x) > 0, tf.equal(tf.size(rows), 0)),
      "rans: stream has no lanes for this group")]):
    rows = tf.identity(rows)
  with tf.control_dependencies([
      _check_within(state, state.word_cursor, state.bit_cursor)]):
    rows = tf.identity(rows)
  bins, begin = [], tf.constant(0, tf.int64)
  for c, table in enumerate(tables.class_tables):
    if len(tables.class_tables) == 1:
      segment = rows
    else:
      segment = rows[begin:begin + counts[c]]
      begin += counts[c]
    decoded, state = _decode_loop(state, segment, table, tables)
    bins.append(decoded)
  bins = tf.concat(bins, 0)
  # Bypass: sparse exceptions, then the escapes' magnitudes.
  count, _, state = read_gamma(state, 1, signed=False)
  count = count[0] - 1
  with tf.control_dependencies([check(
      count <= num_sparse, "rans: more exceptions than sparse symbols")]):
    count = tf.identity(count)
  width = position_width(num_sparse)
  positions, state = read_fields(state, tf.fill([count], width))
  overflow = tf.gather(tables.overflow_bin, rows)
  escape = tf.equal(bins, overflow)
  num_escapes = tf.reduce_sum(tf.cast(escape, tf.int64))
  magnitude, negative, state = read_gamma(state, count + num_escapes,
                                          signed=True)
  checks = [
      check(tf.reduce_all(positions < num_sparse),
            "rans: exception position out of range"),
      check(tf.reduce_all(positions[1:] > positions[:-1]),
            "rans: exception positions not increasing"),
      _check_within(state, state.word_cursor, state.bit_cursor),
  ]
  with tf.control_dependencies(checks):
    magnitude = tf.identity(magnitude)
  signed = tf.where(negative, -magnitude, magnitude)
  # Loop values.
  esc_magnitude, esc_negative = magnitude[count:], negative[count:]
  esc_over = tf.boolean_mask(overflow, escape)
  esc_rel = tf.where(esc_negative, -esc_magnitude,
                     esc_magnitude + esc_over - 1)
  rel = tf.tensor_scatter_nd_update(bins, tf.where(escape), esc_rel)
  loop_values = rel + tf.gather(tables.cdf_offset, rows)
  # Sparse values.
  sparse_values = tf.tensor_scatter_nd_add(
      tf.gather(tables.mode_value, tf.gather(index, sparse_at)),
      positions[:, None], signed[:count])
  values = tf.scatter_nd(
      tf.concat([loop_at, sparse_at], 0)[:, None],
      tf.concat([loop_values, sparse_values], 0), [n])
  return tf.reshape(tf.cast(values, tf.int32), shape), state


def finish(state):
  """Checks that the stream was consumed exactly; returns a true scalar to
  make outputs depend on (raises InvalidArgumentError otherwise)."""
  used = 2 * state.word_cursor + ceil_div(state.bit_cursor, BYTE_BITS)
  tail_bits = state.bit_cursor % BYTE_BITS
  last = tf.gather(state.tail, tf.maximum(state.bit_cursor // BYTE_BITS, 0))
  padding = tf.where(tail_bits > 0, last & (shl(tf.constant(1, tf.int64),
                                                BYTE_BITS - tail_bits) - 1), 0)
  checks = [
      check(used <= state.num_bytes, "rans: stream truncated"),
      check(used >= state.num_bytes, "rans: stream not fully consumed"),
      check(tf.equal(padding, 0), "rans: nonzero padding bits"),
      check(tf.reduce_all(tf.equal(state.x, STATE_LOWER)),
            "rans: final lane states mismatch"),
  ]
  with tf.control_dependencies(checks):
    return tf.constant(True)


def decode(stream, table_indexes, tables):
  """Decodes all groups at once (for groups whose indexes are known)."""
  if not isinstance(tables, (list, tuple)):
    tables = [tables] * len(table_indexes)
  state = start(stream)
  out = []
  for index, t in zip(table_indexes, tables):
    values, state = decode_group(state, index, t)
    out.append(values)
  with tf.control_dependencies([finish(state)]):
    return [tf.identity(v) for v in out]
