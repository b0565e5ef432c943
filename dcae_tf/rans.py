"""An exact entropy coder made of stock TensorFlow ops: interleaved rANS.

TFC's range coder is a set of custom ops that stock TF Serving, TFLite and
TF.js cannot run. This module codes the same integers with the same
quantised tables (TFC's `cdf` / `cdf_offset`, precision 16, overflow bin)
using only ops that TensorFlow 2.14 registers (`tf.while_loop`, integer and
bitwise arithmetic, gathers, cumulative sums, `tf.io.decode_raw`,
`tf.io.serialize_tensor` and `tf.strings.substr`), in graph mode with
unknown-size inputs. It imports neither tensorflow_compression nor other
dcae_tf modules: TFC entropy models are passed in and only read.

Stream (one string for all groups)::

  [rANS words, in decoding order] ......................... [bypass bits]
   16-bit big-endian words, read from the front      read from the end

* Symbols are grouped (z, then y slice 0, 1, ...); the decoder resumes after
  each group, so a group's table indexes may depend on the groups before.
* Informative symbols: K rANS lanes (Giesen, arXiv 1402.3392) in lockstep,
  one `tf.while_loop` per group whose trip count is ceil(n / K), n the
  group's informative symbol count (known to the decoder from the table
  indexes). State x in [L, 2**34), L = 2**18, 16-bit renormalisation words;
  at most one word per lane and step. The words of the lanes that refill at
  a step are read in lane order at positions given by an exclusive cumsum
  over the refilling lanes; the encoder runs all steps of all groups
  backwards in one loop and lays its words out in that order. Lanes are
  shared by all groups: each lane's final state is flushed once per stream,
  into the bypass (its bit length above L in 4 bits, then its bits below
  the leading one); the encoder starts every lane at L and the decoder
  checks that every lane ends at L, a free integrity check. The symbols of
  a group are sorted (stably) by their table's width class before they are
  dealt to lanes, and each class has its own loop, so the decoder's
  per-step table search (a gather of the lanes' CDF rows from a 2-D table
  and a compare-sum) reads few entries per lane. Lanes without a symbol in
  a step use an extra one-bin table that leaves a state unchanged.
* Nearly certain symbols, those whose table gives its most likely value at
  least 1 - 2**-SPARSE_ESCAPE_BITS: not in the loop. Their exceptions (the
  symbols that are not that value) are listed in the bypass: a count, the
  positions (fixed width), and the differences (Elias gamma + sign).
* Values outside a table's range: as in TFC, the table's last ("overflow")
  bin in the rANS stream, and the magnitude in the bypass, Elias gamma
  coded with a sign bit (TFC's cost exactly). Any int32 value round-trips.
* Bypass: Elias gamma codes are written as all of a block's unary prefixes,
  then all mantissas, so the decoder parses a block with a popcount, a
  cumsum and gathers, without a loop. K itself is the stream's first
  bypass field (gamma of K + 1), chosen by the encoder (`choose_lanes`).

Bounded decoding: every loop's trip count comes from symbol counts; every
read is clamped into the stream and the totals are checked afterwards; a
decoded count or length that cannot be right (more lanes than
`MAX_LANES`, more exceptions than symbols, an Elias gamma exponent over 32)
raises `tf.errors.InvalidArgumentError` with a one-line message, as do a
stream that was read past its end, not consumed exactly, or whose lanes do
not end at L (`finish`). A damaged stream that passes all of these decodes
to wrong but bounded values, which the codec's symbols digest refuses.

Measured trade-off (bench/entropy_coding.py; docs/entropy_coding.md has
the tables; 2026-12-01, 2-core AMD EPYC with a load average of 8-12 from
other jobs, so times are ratios from one run): each lane costs ~21 bits
(the decoder's final state L carries STATE_BITS = 18 bits of nothing, plus
the exponent and a state's spread in bit length); L = 2**16 costs ~0.25 %
in coding loss at high rates, 2**18 nothing measurable. A loop step costs
~20-40 us decoding, ~20 us encoding (op dispatch; gathers with a 2-D index
into a flat table were 45 us slower per step than row gathers, hence the
width classes). So `choose_lanes` takes enough lanes for `TARGET_STEPS`
steps in all, but no more than spend LANE_RATE_SHARE of the payload that
the tables predict on flushes: at 0.1 bpp the rate target wins (7-12
lanes, payload 0.6 % above TFC's at a 0.45 % share; the coder's time was
12 % of the small codec's encode and 15 % of its decode); at 0.7-1 bpp
49-71 lanes, 0.47 % above TFC.
"""
import collections
import math

