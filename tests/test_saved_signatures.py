"""dcae_tf.runtime.signatures: signatures run without tf.saved_model.load."""
import gc
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.eager import context

from dcae_tf.runtime import layout
from dcae_tf.runtime import signatures as saved_signatures

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPROCESS_TIMEOUT_SECONDS = 300

# Saves a small model with a variable, a captured constant, a nested
# tf.function and a loop, for a scale given on the command line: the scale is
# the variable's value and also a constant inside the graph, so models of
# two scales have different function bodies. Run in a fresh process, the
# script gives its functions the same generated names every time.
SAVE_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf

class Affine(tf.Module):
  def __init__(self, scale):
    super().__init__()
    self.w = tf.Variable(np.full([3], scale, np.float32))
    self.offset = tf.constant(np.arange(3, dtype=np.float32))
    self.shift = scale

  @tf.function
  def inner(self, x):
    return x * self.w + self.offset + self.shift

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"),
                                tf.TensorSpec([], tf.int32, name="n")])
  def apply(self, x, n):
    total = tf.while_loop(lambda i, t: i < n,
                          lambda i, t: (i + 1, t + self.inner(x)),
                          (0, tf.zeros_like(x)))[1]
    return {"y": total, "sum": tf.reduce_sum(total)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def double(self, x):
    return {"y": 2. * x}

module = Affine(float(sys.argv[2]))
tf.saved_model.save(module, sys.argv[1],
                    signatures={"apply": module.apply, "double": module.double})
"""


def _save(directory, scale):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-c", SAVE_SCRIPT, str(directory),
                         str(scale)], env=env, capture_output=True, text=True,
                        timeout=SUBPROCESS_TIMEOUT_SECONDS, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return str(directory)


def _function_names(directory):
  with open(os.path.join(directory, layout.SAVED_MODEL_FILENAME),
            "rb") as f:
    library = saved_model_pb2.SavedModel.FromString(
        f.read()).meta_graphs[0].graph_def.library
  return {f.signature.name for f in library.function}


@pytest.fixture(name="saved", scope="module")
def fixture_saved(tmp_path_factory):
  """Two SavedModels, scale 2 and scale 3, saved by identical processes."""
  root = tmp_path_factory.mktemp("saved")
  return _save(root / "two", 2.0), _save(root / "three", 3.0)


def _expected(x, scale, n):
  return n * (x * scale + np.arange(3, dtype=np.float32) + scale)


def test_runs_signatures_like_the_standard_loader(saved):
  two, _ = saved
  x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  lean = saved_signatures.SavedSignatures(two).functions["apply"]
  out = lean(x=tf.constant(x), n=tf.constant(3))
  reference = tf.saved_model.load(two).signatures["apply"](
      x=tf.constant(x), n=tf.constant(3))
  assert sorted(out) == ["sum", "y"]
  for key in ("y", "sum"):
    np.testing.assert_array_equal(out[key].numpy(), reference[key].numpy())
  np.testing.assert_allclose(out["y"].numpy(), _expected(x, 2.0, 3), rtol=1e-6)
  assert list(lean.input_specs) == ["n", "x"]
  assert lean.output_keys == ["sum", "y"]


def test_exports_with_the_same_function_names_load_side_by_side(saved):
  two, three = saved
  # Identical processes generate identical names: a runtime holding both
  # under those names would run one model's functions for the other.
  assert _function_names(two) == _function_names(three)
  first = saved_signatures.SavedSignatures(two).functions["apply"]
  second = saved_signatures.SavedSignatures(three).functions["apply"]
  x = np.ones((2, 3), np.float32)
  np.testing.assert_allclose(first(x=x, n=1)["y"].numpy(),
                             _expected(x, 2.0, 1))
  np.testing.assert_allclose(second(x=x, n=1)["y"].numpy(),
                             _expected(x, 3.0, 1))


def test_functions_enter_the_runtime_as_needed_and_leave_with_the_last_user(
    saved):
  ctx = context.context()
  gc.collect()
  before = set(ctx.list_function_names())
  functions = saved_signatures.SavedSignatures(saved[0]).functions
  assert set(ctx.list_function_names()) == before  # nothing called yet
  apply = functions["apply"]
  assert apply(x=np.zeros((1, 3), np.float32), n=2)["sum"].numpy() == 18.
  added = set(ctx.list_function_names()) - before
  # The wrapper, the function it calls, the loop's body and condition and
  # the function the body calls; not the other signature's.
  assert len(added) >= 4
  assert not any("double" in name for name in added)
  np.testing.assert_array_equal(
      functions["double"](x=np.ones([2], np.float32))["y"].numpy(), [2., 2.])
  added = set(ctx.list_function_names()) - before
  assert any("double" in name for name in added)
  # All of one load, renamed: saved name + "_L<load number>".
  assert len({name[name.rindex("_L"):] for name in added}) == 1
  assert {name[:name.rindex("_L")] for name in added} <= _function_names(
      saved[0])
  del functions, apply
  gc.collect()
  assert not set(ctx.list_function_names()) & added


def test_refuses_wrong_inputs(saved):
  function = saved_signatures.SavedSignatures(saved[0]).functions["apply"]
  with pytest.raises(TypeError, match=r"takes inputs \['n', 'x'\]"):
    function(x=np.zeros((1, 3), np.float32))
  with pytest.raises(ValueError, match="input 'x' must be float32"):
    function(x=np.zeros((1, 3), np.float64), n=1)
  with pytest.raises(ValueError, match=r"with shape \(None, 3\)"):
    function(x=np.zeros((1, 4), np.float32), n=1)


def test_refuses_what_is_not_a_saved_model(tmp_path, saved):
  with pytest.raises(saved_signatures.SavedModelError, match="cannot read"):
    saved_signatures.SavedSignatures(str(tmp_path))
  (tmp_path / layout.SAVED_MODEL_FILENAME).write_bytes(
      b"\x0a\xff\xff\xff\xff garbage")
  with pytest.raises(saved_signatures.SavedModelError, match="not a SavedModel"):
    saved_signatures.SavedSignatures(str(tmp_path))
  # A graph without its variables.
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / layout.SAVED_MODEL_FILENAME).write_bytes(
      open(os.path.join(saved[0], layout.SAVED_MODEL_FILENAME),
           "rb").read())
  with pytest.raises(saved_signatures.SavedModelError,
                     match="cannot read the variables"):
    saved_signatures.SavedSignatures(str(broken))
