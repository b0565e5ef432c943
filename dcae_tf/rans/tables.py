"""Coding tables: quantised CDFs, stored once, viewed by the coder per graph.

A table set's values live in int32 variables, its own (`Tables`) or those
of the TFC entropy model that built them (`TfcTables`), so every traced
function reads the same copy and a SavedModel keeps it once, in its
variables. What the coder derives from the values (the padded int64 CDF
with its empty-lane row, flat lower bounds and frequencies, the width
classes' tables, the sparse flags and most likely values) is computed from
the variables inside each graph, at call time, by a few small ops
(`CodingTables.view`): held as eager tensors instead, it became constants
of every function that codes, megabytes of them per export. What shapes the
graphs (the width, the width classes, the precision) is Python, fixed when
the tables are built; the values must keep to it.
"""
import collections
import weakref

import numpy as np
import tensorflow as tf

from dcae_tf.rans.bits import check
from dcae_tf.rans.params import CLASS_WIDTHS, MAX_PRECISION, SPARSE_ESCAPE_BITS


class TableView(collections.namedtuple(
    "TableView", "precision bin_stride class_widths empty_row cdf lower freq "
                 "cdf_offset cdf_length overflow_bin sparse mode_value "
                 "table_class class_tables")):
  """The coder's tensors of a table set in one graph (see `CodingTables`).

  precision, bin_stride (W - 1), class_widths: Python. cdf: (T + 1, W)
  int64, the last row the empty-lane table; lower, freq: its bins' lower
  bounds and frequencies, flat (bin b of row r at r * bin_stride + b);
  empty_row: T; cdf_offset, cdf_length, overflow_bin, sparse, mode_value,
  table_class: one per table; class_tables: per width class w, cdf[:, 1:1 +
  w].
  """