import numpy as np
import tensorflow as tf

# rANS parameters: state in [STATE_LOWER, STATE_LOWER << WORD_BITS).
WORD_BITS = 16
WORD_MASK = (1 << WORD_BITS) - 1
STATE_BITS = 18
STATE_LOWER = 1 << STATE_BITS
# A lane's final state is flushed into the bypass as its bit length above
# STATE_BITS (in HEAD_EXPONENT_BITS) and the bits below its leading one.
HEAD_EXPONENT_BITS = (WORD_BITS - 1).bit_length()
MAX_PRECISION = 16
# Lanes: at most this many (bounds a corrupt stream's allocation). By
# default as many as keep the loops near TARGET_STEPS steps in all, but no
# more than spend LANE_RATE_SHARE of the estimated payload on their flushes
# (about LANE_FLUSH_BITS each: STATE_BITS that the decoder's final state L
# carries for nothing, the exponent, and a state's spread in bit length).
MAX_LANES = 4096
TARGET_STEPS = 1500
LANE_RATE_SHARE = 0.0035
LANE_FLUSH_BITS = 21
# A table is coded sparsely when its most likely bin leaves at most
# 2**-SPARSE_ESCAPE_BITS of the mass to the others.
SPARSE_ESCAPE_BITS = 10
# Width classes of the decoder's table search (entries compared per lane).
CLASS_WIDTHS = (8, 32, 128, 512, 2048)
# Elias gamma exponents: magnitudes are below 2**33 (int32 differences).
MAX_GAMMA_EXPONENT = 32
# A bypass field (at most MAX_GAMMA_EXPONENT + 1 bits) is read from a window
# of this many bytes starting at its first bit's byte.
FIELD_WINDOW_BYTES = 5
BYTE_BITS = 8

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.int32)


class Tables:
  """Quantised CDFs, one row per table, as tensors for the coder.

  `cdf` is (T, W) int: row t holds cdf_length[t] entries, 0 first and
  2**precision last, padded with 2**precision; bin b of table t is
  [cdf[t, b], cdf[t, b + 1]) and codes value cdf_offset[t] + b, except the
  last bin (cdf_length[t] - 2), TFC's overflow bin. W must be static.

  Derived here once: which tables are coded sparsely and their most likely
  value; each table's width class (the decoder searches a table among the
  first `class_widths[c]` entries of its row); and one more row, a table
  with a single bin of all the mass, which the loops use for lanes without
  a symbol (coding and decoding it leave a state unchanged).
  """

  def __init__(self, cdf, cdf_offset, cdf_length, precision):
    precision = int(precision)
    if not 1 <= precision <= MAX_PRECISION:
      raise ValueError(f"precision must be in [1, {MAX_PRECISION}], "
                       f"got {precision}")
    self.precision = precision
    cdf = tf.cast(tf.convert_to_tensor(cdf), tf.int64)
    width = cdf.shape[1]
    if width is None or width < 2:
      raise ValueError("tables need a static width of at least 2 entries")
    self.cdf_offset = tf.cast(tf.convert_to_tensor(cdf_offset), tf.int64)
    self.cdf_length = tf.cast(tf.convert_to_tensor(cdf_length), tf.int64)
    total = 1 << precision
    self.num_tables = tf.shape(cdf, out_type=tf.int64)[0]
    # Row `num_tables`: the empty-lane table [0, total, total, ...].
    self.cdf = tf.concat(
        [cdf, tf.concat([tf.zeros([1, 1], tf.int64),
                         tf.fill([1, width - 1], tf.constant(total, tf.int64))],
                        1)], 0)
    self.bin_stride = width - 1
    self.lower = tf.reshape(self.cdf[:, :-1], [-1])
    self.freq = tf.reshape(self.cdf[:, 1:] - self.cdf[:, :-1], [-1])
    self.overflow_bin = self.cdf_length - 2
    freq = cdf[:, 1:] - cdf[:, :-1]
    mode = tf.argmax(freq, axis=1, output_type=tf.int64)
    top = tf.reduce_max(freq, axis=1)
    self.sparse = tf.logical_and(
        (total - top) * (1 << SPARSE_ESCAPE_BITS) <= total,
        mode < self.overflow_bin)
    self.mode_value = self.cdf_offset + mode
    # A bin is the count of a row's inner bounds cdf[1:length - 1] at or
    # below the slot; a class compares its rows' first `w` inner bounds.
    inner = max(width - 2, 1)
    self.class_widths = [w for w in CLASS_WIDTHS if w < inner] + [inner]
    self.table_class = tf.searchsorted(
        tf.constant(self.class_widths, tf.int64), self.cdf_length - 2,
        side="left", out_type=tf.int64)
    self.class_tables = [self.cdf[:, 1:1 + w] for w in self.class_widths]


