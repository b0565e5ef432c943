"""dcae_tf.rans.tables: the coding tables are stored once, in variables.

Traced coders read the tables from variables (TFC's own, or a `Tables`'s)
and hold no table constants; the per-graph views equal the eager parse of
TFC's format; width classes no table belongs to get no loop and leave the
stream unchanged; tables whose values outgrow their layout are refused.
"""
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from dcae_tf import config as config_lib
from dcae_tf import entropy
from dcae_tf import rans

PRECISION = 16
TOP = 1 << PRECISION
# Constants a traced coder may hold (its own lookup tables are 2 KB); the
# smallest model table set is ~100 KB.
MAX_CONSTANT_BYTES = 4096
SPEC = tf.TensorSpec([None], tf.int32)


@pytest.fixture(name="y_model", scope="module")
def fixture_y_model():
  c = config_lib.get_config("tiny")
  return tfc.LocationScaleIndexedEntropyModel(
      tfc.NoisyNormal, c.scale_levels, entropy.scale_table_fn(c),
      coding_rank=3, compression=True, range_coder_precision=PRECISION)


class FlatTables(tf.Module):
  """What `TfcTables` reads of a TFC model: flat `cdf`, `cdf_offset`."""

  def __init__(self, rows, offsets):
    super().__init__()
    self.cdf = tf.Variable(_flat(rows), shape=[None], trainable=False)
    self.cdf_offset = tf.Variable(np.array(offsets, np.int32), trainable=False)


def _flat(rows):
  return np.concatenate([[-PRECISION] + list(r) for r in rows]).astype(
      np.int32)


def _coder(tables):

  @tf.function(input_signature=[SPEC, SPEC])
  def encode(values, index):
    return rans.encode([(values, index), (values, index)], tables)

  @tf.function(input_signature=[tf.TensorSpec([], tf.string), SPEC])
  def decode(stream, index):
    return rans.decode(stream, [index, index], tables)

  return encode, decode


def _largest_constant(concrete):
  graph = concrete.graph.as_graph_def()
  nodes = list(graph.node)
  for f in graph.library.function:
    nodes += list(f.node_def)
  return max(n.attr["value"].ByteSize() for n in nodes if n.op == "Const")


def test_traced_coders_read_the_tables_from_variables(y_model):
  tables = rans.indexed_tables(y_model)
  model_variables = {id(v) for v in y_model.variables}
  assert {id(v) for v in tables.variables} == model_variables
  encode, decode = _coder(tables)
  index = np.arange(500, dtype=np.int32) % 64
  values = np.round(np.random.default_rng(0).normal(0, 9, 500)).astype(
      np.int32)
  stream = encode(values, index)
  for out in decode(stream, index):
    np.testing.assert_array_equal(out.numpy(), values)
  for fn, args in ((encode, (SPEC, SPEC)),
                   (decode, (tf.TensorSpec([], tf.string), SPEC))):
    concrete = fn.get_concrete_function(*args)
    assert _largest_constant(concrete) <= MAX_CONSTANT_BYTES
    assert model_variables <= {id(v) for v in concrete.variables}


def test_own_tables_are_int32_variables_of_the_module():
  cdf = np.array([[0, 9, 65530, 65535, TOP], [0, 30000, TOP, TOP, TOP]])
  tables = rans.Tables(cdf, [-1, 0], [5, 3], PRECISION)
  assert len(tables.variables) == 3 and not tables.trainable_variables
  assert {v.dtype for v in tables.variables} == {tf.int32}
  _, decode = _coder(tables)
  concrete = decode.get_concrete_function(tf.TensorSpec([], tf.string), SPEC)
  assert {id(v) for v in tables.variables} <= {id(v) for v in
                                               concrete.variables}


def test_views_in_graphs_equal_the_eager_parse(y_model):
  """TFC's flat tables parsed in a graph (`TfcTables`) give what the eager
  parse (`tables_from_tfc`, own variables) gives, field for field."""
  ours = rans.indexed_tables(y_model)
  parsed = rans.tables_from_tfc(y_model.cdf.numpy(), y_model.cdf_offset.numpy())
  assert (ours.width, ours.class_widths) == (parsed.width,
                                             parsed.class_widths)
  fields = [f for f in rans.TableView._fields
            if f not in ("precision", "bin_stride", "class_widths")]

  @tf.function
  def views():
    a, b = ours.view(), parsed.view()
    return [getattr(a, f) for f in fields], [getattr(b, f) for f in fields]

  for a, b in zip(*views()):
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
      np.testing.assert_array_equal(x.numpy(), y.numpy())
  padded, lengths, _ = rans.parse_tfc(y_model.cdf.numpy())
  np.testing.assert_array_equal(ours.cdf.numpy()[:-1], padded)
  np.testing.assert_array_equal(ours.cdf_length.numpy(), lengths)


def _random_row(bins, rng):
  """A strictly increasing CDF of `bins` bins (bins + 1 entries)."""
  cuts = np.sort(rng.choice(np.arange(1, TOP), bins - 1, replace=False))
  return np.concatenate([[0], cuts, [TOP]])


def test_width_classes_without_tables_get_no_loop_and_change_nothing():
  """Tables of 3, 20 and 301 bins (2, 19, 300 inner bounds): classes 8, 32
  and the widest (300) are used, 128 is not and gets no loop; coding with
  every class, as if 128 were used, gives the same stream."""
  rng = np.random.default_rng(1)
  rows = [_random_row(bins, rng) for bins in (3, 20, 301, 3)]
  model = FlatTables(rows, [-2, -10, -150, 0])
  pruned = rans.batched_tables(model)
  assert pruned.class_widths == (8, 32, 300)
  every = rans.batched_tables(model)
  every.class_widths = (8, 32, 128, 300)
  index = rng.integers(0, len(rows), 3000).astype(np.int32)
  values = rng.integers(-160, 160, 3000).astype(np.int32)
  streams = [rans.encode([(values, index)], t).numpy()
             for t in (pruned, every)]
  assert streams[0] == streams[1]

  @tf.function(input_signature=[tf.TensorSpec([], tf.string), SPEC])
  def decode(stream, index):
    return rans.decode(stream, [index], pruned)[0]

  np.testing.assert_array_equal(decode(streams[0], index).numpy(), values)
  library = decode.get_concrete_function(
      tf.TensorSpec([], tf.string), SPEC).graph.as_graph_def().library
  loops = [f for f in library.function
           if re.search(r"while(_\d+)?_body", f.signature.name)]
  assert len(loops) == len(pruned.class_widths)


def test_tables_that_outgrow_their_layout_are_refused():
  rows = [[0, 100, TOP], [0, 7, 9, TOP]]
  model = FlatTables(rows, [0, 0])
  tables = rans.batched_tables(model)
  model.cdf.assign(_flat([[0, 100, 200, 300, TOP], [0, 7, 9, TOP]]))

  @tf.function
  def view():
    return tables.view().cdf

  with pytest.raises(tf.errors.InvalidArgumentError, match="rans: "):
    view()
