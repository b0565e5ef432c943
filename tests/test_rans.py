"""dcae_tf.rans: the entropy coder in stock TensorFlow ops.

Exactness against TFC (the same tables, the same values and table indexes
as TFC's own compress/decompress), round trips on adversarial tables and
values, resumable decoding, clean errors on damaged streams, and that every
op of the traced coder is registered without tensorflow_compression.
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from dcae_tf import config as config_lib
from dcae_tf.codec import core as codec_core
from dcae_tf import entropy
from dcae_tf import rans

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISION = 16
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1
SPEC = tf.TensorSpec([None], tf.int32)


@pytest.fixture(scope="module")
def models():
  """TFC's z and y entropy models as the codec builds them (tiny preset,
  random prior), and our tables of them."""
  c = config_lib.get_config("tiny")
  tf.random.set_seed(3)
  hyper = entropy.HyperpriorModel(c)
  hyper.offset.assign(tf.random.uniform([c.z_channels], -.4, .4))
  z_model = codec_core.z_entropy_model(hyper, PRECISION)
  y_model = tfc.LocationScaleIndexedEntropyModel(
      tfc.NoisyNormal, c.scale_levels, entropy.scale_table_fn(c),
      coding_rank=3, compression=True, range_coder_precision=PRECISION)
  return dict(config=c, z=z_model, y=y_model,
              z_tables=rans.batched_tables(z_model),
              y_tables=rans.indexed_tables(y_model))


_CODERS = {}


def _coder(tables, lanes=None):
  """Graph-mode encode / decode of one group with unknown sizes (traced
  once per tables and lane count)."""
  key = (id(tables), lanes)
  if key not in _CODERS:
    _CODERS[key] = _make_coder(tables, lanes)
  return _CODERS[key]


def _make_coder(tables, lanes):

  @tf.function(input_signature=[SPEC, SPEC])
  def encode(values, index):
    return rans.encode([(values, index)], tables, lanes)

  @tf.function(input_signature=[tf.TensorSpec([], tf.string), SPEC])
  def decode(stream, index):
    return rans.decode(stream, [index], tables)[0]

  return encode, decode


def _round_trip(tables, values, index, lanes=None):
  encode, decode = _coder(tables, lanes)
  stream = encode(values, index)
  np.testing.assert_array_equal(decode(stream, index).numpy(), values)
  return stream.numpy()


def _table_rows(tfc_cdf):
  """TFC's flat table vector split into its CDFs (without headers)."""
  flat, rows, i = tfc_cdf.numpy(), [], 0
  while i < flat.size:
    top = 1 << -flat[i]
    end = i + 1 + int(np.argmax(flat[i + 1:] == top))
    rows.append(flat[i + 1:end + 1])
    i = end + 1
  return rows


def test_tables_are_tfcs(models):
  for model, tables in ((models["z"], models["z_tables"]),
                        (models["y"], models["y_tables"])):
    rows = _table_rows(model.cdf)
    length = tables.cdf_length.numpy()
    cdf = tables.cdf.numpy()
    assert len(rows) == len(length) == cdf.shape[0] - 1
    for t, row in enumerate(rows):
      np.testing.assert_array_equal(cdf[t, :length[t]], row)
    np.testing.assert_array_equal(tables.cdf_offset.numpy(),
                                  model.cdf_offset.numpy())
    assert tables.precision == PRECISION
  # The y model's narrowest table (scale index 0) is coded sparsely.
  assert models["y_tables"].sparse.numpy()[0]