def tables_from_tfc(cdf, cdf_offset):
  """`Tables` from TFC's flat table format (eager / numpy).

  TFC (2.14) stores all tables in one vector: per table, -precision (the
  sign enables the overflow bin), then the CDF from 0 to 2**precision
  (pmf length + 2 entries, the last bin being the overflow bin). This
  parses it the way TFC's range coder kernel does.
  """
  flat = np.asarray(cdf, np.int64).ravel()
  offsets = np.asarray(cdf_offset, np.int64).ravel()
  rows, precision, i = [], None, 0
  while i < flat.size:
    p = -int(flat[i])
    if not 1 <= p <= MAX_PRECISION:
      raise ValueError(f"table {len(rows)}: header {flat[i]} is not a "
                       "negative precision (overflow-enabled TFC table)")
    if precision not in (None, p):
      raise ValueError("tables of different precisions")
    precision, top = p, 1 << p
    end = i + 1
    while end < flat.size and flat[end] != top:
      end += 1
    row = flat[i + 1:end + 1]
    if end == flat.size or row[0] != 0 or np.any(np.diff(row) <= 0):
      raise ValueError(f"table {len(rows)} is not a strictly increasing "
                       f"CDF from 0 to {top}")
    rows.append(row)
    i = end + 1
    while i < flat.size and flat[i] == top:
      i += 1
  if len(rows) != offsets.size:
    raise ValueError(f"{len(rows)} tables but {offsets.size} offsets")
  lengths = np.array([r.size for r in rows], np.int32)
  padded = np.full((len(rows), max(lengths.max(initial=2), 2)), 1 << (
      precision or MAX_PRECISION), np.int32)
  for t, row in enumerate(rows):
    padded[t, :row.size] = row
  return Tables(padded, offsets.astype(np.int32), lengths,
                precision or MAX_PRECISION)


# -- TFC entropy models: which value and which table TFC codes -------------

def batched_tables(model):
  """Tables of a `tfc.ContinuousBatchedEntropyModel` (one per channel)."""
  return tables_from_tfc(model.cdf.numpy(), model.cdf_offset.numpy())


def batched_symbols(model, bottleneck):
  """(values, table_index) int32 vectors that TFC's `compress` codes.

  As `ContinuousBatchedEntropyModel.compress`: round(x - offset), elements
  in row-major order; with a prior of shape (C,) element j uses table
  j mod C (the channel). Values are absolute (TFC subtracts cdf_offset).
  """
  x = tf.convert_to_tensor(bottleneck, dtype=model.bottleneck_dtype)
  if model.quantization_offset is not None:
    x -= model.quantization_offset
  values = tf.reshape(tf.cast(tf.round(x), tf.int32), [-1])
  num_tables = tf.reduce_prod(model.prior_shape_tensor)
  index = tf.range(tf.size(values)) % num_tables
  return values, index