class CodingTables(tf.Module):
  """Quantised CDFs, one row per table, for the coder.

  Row t holds cdf_length[t] entries, 0 first and 2**precision last, padded
  with 2**precision to the width W; bin b of table t is [cdf[t, b],
  cdf[t, b + 1]) and codes value cdf_offset[t] + b, except the last bin
  (cdf_length[t] - 2), TFC's overflow bin.

  Derived per graph (`view`): which tables are coded sparsely and their
  most likely value; each table's width class (the decoder searches a
  table among the first `class_widths[c]` entries of its row; only the
  classes some table belongs to, and the widest, get a loop); and one more
  row, a table with a single bin of all the mass, which the loops use for
  lanes without a symbol (coding and decoding it leave a state unchanged).

  Subclasses store the values and read them in a graph (`_read`).
  """

  # The per-graph views are tensors, not state to track.
  _TF_MODULE_IGNORED_PROPERTIES = frozenset(("_views",)).union(
      tf.Module._TF_MODULE_IGNORED_PROPERTIES)

  def __init__(self, num_tables, width, cdf_length, precision, name=None):
    super().__init__(name=name or "rans_tables")
    precision = int(precision)
    if not 1 <= precision <= MAX_PRECISION:
      raise ValueError(f"precision must be in [1, {MAX_PRECISION}], "
                       f"got {precision}")
    if width is None or width < 2:
      raise ValueError("tables need a static width of at least 2 entries")
    cdf_length = np.asarray(cdf_length, np.int64).reshape(-1)
    if cdf_length.size != num_tables or np.any(
        (cdf_length < 2) | (cdf_length > width)):
      raise ValueError(f"{num_tables} tables need as many lengths in "
                       f"[2, {width}]")
    self.precision = precision
    self.num_tables = int(num_tables)
    self.width = int(width)
    inner = max(self.width - 2, 1)
    # A bin is the count of a row's inner bounds cdf[1:length - 1] at or
    # below the slot; a class compares its rows' first `w` inner bounds.
    widths = [w for w in CLASS_WIDTHS if w < inner] + [inner]
    used = set(np.searchsorted(widths, cdf_length - 2, side="left").tolist())
    self.class_widths = tuple(w for c, w in enumerate(widths)
                              if c in used or w == inner)
    self._views = weakref.WeakKeyDictionary()

  def _read(self):
    """(cdf (T, W), cdf_offset (T,), cdf_length (T,)) as int64 tensors."""
    raise NotImplementedError

  def view(self):
    """The `TableView` of these tables in the current graph: computed once
    per graph (eagerly: at every call) from the variables."""
    if tf.executing_eagerly():
      return self._derive()
    graph = tf.compat.v1.get_default_graph()
    view = self._views.get(graph)
    if view is None:
      # Usable anywhere in the graph: no control dependencies of the caller.
      with tf.control_dependencies(None), tf.name_scope(self.name):
        view = self._views[graph] = self._derive()
    return view

  def _derive(self):
    cdf, cdf_offset, cdf_length = self._read()
    total = 1 << self.precision
    empty = tf.concat([tf.zeros([1, 1], tf.int64),
                       tf.fill([1, self.width - 1],
                               tf.constant(total, tf.int64))], 1)
    padded = tf.concat([cdf, empty], 0)
    overflow_bin = cdf_length - 2
    freq = padded[:, 1:] - padded[:, :-1]
    mode = tf.argmax(freq[:-1], axis=1, output_type=tf.int64)
    top = tf.reduce_max(freq[:-1], axis=1)
    sparse = tf.logical_and(
        (total - top) * (1 << SPARSE_ESCAPE_BITS) <= total,
        mode < overflow_bin)
    table_class = tf.searchsorted(
        tf.constant(self.class_widths, tf.int64), overflow_bin,
        side="left", out_type=tf.int64)
    return TableView(
        precision=self.precision, bin_stride=self.width - 1,
        class_widths=self.class_widths,
        empty_row=tf.constant(self.num_tables, tf.int64), cdf=padded,
        lower=tf.reshape(padded[:, :-1], [-1]),
        freq=tf.reshape(freq, [-1]),
        cdf_offset=cdf_offset, cdf_length=cdf_length,
        overflow_bin=overflow_bin, sparse=sparse,
        mode_value=cdf_offset + mode, table_class=table_class,
        class_tables=[padded[:, 1:1 + w] for w in self.class_widths])

  # For inspection (tests); the coder reads a whole `view`.

  @property
  def cdf(self):
    return self.view().cdf

  @property
  def cdf_offset(self):
    return self.view().cdf_offset

  @property
  def cdf_length(self):
    return self.view().cdf_length

  @property
  def sparse(self):
    return self.view().sparse


class Tables(CodingTables):
  """Tables of their own: `cdf` (T, W) padded, `cdf_offset`, `cdf_length`
  (ints, values known when built), held in int32 variables."""

  def __init__(self, cdf, cdf_offset, cdf_length, precision, name=None):
    cdf = np.asarray(cdf)
    if cdf.ndim != 2:
      raise ValueError(f"cdf must be (tables, width), got shape {cdf.shape}")
    cdf_offset = np.asarray(cdf_offset).reshape(-1)
    if cdf_offset.size != cdf.shape[0]:
      raise ValueError(f"{cdf.shape[0]} tables but {cdf_offset.size} offsets")
    super().__init__(cdf.shape[0], cdf.shape[1], cdf_length, precision,
                     name=name)
    # Variables of unknown shape, as TFC's: a checkpoint of tables of
    # another width (another model's prior) restores into them; the graphs
    # read them at the shape these tables were built with.
    with self.name_scope:
      self._cdf = tf.Variable(cdf.astype(np.int32), trainable=False,
                              name="cdf", shape=tf.TensorShape(None))
      self._cdf_offset = tf.Variable(cdf_offset.astype(np.int32),
                                     trainable=False, name="cdf_offset",
                                     shape=tf.TensorShape(None))
      self._cdf_length = tf.Variable(
          np.asarray(cdf_length).reshape(-1).astype(np.int32),
          trainable=False, name="cdf_length", shape=tf.TensorShape(None))

  def _read(self):
    shapes = ([self.num_tables, self.width], [self.num_tables],
              [self.num_tables])
    return tuple(tf.ensure_shape(tf.cast(v, tf.int64), shape)
                 for v, shape in zip((self._cdf, self._cdf_offset,
                                      self._cdf_length), shapes))