def test_decode_equals_tfc_decompress(models):
  """Random latents (some far outside the tables): our coder gives back
  exactly what TFC's decompress(compress) gives, element for element."""
  z_model, y_model, c = models["z"], models["y"], models["config"]
  rng = np.random.default_rng(0)
  z = rng.normal(0, 3, (1, 3, 5, c.z_channels)).astype(np.float32)
  z[0, 0, 0, :4] = [80., -75., 1e4, -3e3]
  y = rng.normal(0, 6, (1, 4, 6, 8)).astype(np.float32)
  mu = rng.normal(0, 2, y.shape).astype(np.float32)
  scale_index = rng.uniform(-3, c.scale_levels + 3, y.shape).astype(
      np.float32)
  y[0, 0, 0, :3] = [500., -900., 2e5]
  scale_index[0, 0, 0, :3] = 0.
  zspec = tf.TensorSpec([1, None, None, c.z_channels], tf.float32)
  yspec = tf.TensorSpec([1, None, None, None], tf.float32)

  @tf.function(input_signature=[zspec, yspec, yspec, yspec])
  def both(z, y, mu, index):
    stream = rans.encode(
        [rans.batched_symbols(z_model, z),
         rans.indexed_symbols(y_model, y, index, mu)],
        [models["z_tables"], models["y_tables"]])
    state = rans.start(stream)
    z_values, state = rans.decode_group(
        state, rans.batched_index(z_model, tf.shape(z)), models["z_tables"])
    y_values, state = rans.decode_group(
        state, rans.indexed_index(y_model, index), models["y_tables"])
    with tf.control_dependencies([rans.finish(state)]):
      ours = (rans.batched_dequantize(z_model, z_values, tf.shape(z)),
              rans.indexed_dequantize(y_model, y_values, mu))
    tfc_z = z_model.decompress(z_model.compress(z), tf.shape(z)[1:3])
    tfc_y = y_model.decompress(y_model.compress(y, index, mu), index, mu)
    return ours, (tfc_z, tfc_y)

  (our_z, our_y), (tfc_z, tfc_y) = both(z, y, mu, scale_index)
  np.testing.assert_array_equal(our_z.numpy(), tfc_z.numpy())
  np.testing.assert_array_equal(our_y.numpy(), tfc_y.numpy())


def _edge_values(tables):
  """Per table: values at and beyond both ends of its range."""
  offset = tables.cdf_offset.numpy().astype(np.int64)
  length = tables.cdf_length.numpy().astype(np.int64)
  values, index = [], []
  for t in range(len(offset)):
    overflow_value = offset[t] + length[t] - 2
    for v in (offset[t] - 5, offset[t] - 1, offset[t], offset[t] + 1,
              overflow_value - 1, overflow_value, overflow_value + 1,
              overflow_value + 7, INT32_MIN, INT32_MAX, 0):
      values.append(np.clip(v, INT32_MIN, INT32_MAX))
      index.append(t)
  return np.array(values, np.int32), np.array(index, np.int32)


@pytest.mark.parametrize("which", ["z_tables", "y_tables"])
def test_every_table_at_and_beyond_its_ends(models, which):
  values, index = _edge_values(models[which])
  for lanes in (None, 1, 7):
    _round_trip(models[which], values, index, lanes)


def test_all_zero_all_overflow_one_symbol_empty(models):
  y = models["y_tables"]
  n = 5000
  index = np.arange(n, dtype=np.int32) % 64
  _round_trip(y, np.zeros(n, np.int32), index)
  far = np.where(index % 2, 10 ** 6, -10 ** 6).astype(np.int32)
  _round_trip(y, far, index)
  _round_trip(y, np.full(n, INT32_MAX, np.int32), index)
  _round_trip(y, np.full(n, INT32_MIN, np.int32), index)
  for t in (0, 1, 40, 63):
    for v in (0, 3, -7, INT32_MIN):
      _round_trip(y, np.array([v], np.int32), np.array([t], np.int32))
  stream = _round_trip(y, np.zeros([0], np.int32), np.zeros([0], np.int32))
  assert len(stream) == 1  # lane count 0 and no exceptions: 7 bits


def test_a_million_symbols(models):
  y = models["y_tables"]
  rng = np.random.default_rng(1)
  n = 10 ** 6
  index = rng.integers(0, 64, n).astype(np.int32)
  sigma = 0.11 * (256 / 0.11) ** (index / 63.)
  values = np.round(rng.normal(0, sigma)).astype(np.int32)
  _round_trip(y, values, index, lanes=512)