def batched_index(model, shape):
  """The table indexes of a bottleneck of `shape` (see `batched_symbols`)."""
  num_tables = tf.reduce_prod(model.prior_shape_tensor)
  return tf.range(tf.reduce_prod(shape)) % num_tables


def batched_dequantize(model, values, shape):
  """What TFC's `decompress` returns for decoded `values` of `shape`."""
  out = tf.cast(tf.reshape(values, shape), model.bottleneck_dtype)
  if model.quantization_offset is not None:
    out += model.quantization_offset
  return out


def indexed_tables(model):
  """Tables of a `tfc.LocationScaleIndexedEntropyModel` (one per scale)."""
  return tables_from_tfc(model.cdf.numpy(), model.cdf_offset.numpy())


def indexed_index(model, scale_indexes):
  """Table index per element, as TFC's indexed `compress` derives it.

  TFC bounds the indexes to [0, num_scales - 1] and casts them to int32.
  """
  num_scales, = model.index_ranges
  index = tf.clip_by_value(scale_indexes, 0, num_scales - 1)
  return tf.reshape(tf.cast(index, tf.int32), [-1])


def indexed_symbols(model, bottleneck, scale_indexes, loc=None):
  """(values, table_index): round(y - loc) and the scale index, flattened."""
  x = tf.convert_to_tensor(bottleneck, dtype=model.bottleneck_dtype)
  if loc is not None:
    x -= loc
  values = tf.reshape(tf.cast(tf.round(x), tf.int32), [-1])
  return values, indexed_index(model, scale_indexes)


def indexed_dequantize(model, values, loc=None, shape=None):
  """What TFC's `decompress` returns for decoded `values` (float + loc)."""
  if shape is None:
    shape = tf.shape(loc)
  out = tf.cast(tf.reshape(values, shape), model.bottleneck_dtype)
  if loc is not None:
    out += loc
  return out


# -- small pieces ------------------------------------------------------------

def _shl(a, b):
  a = tf.convert_to_tensor(a, tf.int64)
  return tf.bitwise.left_shift(a, tf.cast(b, tf.int64))


def _shr(a, b):
  a = tf.convert_to_tensor(a, tf.int64)
  return tf.bitwise.right_shift(a, tf.cast(b, tf.int64))


def _bit_length(v):
  """Bits of each positive int64 (1 -> 1, 2..3 -> 2, ...)."""
  powers = tf.constant([1 << k for k in range(MAX_GAMMA_EXPONENT + 2)],
                       tf.int64)
  v = tf.convert_to_tensor(v, tf.int64)
  flat = tf.searchsorted(powers, tf.reshape(v, [-1]), side="right")
  return tf.reshape(tf.cast(flat, tf.int64), tf.shape(v))


def _check(condition, message):
  """An assertion whose error is `message` alone."""
  return tf.debugging.Assert(condition, [tf.constant(message)], summarize=1)


def _ceil_div(a, b):
  return (a + b - 1) // b


def choose_lanes(num_symbols, estimated_bits=None, target_steps=TARGET_STEPS,
                 rate_share=LANE_RATE_SHARE):
  """Lane count for a stream of `num_symbols` loop symbols: enough for about
  `target_steps` loop steps, but at most as many as `rate_share` of
  `estimated_bits` pays for (when given); at least 1, 0 for no symbols."""
  n = tf.cast(num_symbols, tf.int64)
  lanes = _ceil_div(n, target_steps)
  if estimated_bits is not None:
    affordable = tf.cast(tf.cast(estimated_bits, tf.float64) * rate_share /
                         LANE_FLUSH_BITS, tf.int64)
    lanes = tf.minimum(lanes, affordable)
  lanes = tf.clip_by_value(lanes, 1, MAX_LANES)
  return tf.where(n > 0, lanes, 0)


