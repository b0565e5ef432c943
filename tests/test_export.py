"""SavedModel export: versioned layout, atomic writes, self-contained loading."""
import base64
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from dcae_tf import export
from dcae_tf.codec import heap
from tests import rest_json
from tests import serving_fakes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPROCESS_TIMEOUT_SECONDS = 600

# Loads an export the way a deployment would: TensorFlow and TFC only.
FRESH_LOAD_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_compression
version_dir, image_path, out_dir = sys.argv[1:]
loaded = tf.saved_model.load(version_dir)
image = np.load(image_path)
data = loaded.signatures["compress"](
    image=tf.constant(image))["bitstream_bytes"]
decoded = loaded.signatures["decompress"](bitstream=data)["image"].numpy()
meta = loaded.signatures["metadata"]()["json"].numpy().decode()
try:
  loaded.signatures["decompress"](bitstream=tf.constant(b"garbage"))
  corrupt_error = None
except Exception as e:
  corrupt_error = type(e).__name__
with open(out_dir + "/bitstream", "wb") as f:
  f.write(data.numpy())
np.save(out_dir + "/decoded.npy", decoded)
print(json.dumps({"metadata": json.loads(meta), "corrupt_error": corrupt_error,
                  "dcae_modules": sorted(
    m for m in sys.modules if m.split(".")[0] == "dcae_tf")}))
"""

# Runs pytest on the tests of the real codec with an import of it broken:
# `sys.modules[name] = None` makes `import name` raise ImportError.
BROKEN_IMPORT_SCRIPT = """
import sys
import pytest
sys.modules[sys.argv[1]] = None
sys.exit(pytest.main(["-q", "-rfEs", "-p", "no:cacheprovider",
                      "-o", "addopts=", *sys.argv[2:]]))