def test_resumable_decode_across_groups_with_other_tables(models):
  """The next group's table indexes are computed from decoded values (as
  the codec's slices depend on z), and its tables are another model's."""
  z_tables, y_tables = models["z_tables"], models["y_tables"]
  rng = np.random.default_rng(2)
  zc = int(z_tables.cdf_offset.shape[0])
  z_values = rng.integers(-4, 5, 6 * zc).astype(np.int32)
  z_index = (np.arange(z_values.size) % zc).astype(np.int32)

  def next_index(values):
    return tf.math.floormod(values * 7 + 3, 64)

  y_index = next_index(z_values).numpy()
  y_values = rng.integers(-9, 10, y_index.size).astype(np.int32)
  third = rng.integers(-2, 3, 11).astype(np.int32)
  stream = rans.encode([(z_values, z_index), (y_values, y_index),
                        (third, np.zeros(11, np.int32))],
                       [z_tables, y_tables, y_tables])

  @tf.function(input_signature=[tf.TensorSpec([], tf.string), SPEC])
  def decode(stream, z_index):
    state = rans.start(stream)
    z, state = rans.decode_group(state, z_index, z_tables)
    y, state = rans.decode_group(state, next_index(z), y_tables)
    t, state = rans.decode_group(state, tf.zeros([11], tf.int32), y_tables)
    with tf.control_dependencies([rans.finish(state)]):
      return tf.identity(z), tf.identity(y), tf.identity(t)

  z, y, t = decode(stream, z_index)
  np.testing.assert_array_equal(z.numpy(), z_values)
  np.testing.assert_array_equal(y.numpy(), y_values)
  np.testing.assert_array_equal(t.numpy(), third)


def _corrupt_decodes(decode, stream, index, values):
  """'error', or 'wrong' for a bounded decode to other values (which the
  codec's symbols digest refuses); never the original values."""
  try:
    out = decode(tf.constant(stream), index).numpy()
  except tf.errors.InvalidArgumentError as e:
    assert "rans:" in e.message, e.message
    return "error"
  assert not np.array_equal(out, values)
  return "wrong"