def _estimated_bits(plan, tables):
  """Information of a group's loop symbols under their tables, in bits."""
  freq = tf.gather(tables.freq, plan.rows * tables.bin_stride + plan.bins)
  return tf.reduce_sum(tables.precision - tf.math.log(
      tf.cast(freq, tf.float64)) / math.log(2.))


# -- bypass fields -----------------------------------------------------------

def _gamma_fields(magnitude, sign=None):
  """Fields (values, widths) of an Elias gamma block: all unary prefixes,
  then all mantissas (each followed by its sign bit when `sign` is given)."""
  magnitude = tf.cast(magnitude, tf.int64)
  exponent = _bit_length(magnitude) - 1
  prefix_values = tf.ones_like(magnitude)
  prefix_widths = exponent + 1
  mantissa = magnitude - _shl(tf.ones_like(magnitude), exponent)
  widths = exponent
  if sign is not None:
    mantissa = _shl(mantissa, 1) | tf.cast(sign, tf.int64)
    widths += 1
  return [(prefix_values, prefix_widths), (mantissa, widths)]


def _pack_bits(fields):
  """Concatenated big-endian bit fields -> bytes (uint8), zero padded."""
  values = tf.concat([tf.cast(v, tf.int64) for v, _ in fields], 0)
  widths = tf.concat([tf.cast(w, tf.int64) for _, w in fields], 0)
  ends = tf.cumsum(widths)
  total = tf.reduce_sum(widths)
  starts = ends - widths
  # Each field (<= 33 bits) touches at most two 32-bit words.
  word = starts // 32
  offset = starts % 32
  spill = offset + widths - 32  # bits that go into the next word, if > 0
  over = tf.maximum(spill, 0)
  first = tf.where(spill > 0, _shr(values, over),
                   _shl(values, tf.maximum(-spill, 0)))
  second = tf.where(spill > 0,
                    _shl(values & (_shl(tf.ones_like(values), over) - 1),
                         32 - over),
                    tf.zeros_like(values))
  num_words = _ceil_div(total, 32) + 2
  words = (tf.math.unsorted_segment_sum(first, word, num_words) +
           tf.math.unsorted_segment_sum(second, word + 1, num_words))
  shifts = tf.constant([24, 16, 8, 0], tf.int64)
  data = tf.reshape(_shr(words[:, None], shifts[None]) & 255, [-1])
  return tf.cast(data[:_ceil_div(total, BYTE_BITS)], tf.uint8)


def _words_to_bytes(words):
  words = tf.cast(words, tf.int64)
  pairs = tf.stack([_shr(words, BYTE_BITS), words & 255], axis=1)
  return tf.cast(tf.reshape(pairs, [-1]), tf.uint8)


def _bytes_to_string(data):
  """uint8 vector -> string of those bytes (stock ops only)."""
  data = tf.convert_to_tensor(data, tf.uint8)
  serialized = tf.io.serialize_tensor(data)
  n = tf.size(data)
  # A serialized TensorProto ends with the raw tensor content.
  return tf.strings.substr(serialized, tf.strings.length(serialized) - n, n)


# -- encoder -----------------------------------------------------------------

class _GroupPlan(collections.namedtuple(
    "_GroupPlan", "rows bins classes escapes sparse_count sparse_positions "
                  "sparse_diffs num_sparse")):
  """A group split into its loop symbols and its bypass contents."""


def _split(index, tables):
  """Positions of a group's sparse and loop symbols, the loop symbols in the
  order the lanes code them (stably sorted by width class), their tables
  and the symbol count of each class."""
  sparse = tf.gather(tables.sparse, index)
  sparse_at = tf.where(sparse)[:, 0]
  loop_at = tf.where(tf.logical_not(sparse))[:, 0]
  rows = tf.gather(index, loop_at)
  classes = tf.gather(tables.table_class, rows)
  order = tf.argsort(classes, stable=True)
  counts = tf.math.bincount(tf.cast(classes, tf.int32),
                            minlength=len(tables.class_widths),
                            maxlength=len(tables.class_widths),
                            dtype=tf.int64)
  return (sparse_at, tf.gather(loop_at, order), tf.gather(rows, order),
          counts)


