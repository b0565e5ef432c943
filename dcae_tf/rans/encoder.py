"""The encoder: groups of integers and their tables -> one rANS stream.

All steps of all groups run backwards in one loop; its renormalisation
words are laid out in the order the decoder reads them (see the package
docstring), and the bypass is written from the stream's end.
"""
import collections

import tensorflow as tf

from dcae_tf.rans.bits import (bit_length, bytes_to_string, ceil_div, check,
                               gamma_fields, pack_bits, position_width, shl,
                               shr, words_to_bytes)
from dcae_tf.rans.params import (HEAD_EXPONENT_BITS, LANE_FLUSH_BITS,
                                 LANE_RATE_SHARE, MAX_LANES, MAX_PRECISION,
                                 STATE_BITS, STATE_LOWER, TARGET_STEPS,
                                 WORD_BITS, WORD_MASK)
from dcae_tf.rans.tables import split_group


def choose_lanes(num_symbols, estimated_bits=None, target_steps=TARGET_STEPS,
                 rate_share=LANE_RATE_SHARE):
  """Lane count for a stream of `num_symbols` loop symbols: enough for about
  `target_steps` loop steps, but at most as many as `rate_share` of
  `estimated_bits` pays for (when given); at least 1, 0 for no symbols."""
  n = tf.cast(num_symbols, tf.int64)
  lanes = ceil_div(n, target_steps)
  if estimated_bits is not None:
    affordable = tf.cast(tf.cast(estimated_bits, tf.float64) * rate_share /
                         LANE_FLUSH_BITS, tf.int64)
    lanes = tf.minimum(lanes, affordable)
  lanes = tf.clip_by_value(lanes, 1, MAX_LANES)
  return tf.where(n > 0, lanes, 0)


# Fractional bits of the fixed-point information estimate below.
_INFO_FRACTION_BITS = 8
# Where a float64's exponent and significand start.
_FLOAT64_SIGNIFICAND_BITS = 52
_FLOAT64_EXPONENT_BIAS = 1023


def _estimated_bits(plan, tables):
  """Information of a group's loop symbols under their tables (a
  `TableView`, as in all helpers here), in bits.

  In integer arithmetic, so every machine picks the same lane count (a
  float log and a float sum differ in their last bits between CPUs):
  log2 of a frequency is its exponent plus the linear interpolation of its
  significand, read from the bits of its exact float64 value (within 0.09
  bit of the true log2), in fixed point with _INFO_FRACTION_BITS bits.
  """
  freq = tf.gather(tables.freq, plan.rows * tables.bin_stride + plan.bins)
  bits = tf.bitcast(tf.cast(freq, tf.float64), tf.int64)
  log2 = tf.bitwise.right_shift(
      bits, _FLOAT64_SIGNIFICAND_BITS - _INFO_FRACTION_BITS) - (
          _FLOAT64_EXPONENT_BIAS << _INFO_FRACTION_BITS)
  info = (tables.precision << _INFO_FRACTION_BITS) - log2
  return tf.cast(tf.reduce_sum(info), tf.float64) / (
      1 << _INFO_FRACTION_BITS)


class _GroupPlan(collections.namedtuple(
    "_GroupPlan", "rows bins classes escapes sparse_count sparse_positions "
                  "sparse_diffs num_sparse")):
  """A group split into its loop symbols and its bypass contents."""


def _plan_group(values, index, tables):
  values = tf.cast(tf.reshape(values, [-1]), tf.int64)
  index = tf.cast(tf.reshape(index, [-1]), tf.int64)
  sparse_at, loop_at, rows, counts = split_group(index, tables)
  # Sparse: exceptions to each table's most likely value.
  diffs = (tf.gather(values, sparse_at) -
           tf.gather(tables.mode_value, tf.gather(index, sparse_at)))
  exception = tf.where(tf.not_equal(diffs, 0))[:, 0]
  # Loop symbols: bins, and escapes for values outside the table.
  rel = tf.gather(values, loop_at) - tf.gather(tables.cdf_offset, rows)
  overflow = tf.gather(tables.overflow_bin, rows)
  inside = tf.logical_and(rel >= 0, rel < overflow)
  bins = tf.where(inside, rel, overflow)
  escape = tf.logical_not(inside)
  rel_escaped = tf.boolean_mask(rel, escape)
  over_escaped = tf.boolean_mask(overflow, escape)
  negative = rel_escaped < 0
  magnitude = tf.where(negative, -rel_escaped, rel_escaped - over_escaped + 1)
  return _GroupPlan(rows, bins, counts, (magnitude, negative),
                    tf.size(exception, out_type=tf.int64), exception,
                    tf.gather(diffs, exception),
                    tf.size(sparse_at, out_type=tf.int64))


def _group_bypass(plan):
  """Bypass fields of one group, in the order `decode_group` reads them."""
  fields = gamma_fields(plan.sparse_count[None] + 1)
  width = position_width(plan.num_sparse)
  fields.append((plan.sparse_positions,
                 tf.fill(tf.shape(plan.sparse_positions), width)))
  diffs = plan.sparse_diffs
  magnitude = tf.concat([tf.abs(diffs), plan.escapes[0]], 0)
  sign = tf.concat([diffs < 0, plan.escapes[1]], 0)
  return fields + gamma_fields(magnitude, sign)