"""
# Every test that builds a real DCAECodec for export or serving.
REAL_CODEC_TESTS = (
    "tests/test_export.py::test_float16_weight_export_is_half_size_and_exact",
    "tests/test_serving.py::test_ready_line_names_model_and_version[tiny]",
    "tests/test_eval_integration.py::test_evaluate_real_codec",
)


def _run_python(script, *args, cwd):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-c", script, *map(str, args)],
                        cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=SUBPROCESS_TIMEOUT_SECONDS, check=False)


@pytest.fixture(name="base", scope="module")
def fixture_base(tmp_path_factory):
  """A model base path with version 1 of the fake codec, and the codec."""
  base = tmp_path_factory.mktemp("export") / "model"
  codec = serving_fakes.FakePngCodec()
  export.save_versioned(codec, str(base))
  return str(base), codec


def _check_fresh_load(version_dir, image, bitstream, decoded, metadata, tmp):
  """Runs an export in a fresh TF+TFC-only process; compares the outputs."""
  np.save(tmp / "image.npy", image)
  result = _run_python(FRESH_LOAD_SCRIPT, version_dir, tmp / "image.npy", tmp,
                       cwd=tmp)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["dcae_modules"] == []
  assert report["metadata"] == metadata
  assert report["corrupt_error"] == "InvalidArgumentError"
  assert (tmp / "bitstream").read_bytes() == bitstream
  np.testing.assert_array_equal(np.load(tmp / "decoded.npy"), decoded)


def test_exported_round_trip_matches_module(base):
  base, codec = base
  exported = export.load_exported(base)
  assert exported.version == 1
  assert exported.path == os.path.join(base, "1")
  image = serving_fakes.make_image(20, 30)
  data = exported.compress(image)
  assert isinstance(data, bytes)
  assert data == codec.compress(tf.constant(image)).numpy()
  decoded = exported.decompress(data)
  assert decoded.dtype == np.uint8 and decoded.shape == image.shape
  np.testing.assert_array_equal(
      decoded, codec.decompress(tf.constant(data)).numpy())
  expected_metadata = json.loads(json.dumps(dict(codec.metadata)))
  assert exported.metadata == expected_metadata
  with open(os.path.join(base, "1", export.METADATA_FILENAME)) as f:
    assert json.load(f) == expected_metadata


def test_signatures_have_contract_names(base):
  defs = export.load_exported(base[0]).signature_defs
  export.check_signature_defs(defs, "test")
  compress, decompress = defs[export.COMPRESS], defs[export.DECOMPRESS]
  assert compress.inputs["image"].dtype == tf.uint8.as_datatype_enum
  assert [d.size for d in compress.inputs["image"].tensor_shape.dim] == [
      -1, -1, 3]
  # "_bytes": TF Serving's REST API base64-encodes it (test_stock_tensorflow).
  assert list(compress.outputs) == ["bitstream_bytes"]
  assert compress.outputs["bitstream_bytes"].dtype == (
      tf.string.as_datatype_enum)
  assert not compress.outputs["bitstream_bytes"].tensor_shape.dim
  # Inputs keep their names: REST takes {"b64": ...} for any string input.
  assert list(decompress.inputs) == ["bitstream"]
  assert decompress.inputs["bitstream"].dtype == tf.string.as_datatype_enum
  assert list(defs[export.METADATA].outputs) == ["json"]
  assert not defs[export.METADATA].inputs


def test_loads_in_fresh_process_without_dcae_tf(base, tmp_path):
  exported = export.load_exported(base[0])
  image = serving_fakes.make_image(17, 33, seed=4)
  bitstream = exported.compress(image)
  _check_fresh_load(exported.path, image, bitstream,
                    exported.decompress(bitstream), exported.metadata,
                    tmp_path)


def _check_warmup_requests(codec, version_dir):
  """The warm-up requests are a compress of the warm-up image and a
  decompress of a bitstream of it: `codec` decodes it to the encoder-side
  reconstruction of the warm-up image. (Not compared byte for byte with a
  second in-process compress: before the entropy parameters were exact,
  those differed once in a full test-suite run.)"""
  (_, compress_inputs), (_, decompress_inputs) = export.read_warmup(
      version_dir)
  warmup = export.warmup_image()
  np.testing.assert_array_equal(compress_inputs[export.IMAGE], warmup)
  _, _, reconstruction = codec.compress_with_reconstruction(
      tf.constant(warmup))
  _check_decodes_to(codec, decompress_inputs[export.BITSTREAM],
                    reconstruction.numpy())
  # The check tells a bitstream of another image of the same size apart.
  upside_down = codec.compress(tf.constant(warmup[::-1].copy())).numpy()
  with pytest.raises(AssertionError, match="Mismatched elements"):
    _check_decodes_to(codec, upside_down, reconstruction.numpy())


def _check_decodes_to(codec, bitstream, expected):
  """`codec` decodes `bitstream` to the uint8 image `expected`, exactly."""
  decoded = codec.decompress(tf.constant(bitstream)).numpy()
  np.testing.assert_array_equal(decoded, expected)


@pytest.mark.slow
def test_float16_weight_export_is_half_size_and_exact(tmp_path):
  """The tiny DCAE's export with weights stored as float16 (as the shipped
  models are): about half the bytes, bit-exact with TF + TFC only in a
  fresh process (compared with the in-process codec, whose traces the
  export reuses: loading a DCAE SavedModel is the slow part), warm-up
  requests that decode to the warm-up image's reconstruction, and a
  distinct model: a float32 export's bitstreams are refused. (Float32
  exports run in fresh processes in tests/test_stock_tensorflow.py.)"""
  # pylint: disable=import-outside-toplevel
  from dcae_tf.codec import DCAECodec
  from dcae_tf.codec import container
  from dcae_tf.model import DCAE
  from dcae_tf.codec import metadata as metadata_lib
  from dcae_tf.codec import weights
  from tests.bitstream_cases import rewrite
  model = DCAE("tiny").build_weights()
  full = DCAECodec(model, name="tiny")
  half = DCAECodec(weights.with_weight_dtype(model, metadata_lib.FLOAT16),
                   name="tiny")
  assert full.metadata["weight_dtype"] == "float32"
  assert half.metadata["weight_dtype"] == "float16"
  assert half.fingerprint != full.fingerprint
  image = serving_fakes.make_image(19, 35, seed=6)
  bitstream = half.compress(tf.constant(image)).numpy()
  _, _, encoder_side = half.compress_with_reconstruction(tf.constant(image))
  decoded = half.decompress(tf.constant(bitstream)).numpy()
  np.testing.assert_array_equal(decoded, encoder_side.numpy())
  version_dir = export.save_versioned(half, str(tmp_path / "half"))
  float32_bytes = sum(v.numpy().nbytes for v in model.variables)
  stored = sum(os.path.getsize(os.path.join(version_dir, "variables", f))
               for f in os.listdir(os.path.join(version_dir, "variables")))
  # The coding tables are integers of a fixed size whatever the weights
  # (0.4 MB, 11 % of the tiny model); the rest is 0.50 of float32 for the
  # small preset, 0.54 here (the float32 prior and the checkpoint's graph).
  reader = tf.train.load_checkpoint(
      os.path.join(version_dir, "variables", "variables"))
  dtypes = reader.get_variable_to_dtype_map()
  table_bytes = sum(
      int(np.prod(shape)) * dtypes[name].size
      for name, shape in reader.get_variable_to_shape_map().items()
      if dtypes[name].is_integer)
  assert stored - table_bytes < 0.6 * float32_bytes
  with open(os.path.join(version_dir, export.METADATA_FILENAME)) as f:
    metadata = json.load(f)
  assert os.listdir(tmp_path / "half") == ["1"]
  assert metadata["fingerprint"] == half.metadata["fingerprint"]
  _check_fresh_load(version_dir, image, bitstream, decoded, metadata,
                    tmp_path)
  _check_warmup_requests(half, version_dir)
  # A bitstream of the float32 weights (its header names their
  # fingerprint; the decoder reads nothing before it) is refused.
  with pytest.raises(tf.errors.InvalidArgumentError, match="fingerprint"):
    half.decompress(rewrite(bitstream, "fingerprint",
                            container.fingerprint_bytes(full.fingerprint)))


# What tests/test_eval_integration.py did before: the kind of skip that a
# broken import must not reach.
OLD_SKIPPING_TEST = """
import pytest