def _plan_group(values, index, tables):
  values = tf.cast(tf.reshape(values, [-1]), tf.int64)
  index = tf.cast(tf.reshape(index, [-1]), tf.int64)
  sparse_at, loop_at, rows, counts = _split(index, tables)
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
  fields = _gamma_fields(plan.sparse_count[None] + 1)
  width = _position_width(plan.num_sparse)
  fields.append((plan.sparse_positions,
                 tf.fill(tf.shape(plan.sparse_positions), width)))
  diffs = plan.sparse_diffs
  magnitude = tf.concat([tf.abs(diffs), plan.escapes[0]], 0)
  sign = tf.concat([diffs < 0, plan.escapes[1]], 0)
  return fields + _gamma_fields(magnitude, sign)


def _position_width(count):
  """Bits of a position among `count` (0 for count <= 1)."""
  count = tf.cast(count, tf.int64)
  return tf.where(count > 1, _bit_length(tf.maximum(count - 1, 1)), 0)


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
    pad = _ceil_div(n, lanes) * lanes - n
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
    renorm = x >= _shl(f, limit_shift)
    words = words.write(t, tf.where(renorm, x & WORD_MASK, -1))
    x = tf.where(renorm, _shr(x, WORD_BITS), x)
    return t - 1, _shl(x // f, p) + x % f + c, words

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
    tables: a `Tables` for all groups or a list of one per group, all of
      the same precision.
    lanes: lane count (int or scalar tensor, <= MAX_LANES); by default
      `choose_lanes` of the loop symbol count.

  Returns:
    A string scalar.
  """
  if isinstance(tables, Tables):
    tables = [tables] * len(groups)
  if len(tables) != len(groups):
    raise ValueError(f"{len(groups)} groups but {len(tables)} tables")
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
      _check(tf.logical_and(lanes <= MAX_LANES,
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
  exponent = _bit_length(x) - 1 - STATE_BITS
  fields = _gamma_fields(lanes[None] + 1) + [
      (exponent, tf.fill(tf.shape(x), tf.constant(HEAD_EXPONENT_BITS,
                                                  tf.int64))),
      (x - _shl(tf.ones_like(x), exponent + STATE_BITS),
       exponent + STATE_BITS)]
  for plan in plans:
    fields += _group_bypass(plan)
  bypass = _pack_bits(fields)
  data = tf.concat([_words_to_bytes(words), tf.reverse(bypass, [0])], 0)
  return _bytes_to_string(data)


# -- decoder -----------------------------------------------------------------

class DecoderState(collections.namedtuple(
    "DecoderState", "words tail num_bytes x word_cursor bit_cursor")):
  """Where a decoder is: lane states and read positions in the stream.

  words: the stream's 16-bit words (int64) and one 0 past them, for clamped
    reads; tail: the stream's bytes in reverse (the bypass, read from the
    end) and FIELD_WINDOW_BYTES zeros; num_bytes: the stream's length;
    x: lane states (int64 [K]); word_cursor / bit_cursor: words read from
    the front, bypass bits read from the end.
  """


def _read_fields(state, widths):
  """Reads fields of `widths` (<= MAX_GAMMA_EXPONENT + 1 bits) from the
  bypass. Returns (values int64, state)."""
  widths = tf.cast(widths, tf.int64)
  starts = state.bit_cursor + tf.cumsum(widths, exclusive=True)
  limit = tf.size(state.tail, out_type=tf.int64) - FIELD_WINDOW_BYTES
  byte = tf.minimum(starts // BYTE_BITS, limit)
  window = tf.zeros_like(starts)
  for k in range(FIELD_WINDOW_BYTES):
    window = _shl(window, BYTE_BITS) | tf.gather(state.tail, byte + k)
  shift = FIELD_WINDOW_BYTES * BYTE_BITS - starts % BYTE_BITS - widths
  values = _shr(window, shift) & (_shl(tf.ones_like(widths), widths) - 1)
  return values, state._replace(
      bit_cursor=state.bit_cursor + tf.reduce_sum(widths))


def _read_gamma(state, count, signed):
  """Reads an Elias gamma block of `count` magnitudes (see `_gamma_fields`).

  The unary prefixes end at the first `count` one bits: found with a
  popcount over a window of bytes bounded by the stream and by the longest
  valid prefixes. Returns (magnitudes, signs or None, state).
  """
  count = tf.cast(count, tf.int64)
  tail = state.tail
  limit = tf.size(tail, out_type=tf.int64)
  first = tf.minimum(state.bit_cursor // BYTE_BITS, limit)
  skip = state.bit_cursor % BYTE_BITS
  span = tf.minimum(_ceil_div(count * (MAX_GAMMA_EXPONENT + 1) + skip,
                              BYTE_BITS), limit - first)
  window = tail[first:first + span]
  # Bits before the cursor in the first byte do not count.
  window = tf.concat([window[:1] & (_shl(tf.constant(1, tf.int64), BYTE_BITS - skip) - 1),
                      window[1:]], 0)
  ones = tf.cumsum(tf.gather(tf.constant(_POPCOUNT, tf.int64), window))
  used = tf.searchsorted(ones, count[None], side="left")[0]
  bits = tf.reshape(_shr(window[:used + 1, None], tf.range(
      BYTE_BITS - 1, -1, -1, dtype=tf.int64)[None]) & 1, [-1])
  positions = tf.where(bits > 0)[:, 0][:count] - skip
  found = tf.size(positions, out_type=tf.int64)
  lengths = positions - tf.concat([[-1], positions[:-1]], 0) - 1
  checks = [
      _check(tf.equal(found, count), "rans: stream truncated (bypass)"),
      _check(tf.reduce_all(lengths <= MAX_GAMMA_EXPONENT),
             "rans: an escape claims an absurd length"),
  ]
  with tf.control_dependencies(checks):
    lengths = tf.identity(lengths)
  consumed = tf.reduce_max(tf.concat([positions + 1, [0]], 0))
  state = state._replace(bit_cursor=state.bit_cursor + consumed)
  widths = lengths + (1 if signed else 0)
  fields, state = _read_fields(state, widths)
  if signed:
    mantissa, sign = _shr(fields, 1), tf.equal(fields & 1, 1)
  else:
    mantissa, sign = fields, None
  return _shl(tf.ones_like(lengths), lengths) | mantissa, sign, state


def start(stream):
  """A decoder at the start of `stream` (a string scalar)."""
  data = tf.cast(tf.io.decode_raw(stream, tf.uint8), tf.int64)
  num_bytes = tf.size(data, out_type=tf.int64)
  even = data[:num_bytes // 2 * 2]
  words = tf.reshape(even, [-1, 2])
  words = tf.concat([_shl(words[:, 0], BYTE_BITS) | words[:, 1], [0]], 0)
  tail = tf.concat([tf.reverse(data, [0]),
                    tf.zeros([FIELD_WINDOW_BYTES], tf.int64)], 0)
  state = DecoderState(words, tail, num_bytes,
                       tf.zeros([0], tf.int64), tf.constant(0, tf.int64),
                       tf.constant(0, tf.int64))
  lanes, _, state = _read_gamma(state, 1, signed=False)
  lanes = lanes[0] - 1
  with tf.control_dependencies([
      _check(lanes <= MAX_LANES, "rans: absurd lane count")]):
    lanes = tf.identity(lanes)
  exponent, state = _read_fields(state, tf.fill([lanes], tf.constant(
      HEAD_EXPONENT_BITS, tf.int64)))
  mantissa, state = _read_fields(state, exponent + STATE_BITS)
  x = _shl(tf.ones_like(exponent), exponent + STATE_BITS) | mantissa
  with tf.control_dependencies([
      _check_within(state, state.word_cursor, state.bit_cursor)]):
    return state._replace(x=tf.identity(x))


def _check_within(state, word_cursor, bit_cursor):
  used = 2 * word_cursor + _ceil_div(bit_cursor, BYTE_BITS)
  return _check(used <= state.num_bytes, "rans: stream truncated")


def _decode_loop(state, rows, table, tables):
  """Decodes loop symbols whose tables (`rows`, in lane order) all belong to
  the width class of `table` (the first columns of every row). Returns
  (bins, state)."""
  lanes = tf.size(state.x, out_type=tf.int64)
  n = tf.size(rows, out_type=tf.int64)
  steps = _ceil_div(n, tf.maximum(lanes, 1))
  pad = steps * lanes - n
  rows = tf.reshape(tf.concat([rows, tf.fill([pad], tables.num_tables)], 0),
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
    x = tf.gather(tables.freq, at) * _shr(x, p) + slot - tf.gather(
        tables.lower, at)
    refill = x < STATE_LOWER
    count = tf.cast(refill, tf.int64)
    word = tf.gather(words, cursor + tf.cumsum(count, exclusive=True))
    x = tf.where(refill, _shl(x, WORD_BITS) | word, x)
    return t + 1, x, cursor + tf.reduce_sum(count), out.write(t, bins)

  _, x, cursor, out = tf.while_loop(
      lambda t, *_: t < tf.cast(steps, tf.int32), body,
      (tf.constant(0), state.x, state.word_cursor, out))
  out = out.write(tf.cast(steps, tf.int32), tf.zeros(tf.shape(x), tf.int32))
  bins = tf.reshape(out.stack(), [-1])[:n]
  return tf.cast(bins, tf.int64), state._replace(x=x, word_cursor=cursor)


def decode_group(state, table_index, tables):
  """Decodes the next group: its values (int32, the shape of table_index)
  and the state after it."""
  shape = tf.shape(table_index)
  index = tf.cast(tf.reshape(table_index, [-1]), tf.int64)
  n = tf.size(index, out_type=tf.int64)
  sparse_at, loop_at, rows, counts = _split(index, tables)
  num_sparse = tf.size(sparse_at, out_type=tf.int64)
  with tf.control_dependencies([_check(
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
  count, _, state = _read_gamma(state, 1, signed=False)
  count = count[0] - 1
  with tf.control_dependencies([_check(
      count <= num_sparse, "rans: more exceptions than sparse symbols")]):
    count = tf.identity(count)
  width = _position_width(num_sparse)
  positions, state = _read_fields(state, tf.fill([count], width))
  overflow = tf.gather(tables.overflow_bin, rows)
  escape = tf.equal(bins, overflow)
  num_escapes = tf.reduce_sum(tf.cast(escape, tf.int64))
  magnitude, negative, state = _read_gamma(state, count + num_escapes,
                                           signed=True)
  checks = [
      _check(tf.reduce_all(positions < num_sparse),
             "rans: exception position out of range"),
      _check(tf.reduce_all(positions[1:] > positions[:-1]),
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
  used = 2 * state.word_cursor + _ceil_div(state.bit_cursor, BYTE_BITS)
  tail_bits = state.bit_cursor % BYTE_BITS
  last = tf.gather(state.tail, tf.maximum(state.bit_cursor // BYTE_BITS, 0))
  padding = tf.where(tail_bits > 0,
                     last & (_shl(tf.constant(1, tf.int64), BYTE_BITS - tail_bits) - 1), 0)
  checks = [
      _check(used <= state.num_bytes, "rans: stream truncated"),
      _check(used >= state.num_bytes, "rans: stream not fully consumed"),
      _check(tf.equal(padding, 0), "rans: nonzero padding bits"),
      _check(tf.reduce_all(tf.equal(state.x, STATE_LOWER)),
             "rans: final lane states mismatch"),
  ]
  with tf.control_dependencies(checks):
    return tf.constant(True)


def decode(stream, table_indexes, tables):
  """Decodes all groups at once (for groups whose indexes are known)."""
  if isinstance(tables, Tables):
    tables = [tables] * len(table_indexes)
  state = start(stream)
  out = []
  for index, t in zip(table_indexes, tables):
    values, state = decode_group(state, index, t)
    out.append(values)
  with tf.control_dependencies([finish(state)]):
    return [tf.identity(v) for v in out]