def _segments(plan, tables, lanes):
  """(start, freq) of a group's loop symbols, each width class padded to
  whole steps with empty-lane symbols, in decoding order."""
  stride = tables.bin_stride
  at = plan.rows * stride + plan.bins
  start, freq = tf.gather(tables.lower, at), tf.gather(tables.freq, at)
  total = 1 << tables.precision
  out_start, out_freq = [], []
  begin = tf.constant(0, tf.int64)
  for c in range(len(tables.class_widths)):
    n = plan.classes[c]
    pad = ceil_div(n, lanes) * lanes - n
    out_start += [start[begin:begin + n], tf.zeros([pad], tf.int64)]
    out_freq += [freq[begin:begin + n], tf.fill([pad], tf.constant(
        total, tf.int64))]
    begin += n
  return tf.concat(out_start, 0), tf.concat(out_freq, 0)


def _encode_loop(x, start, freq, precision, lanes):
  """Codes (start, freq) pairs dealt to the lanes step by step, running the
  steps backwards. Returns (x, the words in decoding order)."""
  steps = tf.size(start, out_type=tf.int64) // lanes
  start = tf.reshape(start, [steps, lanes])
  freq = tf.reshape(freq, [steps, lanes])
  p = precision
  limit_shift = WORD_BITS + STATE_BITS - p
  # One more element than steps, so that an empty loop's stack has a shape.
  words = tf.TensorArray(tf.int64, size=tf.cast(steps, tf.int32) + 1,
                         element_shape=tf.TensorShape([None]))

  def body(t, x, words):
    f = tf.gather(freq, t)
    c = tf.gather(start, t)
    renorm = x >= shl(f, limit_shift)
    words = words.write(t, tf.where(renorm, x & WORD_MASK, -1))
    x = tf.where(renorm, shr(x, WORD_BITS), x)
    return t - 1, shl(x // f, p) + x % f + c, words

  _, x, words = tf.while_loop(
      lambda t, *_: t >= 0, body,
      (tf.cast(steps, tf.int32) - 1, x, words))
  words = words.write(tf.cast(steps, tf.int32),
                      tf.fill(tf.shape(x), tf.constant(-1, tf.int64)))
  flat = tf.reshape(words.stack(), [-1])
  return x, tf.boolean_mask(flat, flat >= 0)


def encode(groups, tables, lanes=None):
  """Codes groups of integers into one string.

  Args:
    groups: list of (values, table_index) pairs of int32 tensors (any
      shapes; flattened), in decoding order.
    tables: a `CodingTables` (`Tables`, `TfcTables`) for all groups or a
      list of one per group, all of the same precision.
    lanes: lane count (int or scalar tensor, <= MAX_LANES); by default
      `choose_lanes` of the loop symbol count.

  Returns:
    A string scalar.
  """
  if not isinstance(tables, (list, tuple)):
    tables = [tables] * len(groups)
  if len(tables) != len(groups):
    raise ValueError(f"{len(groups)} groups but {len(tables)} tables")
  tables = [t.view() for t in tables]
  precision = {t.precision for t in tables}
  if len(precision) > 1:
    raise ValueError("all tables of a stream need the same precision")
  precision = precision.pop() if precision else MAX_PRECISION
  plans = [_plan_group(v, i, t) for (v, i), t in zip(groups, tables)]
  informative = tf.add_n([tf.size(p.rows, out_type=tf.int64) for p in plans]
                         + [tf.constant(0, tf.int64)])
  if lanes is None:
    lanes = choose_lanes(informative, tf.add_n(
        [_estimated_bits(p, t) for p, t in zip(plans, tables)] +
        [tf.constant(0., tf.float64)]))
  lanes = tf.cast(lanes, tf.int64)
  with tf.control_dependencies([
      check(tf.logical_and(lanes <= MAX_LANES,
                           tf.logical_or(lanes > 0,
                                         tf.equal(informative, 0))),
            f"rans: lane count must be in [1, {MAX_LANES}]")]):
    lanes = tf.identity(lanes)
  segments = [_segments(p, t, tf.maximum(lanes, 1))
              for p, t in zip(plans, tables)]
  start = tf.concat([s for s, _ in segments], 0)
  freq = tf.concat([f for _, f in segments], 0)
  x = tf.fill([lanes], tf.constant(STATE_LOWER, tf.int64))
  x, words = _encode_loop(x, start, freq, precision, tf.maximum(lanes, 1))
  exponent = bit_length(x) - 1 - STATE_BITS
  fields = gamma_fields(lanes[None] + 1) + [
      (exponent, tf.fill(tf.shape(x), tf.constant(HEAD_EXPONENT_BITS,
                                                  tf.int64))),
      (x - shl(tf.ones_like(x), exponent + STATE_BITS),
       exponent + STATE_BITS)]
  for plan in plans:
    fields += _group_bypass(plan)
  bypass = pack_bits(fields)
  data = tf.concat([words_to_bytes(words), tf.reverse(bypass, [0])], 0)
  return bytes_to_string(data)