def test_evaluate_real_codec():
  codec_lib = pytest.importorskip("dcae_tf.codec")
  assert codec_lib.DCAECodec
"""


def _check_broken_import_fails(module, tests):
  """pytest on `tests` with `module` unimportable errs or fails, and
  skips and passes nothing."""
  result = _run_python(BROKEN_IMPORT_SCRIPT, module, *tests, cwd=REPO_ROOT)
  summary = [line for line in result.stdout.splitlines()
             if " in " in line and line.endswith("s")][-1]
  assert "skipped" not in summary and "passed" not in summary, summary
  assert "error" in summary, summary
  # ERROR collecting (exit status 4: no collectors for the ids) or errors
  # and failures at run time (1), depending on where the import is needed.
  assert result.returncode in (1, 4), result.stdout[-3000:]
  assert "ModuleNotFoundError" in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize("module,old_skip", [
    ("dcae_tf.codec", False), ("dcae_tf.codec.core", False),
    ("dcae_tf.codec", True)])
def test_broken_codec_import_fails_never_skips(module, old_skip, tmp_path):
  """The real codec is part of the package: its tests have no skip
  condition, so a broken import of it (the package, or its core, which the
  package imports lazily) is an error, never a skipped test. The check
  rejects the importorskip these tests had."""
  if not old_skip:
    _check_broken_import_fails(module, REAL_CODEC_TESTS)
    return
  path = tmp_path / "test_old_skip.py"
  path.write_text(OLD_SKIPPING_TEST)
  with pytest.raises(AssertionError, match="skipped"):
    _check_broken_import_fails(module, [str(path)])


def test_export_carries_tf_serving_warmup_requests(base):
  base, codec = base
  version_dir = os.path.join(base, "1")
  requests = export.read_warmup(version_dir)
  assert [name for name, _ in requests] == [export.COMPRESS, export.DECOMPRESS]
  image = requests[0][1][export.IMAGE]
  np.testing.assert_array_equal(image, export.warmup_image())
  assert image.shape == (export.WARMUP_IMAGE_SIZE,) * 2 + (3,)
  assert image.std() > 0  # A gradient, not a flat image.
  bitstream = requests[1][1][export.BITSTREAM]
  assert bitstream == codec.compress(tf.constant(image)).numpy()


def _copy_with_warmup(base, tmp_path, module):
  """A copy of version 1 whose warm-up file is written by `module`."""
  import shutil  # pylint: disable=import-outside-toplevel
  copy = str(tmp_path / "copy")
  shutil.copytree(os.path.join(base, "1"), copy)
  os.remove(os.path.join(copy, export.WARMUP_PATH))
  if module is not None:
    export.write_warmup_file(
        copy, lambda image: module.compress(tf.constant(image)).numpy())
  return copy


def test_broken_warmup_request_is_a_clear_error(base, tmp_path):
  garbage = types.SimpleNamespace(compress=lambda image: tf.constant(b"junk"))
  exported = export.load_exported(_copy_with_warmup(base[0], tmp_path,
                                                    garbage))
  image = serving_fakes.make_image(10, 12)
  bitstream = exported.compress(image)  # Its warm-up request is fine.
  with pytest.raises(export.ExportError,
                     match="warm-up request of .decompress. failed"):
    exported.decompress(bitstream)


def test_unreadable_warmup_file_is_a_clear_error(base, tmp_path):
  copy = _copy_with_warmup(base[0], tmp_path, base[1])
  path = os.path.join(copy, export.WARMUP_PATH)
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])  # Truncated mid-record.
  exported = export.load_exported(copy)
  with pytest.raises(export.ExportError, match="warm-up file is unreadable"):
    exported.compress(serving_fakes.make_image(10, 12))


def test_export_without_warmup_file_works_and_can_get_one(base, tmp_path):
  copy = _copy_with_warmup(base[0], tmp_path, None)
  exported = export.load_exported(copy)
  assert export.read_warmup(exported.path) == []
  image = serving_fakes.make_image(10, 12)
  np.testing.assert_array_equal(
      exported.decompress(exported.compress(image)),
      base[1].decompress(base[1].compress(tf.constant(image))).numpy())
  export.write_warmup_file(copy)  # By the export itself.
  ours = export.read_warmup(copy)
  original = export.read_warmup(os.path.join(base[0], "1"))
  assert [n for n, _ in ours] == [n for n, _ in original]
  assert ours[1][1][export.BITSTREAM] == original[1][1][export.BITSTREAM]


def test_heap_release_works_on_this_platform():
  # CI runs on glibc Linux, where the warm-up's memory saving applies.
  assert heap.release_free_memory()


def _with_old_contract(version_dir, copy_dir, **metadata):
  """A copy of an export whose `compress` returns "bitstream", as every
  export did before 2026-12 (the signature def's key renamed; the graph is
  the same), its metadata.json updated with `metadata`."""
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.copytree(version_dir, copy_dir)
  path = os.path.join(copy_dir, export.SAVED_MODEL_FILENAME)
  with open(path, "rb") as f:
    saved = saved_model_pb2.SavedModel.FromString(f.read())
  outputs = saved.meta_graphs[0].signature_def[export.COMPRESS].outputs
  outputs["bitstream"].CopyFrom(outputs[export.BITSTREAM_BYTES])
  del outputs[export.BITSTREAM_BYTES]
  with open(path, "wb") as f:
    f.write(saved.SerializeToString())
  meta_path = os.path.join(copy_dir, export.METADATA_FILENAME)
  with open(meta_path) as f:
    meta = json.load(f)
  with open(meta_path, "w") as f:
    json.dump({**meta, **metadata}, f)


@pytest.mark.parametrize("weight_dtype", [None, "float16"])
def test_an_export_of_the_old_contract_is_refused_with_a_re_export_command(
    base, tmp_path, weight_dtype):
  model = tmp_path / "dcae-old"
  _with_old_contract(os.path.join(base[0], "1"), str(model / "3"),
                     **({"weight_dtype": weight_dtype} if weight_dtype
                        else {}))
  with pytest.raises(export.ExportError) as info:
    export.load_exported(str(model))
  message = str(info.value)
  assert "\n" not in message
  assert message.startswith(
      "not a DCAE export of this contract (signature 'compress' maps "
      "['image'] -> ['bitstream'], expected ['image'] -> "
      f"['bitstream_bytes']): {model / '3'}; "), message
  # The command re-exports the weights as they are stored: float16 stays
  # float16, so the fingerprint and the model's bitstreams stay valid.
  command = f"python bin/export.py --checkpoint {model}" + (
      f" --weight_dtype {weight_dtype}" if weight_dtype else "")
  assert message.endswith(
      f"if it is an older DCAE export, re-export it with this code: "
      f"{command} (docs/export.md)"), message


def test_rest_response_of_the_export_is_json(base):
  """The fake codec's bitstream (a PNG: binary) comes back from TF
  Serving's REST API as base64 under the export's own output key; the
  real codec's: test_stock_tensorflow.py."""
  exported = export.load_exported(base[0])
  image = serving_fakes.make_image(12, 20, seed=3)
  signature_def = exported.signature_defs[export.COMPRESS]
  outputs = exported.signatures[export.COMPRESS](image=tf.constant(image))
  response = json.loads(rest_json.predict_response(signature_def, outputs))
  data = base64.b64decode(response["outputs"]["b64"])
  assert data == exported.compress(image)
  np.testing.assert_array_equal(exported.decompress(data), image)

def test_bad_module_and_inputs_are_refused(tmp_path):
  with pytest.raises(export.ExportError, match="no callable `compress`"):
    export.save_versioned(tf.Module(), str(tmp_path / "m"))
  codec = serving_fakes.FakePngCodec()
  export.save_versioned(codec, str(tmp_path / "m"))
  exported = export.load_exported(str(tmp_path / "m"))
  with pytest.raises(ValueError, match="image must be uint8, got float32"):
    exported.compress(np.zeros([4, 4, 3], np.float32))
  with pytest.raises(ValueError, match=r"shape \[H, W, 3\]"):
    exported.compress(np.zeros([4, 4], np.uint8))
  with pytest.raises(ValueError, match="Unknown image file format"):
    exported.decompress(b"not a png")