class TfcTables(CodingTables):
  """The tables of a TFC entropy model, read from its own `cdf` and
  `cdf_offset` variables (TFC's flat format, see `parse_tfc`) in each
  graph: the coder adds no copy of them."""

  def __init__(self, model, name=None):
    padded, lengths, precision = parse_tfc(model.cdf.numpy())
    super().__init__(padded.shape[0], padded.shape[1], lengths, precision,
                     name=name)
    self._model = model

  def _read(self):
    """Scatters the flat vector's entries into rows: each table's bounds
    below 2**precision (the last is the padding's value) to their columns,
    the headers and last bounds to an extra column that is cut off."""
    flat = tf.cast(self._model.cdf, tf.int64)
    total = 1 << self.precision
    position = tf.range(tf.size(flat, out_type=tf.int64))
    header = flat < 0
    row = tf.maximum(tf.cumsum(tf.cast(header, tf.int64)) - 1, 0)
    # A row's first entry is its header.
    column = position - tf.gather(tf.math.segment_min(position, row), row) - 1
    inner = tf.logical_and(tf.logical_not(header), flat < total)
    fits = check(tf.logical_and(
        tf.equal(tf.reduce_sum(tf.cast(header, tf.int32)), self.num_tables),
        tf.reduce_all(tf.logical_or(tf.logical_not(inner),
                                    column < self.width - 1))),
                 "rans: the entropy model's tables no longer fit the layout "
                 "they were built with")
    with tf.control_dependencies([fits]):
      column = tf.where(inner, column, self.width)
    cdf = tf.tensor_scatter_nd_update(
        tf.fill([self.num_tables, self.width + 1],
                tf.constant(total, tf.int64)),
        tf.stack([row, column], 1), flat)[:, :self.width]
    cdf_length = tf.math.unsorted_segment_sum(
        tf.cast(inner, tf.int64), row, self.num_tables) + 1
    cdf_offset = tf.reshape(tf.cast(self._model.cdf_offset, tf.int64),
                            [self.num_tables])
    return cdf, cdf_offset, cdf_length


def parse_tfc(cdf):
  """(padded cdf (T, W), cdf_length, precision) of TFC's flat table format
  (numpy), checked.

  TFC (2.14) stores all tables in one vector: per table, -precision (the
  sign enables the overflow bin), then the CDF from 0 to 2**precision
  (pmf length + 2 entries, the last bin being the overflow bin). This
  parses it the way TFC's range coder kernel does.
  """
  flat = np.asarray(cdf, np.int64).ravel()
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
  precision = precision or MAX_PRECISION
  lengths = np.array([r.size for r in rows], np.int32)
  padded = np.full((len(rows), max(lengths.max(initial=2), 2)),
                   1 << precision, np.int32)
  for t, row in enumerate(rows):
    padded[t, :row.size] = row
  return padded, lengths, precision


def tables_from_tfc(cdf, cdf_offset):
  """`Tables` of TFC's flat table format (numpy; see `parse_tfc`)."""
  padded, lengths, precision = parse_tfc(cdf)
  offsets = np.asarray(cdf_offset, np.int64).ravel()
  if len(lengths) != offsets.size:
    raise ValueError(f"{len(lengths)} tables but {offsets.size} offsets")
  return Tables(padded, offsets.astype(np.int32), lengths, precision)


def split_group(index, tables):
  """Positions of a group's sparse and loop symbols, the loop symbols in the
  order the lanes code them (stably sorted by width class), their tables
  and the symbol count of each class. `tables` is a `TableView`."""
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