def test_damaged_streams_fail_cleanly(models):
  y = models["y_tables"]
  rng = np.random.default_rng(4)
  n = 3000
  index = rng.integers(0, 30, n).astype(np.int32)
  values = np.round(rng.normal(0, 2, n)).astype(np.int32)
  values[::97] = 300
  encode, decode = _coder(y)
  stream = encode(values, index).numpy()
  outcomes = []
  for damaged in (stream[:-1], stream[:len(stream) // 2], b"", stream + b"\0",
                  stream + b"extra bytes", b"\xff" * len(stream)):
    outcomes.append(_corrupt_decodes(decode, damaged, index, values))
  # Truncation and extension are caught by the consumption checks.
  assert outcomes[:5] == ["error"] * 5
  for _ in range(40):
    flipped = bytearray(stream)
    at = rng.integers(len(flipped))
    flipped[at] ^= 1 << rng.integers(8)
    outcomes.append(_corrupt_decodes(decode, bytes(flipped), index, values))
  # A flipped bit is caught by the stream checks nearly always; the rest
  # decode (boundedly) to other values.
  assert outcomes.count("error") > len(outcomes) // 2


def test_absurd_claims_are_refused(models):
  y = models["y_tables"]
  _, decode = _coder(y)
  index = np.zeros(10, np.int32)
  # An all-zero bypass claims an Elias gamma exponent far above 32.
  with pytest.raises(tf.errors.InvalidArgumentError, match="rans:"):
    decode(tf.constant(b"\0" * 64), index)


# Traces the rANS encoder and decoder in a process where
# tensorflow_compression cannot be imported and saves them as SavedModels
# (argv: the stock coder's directory, then a broken one's). The broken
# coder's encoder also runs one TFC op (TFC imported for it after the
# stock coder is saved): the check below must reject it.
TRACE_SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["tensorflow_compression"] = None
    import numpy as np
    import tensorflow as tf
    from dcae_tf import rans
    cdf = np.array([[0, 9, 65530, 65535, 65536], [0, 30000, 65536, 65536,
                    65536]], np.int32)
    tables = rans.Tables(cdf, [-1, 0], [5, 3], 16)
    spec = tf.TensorSpec([None], tf.int32)

    class Coder(tf.Module):

      def __init__(self, extra_op=None):
        super().__init__()
        self.tables = tables  # Its variables are saved with the coder.
        self.extra_op = extra_op

      @tf.function(input_signature=[spec, spec])
      def encode(self, values, index):
        stream = rans.encode([(values, index), (values, index)], self.tables)
        if self.extra_op is not None:
          with tf.control_dependencies([self.extra_op()]):
            stream = tf.identity(stream)
        return stream

      @tf.function(input_signature=[tf.TensorSpec([], tf.string), spec])
      def decode(self, stream, index):
        return rans.decode(stream, [index, index], tables)

    stock_dir, broken_dir = sys.argv[1:]
    tf.saved_model.save(Coder(), stock_dir)
    del sys.modules["tensorflow_compression"]
    from tensorflow_compression.python.ops import gen_ops
    tf.saved_model.save(Coder(lambda: gen_ops.pmf_to_quantized_cdf(
        tf.constant([.5, .5]), precision=16)), broken_dir)
""")

# Reads a saved coder in a fresh process that has neither
# tensorflow_compression nor dcae_tf (as a stock TensorFlow or TF Serving
# deployment): the ops of its graphs and library functions that this
# process does not know, and, if none, whether it loads and round-trips.
CHECK_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow_compression"] = None
    sys.modules["dcae_tf"] = None
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry
    saved = saved_model_pb2.SavedModel()
    with open(sys.argv[1] + "/saved_model.pb", "rb") as f:
      saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
      ops |= {node.op for node in function.node_def}
    # A node may call one of the library's functions by its name.
    ops -= {function.signature.name for function in graph.library.function}
    report = {"ops": len(ops), "missing": sorted(
        op for op in ops if op_def_registry.get(op) is None)}
    if not report["missing"]:
      coder = tf.saved_model.load(sys.argv[1])
      values = np.array([0, 1, -1, 5, 70000], np.int32)
      index = np.array([0, 0, 1, 1, 0], np.int32)
      out = coder.decode(coder.encode(values, index), index)
      report["round_trip"] = all(np.array_equal(o, values) for o in out)
    print(json.dumps(report))
""")


def _run(script, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                          env=env, capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  return result.stdout


@pytest.fixture(name="saved_coders", scope="module")
def fixture_saved_coders(tmp_path_factory):
  """{"stock": the saved rANS coder, "tfc-op": the same with a TFC op}."""
  tmp = tmp_path_factory.mktemp("rans-coders")
  dirs = {"stock": tmp / "stock", "tfc-op": tmp / "tfc-op"}
  _run(TRACE_SCRIPT, dirs["stock"], dirs["tfc-op"])
  return dirs


def _check_runs_on_stock_tensorflow(saved_dir):
  """Every op of the saved coder is registered in a fresh process without
  tensorflow_compression or dcae_tf, and there it decodes what it encodes.

  (Checked where the graph was traced, every op is registered by
  construction: an op that was not could not have been traced.)
  """
  report = json.loads(_run(CHECK_SCRIPT, saved_dir).strip().splitlines()[-1])
  assert report["missing"] == [], report
  assert report["ops"] > 10 and report["round_trip"], report


@pytest.mark.parametrize("variant", ["stock", "tfc-op"])
def test_every_op_is_registered_without_tfc(saved_coders, variant):
  """The traced encoder and decoder (graphs, while bodies and all library
  functions), saved, load and run where tensorflow_compression is not; a
  coder with one TFC op in it is refused by the same check."""
  if variant == "stock":
    _check_runs_on_stock_tensorflow(saved_coders[variant])
    return
  with pytest.raises(AssertionError,
                     match=re.escape("'missing': ['PmfToQuantizedCdf']")):
    _check_runs_on_stock_tensorflow(saved_coders[variant])
