"""Exports run on stock TensorFlow: no tensorflow_compression needed.

TF Serving's model server, `saved_model_cli` and every other TensorFlow
runtime load a SavedModel with the TF1 session loader and know only the ops
their binary registers, so an export must hold stock ops only. Each check
here runs in a subprocess whose Python cannot import tensorflow_compression
(a stub package first on PYTHONPATH raises ImportError), on a `tiny` export
made by this module and on the newest version of the default shipped
export; its outputs are compared bit for bit with `ExportedCodec`'s in this
process (and, for the tiny export, with the in-process codec's). Every other
shipped export must need exactly the ops of the default one (the zoo's
models share one preset and one export graph, only their weights differ),
which a read of their saved_model.pb checks in a second.
"""
import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from dcae_tf import export
from dcae_tf import model as model_lib
from dcae_tf import zoo
from dcae_tf.codec import DCAECodec
from dcae_tf.runtime import layout
from dcae_tf.runtime import signatures
from dcae_tf.runtime import client as client_lib
from dcae_tf.serving import process
from tests import rest_json
from tests import serving_fakes
from tests.images import smooth_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "saved_models")
BIN = os.path.dirname(sys.executable)
TINY = "tiny"
MODEL_NAME = "dcae"
SEED = 0
HEIGHT, WIDTH = 40, 56
SUBPROCESS_TIMEOUT_SECONDS = 600
# Loading the tiny export takes well under this even on busy cores; a
# server that cannot load it keeps waiting for a loadable version.
SERVER_START_TIMEOUT_SECONDS = 180
BLOCKED = "tensorflow_compression is blocked: stock TensorFlow only"
# The package blocked; a process that imported it has its op libraries
# mapped from a directory of that name.
TFC_PACKAGE = "tensorflow_compression"
ERROR_CHARS = 500

# Loads an export as TF Serving does, TensorFlow only (a script run in a
# process whose Python cannot import tensorflow_compression).
SESSION_LOADER = os.path.join(ROOT, "tests", "stock_session_loader.py")


def _shipped_version_dirs():
  """Model name -> newest complete version dir, for each shipped export."""
  if not os.path.isdir(SHIPPED):
    return {}
  out = {}
  for name in sorted(os.listdir(SHIPPED)):
    versions = layout.complete_versions(os.path.join(SHIPPED, name))
    if versions:
      out[name] = os.path.join(SHIPPED, name, str(versions[-1]))
  return out


SHIPPED_EXPORTS = _shipped_version_dirs()
_DEFAULT = zoo.default_model(SHIPPED) if SHIPPED_EXPORTS else None
# The shipped export every runtime runs; the others are checked by op set.
DEFAULT_SHIPPED = _DEFAULT.dir_name if _DEFAULT else None
EXPORTS = [TINY] + ([DEFAULT_SHIPPED] if DEFAULT_SHIPPED else [])


def _op_types(version_dir):
  """The op types an export's meta graph runs (`signatures.graph_ops`)."""
  path = os.path.join(version_dir, layout.SAVED_MODEL_FILENAME)
  with open(path, "rb") as f:
    return signatures.graph_ops(
        saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs[0])


def _image():
  return smooth_image(HEIGHT, WIDTH, seed=SEED)


def _tail(text, chars=ERROR_CHARS):
  return text.strip()[-chars:]


class _CompressAndDecompress(tf.Module):
  """A codec's `compress`, `decompress` and `metadata` only.

  `save_versioned` then exports no `reconstruct` signature, whose tracing
  and saving take about 40 % of a tiny export's time; its graph is
  compress's plus rate estimates, and the shipped exports hold one.
  """

  def __init__(self, codec):
    super().__init__(name="compress_and_decompress")
    self.codec = codec
    self.compress = codec.compress
    self.decompress = codec.decompress
    self.metadata = codec.metadata


@pytest.fixture(name="blocked_env", scope="module")
def fixture_blocked_env(tmp_path_factory):
  """os.environ for a Python in which tensorflow_compression cannot be
  imported: a stub package of that name first on PYTHONPATH raises."""
  stub = tmp_path_factory.mktemp("no_tfc")
  (stub / TFC_PACKAGE).mkdir()
  (stub / TFC_PACKAGE / "__init__.py").write_text(
      f"raise ImportError({BLOCKED!r})\n")
  path = os.pathsep.join(
      filter(None, [str(stub), ROOT, os.environ.get("PYTHONPATH")]))
  env = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("DCAE_TF_DEBUG", None)
  return env


@pytest.fixture(name="tiny", scope="module")
def fixture_tiny(tmp_path_factory):
  """(in-process DCAECodec of a seeded tiny model, its export's version dir)."""
  tf.keras.utils.set_random_seed(SEED)
  codec = DCAECodec(model_lib.DCAE(TINY).build_weights(), name="stock-tiny")
  base = str(tmp_path_factory.mktemp("stock_export") / MODEL_NAME)
  return codec, export.save_versioned(_CompressAndDecompress(codec), base)


@pytest.fixture(name="export_case", scope="module", params=EXPORTS)
def fixture_export_case(request):
  """(name, version dir): the tiny export or a shipped one."""
  if request.param == TINY:
    return TINY, request.getfixturevalue("tiny")[1]
  return request.param, SHIPPED_EXPORTS[request.param]


@pytest.fixture(name="expected", scope="module")
def fixture_expected():
  """(name, version dir, request) -> {source: (bitstream, decoded image)}
  of the test image: ExportedCodec's, and the in-process codec's for the
  tiny export. Each export is loaded once, and released after."""
  cache = {}

  def expected(name, version_dir, request):
    if version_dir not in cache:
      local = export.load_exported(version_dir)
      data = local.compress(_image())
      out = {"ExportedCodec": (data, local.decompress(data))}
      del local
      if name == TINY:
        codec = request.getfixturevalue("tiny")[0]
        data = codec.compress(tf.constant(_image())).numpy()
        out["the in-process codec"] = (
            data, codec.decompress(tf.constant(data)).numpy())
      cache[version_dir] = out
    return cache[version_dir]

  return expected


def _check_equal(expected, data, decoded):
  """`data` and `decoded` are bit for bit what each of `expected` gives."""
  assert decoded.dtype == np.uint8 and decoded.shape == _image().shape
  for source, (expected_data, expected_decoded) in expected.items():
    assert data == expected_data, (
        f"bitstream differs from {source}'s ({len(data)} vs "
        f"{len(expected_data)} bytes)")
    assert np.array_equal(decoded, expected_decoded), (
        f"decoded image differs from {source}'s")


@pytest.fixture(name="session_run", scope="module")
def fixture_session_run(export_case, blocked_env, tmp_path_factory):
  """SESSION_LOADER's result dict and output dir, once per export."""
  out = tmp_path_factory.mktemp("session")
  np.save(out / "image.npy", _image())
  proc = subprocess.run(
      [sys.executable, SESSION_LOADER, export_case[1],
       str(out / "image.npy"), str(out)],
      env=blocked_env, capture_output=True, text=True, check=False,
      timeout=SUBPROCESS_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
  assert proc.returncode == 0, _tail(proc.stderr)
  with open(out / "result.json", encoding="utf-8") as f:
    result = json.load(f)
  assert result["tfc_import_error"] == BLOCKED, result
  assert not result["tfc_imported"], result
  return result, out


def test_the_stub_blocks_tensorflow_compression(blocked_env):
  proc = subprocess.run(
      [sys.executable, "-c", "import tensorflow_compression"],
      env=blocked_env, capture_output=True, text=True, check=False,
      timeout=SUBPROCESS_TIMEOUT_SECONDS)
  assert proc.returncode != 0 and BLOCKED in proc.stderr, proc.stderr


@pytest.mark.slow
def test_every_op_is_registered_in_stock_tensorflow(session_run):
  result, _ = session_run
  assert result["num_ops"] > 0, result
  assert result["missing"] == [], (
      f"op types not registered without tensorflow_compression: "
      f"{', '.join(result['missing'])}")


@pytest.mark.slow
def test_session_loader_round_trip(session_run, export_case, expected,
                                   request):
  result, out = session_run
  assert result["session_error"] is None, (
      result["session_error"][:ERROR_CHARS])
  _check_equal(expected(*export_case, request),
               (out / "bitstream").read_bytes(),
               np.load(out / "decoded.npy"))


def _saved_model_cli(env, *args):
  proc = subprocess.run(
      [os.path.join(BIN, "saved_model_cli"), "run", *map(str, args)],
      env=env, capture_output=True, text=True, check=False,
      timeout=SUBPROCESS_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
  assert proc.returncode == 0, _tail(proc.stderr)


def _bitstream_from_npy(path):
  """The bytes of a string scalar that saved_model_cli saved: numpy keeps a
  `bytes` as a fixed-width "S" array, whose elements lose trailing NULs
  but whose buffer holds them all."""
  array = np.load(path, allow_pickle=True)
  assert array.shape == (), array.shape
  return array.item() if array.dtype == object else array.tobytes()


# The tool on the tiny export; the shipped export's graphs go through the
# same TF1 session loader in test_session_loader_round_trip.
@pytest.mark.slow
@pytest.mark.parametrize("export_case", [TINY], indirect=True)
def test_saved_model_cli_round_trip(export_case, blocked_env, expected,
                                    request, tmp_path):
  np.save(tmp_path / "image.npy", _image())
  common = ("--dir", export_case[1], "--tag_set", "serve")
  _saved_model_cli(blocked_env, *common, "--signature_def", "compress",
                   "--inputs", f"image={tmp_path / 'image.npy'}",
                   "--outdir", tmp_path / "compressed")
  # saved_model_cli names its files after the output keys.
  data = _bitstream_from_npy(tmp_path / "compressed" /
                             f"{export.BITSTREAM_BYTES}.npy")
  # An object array: a fixed-width bytes array fed to TensorFlow loses its
  # trailing NULs.
  np.save(tmp_path / "bitstream.npy", np.array(data, dtype=object))
  _saved_model_cli(blocked_env, *common, "--signature_def", "decompress",
                   "--inputs", f"bitstream={tmp_path / 'bitstream.npy'}",
                   "--outdir", tmp_path / "decompressed")
  _check_equal(expected(*export_case, request), data,
               np.load(tmp_path / "decompressed" / "image.npy"))


def _maps_tfc(pid):
  """Whether process `pid` has a file of tensorflow_compression mapped."""
  with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
    return TFC_PACKAGE in f.read()


@pytest.mark.slow
def test_model_server_serves_without_tensorflow_compression(
    tiny, blocked_env, expected, request, tmp_path):
  """`dcae-tf-server` on loopback, through the gRPC client."""
  base = layout.base_path(tiny[1])
  flags = ["--model_base_path", base, "--model_name", MODEL_NAME,
           "--port", "0"]
  server = process.ServerProcess(flags, str(tmp_path / "server.log"),
                                 env=blocked_env,
                                 start_timeout=SERVER_START_TIMEOUT_SECONDS)
  server.command = [os.path.join(BIN, "dcae-tf-server"), *flags]
  with server:
    if os.path.exists(f"/proc/{server.proc.pid}/maps"):
      assert not _maps_tfc(server.proc.pid)
    with client_lib.ServingClient("127.0.0.1", server.port,
                                  MODEL_NAME) as client:
      data = client.compress(_image())
      decoded = client.decompress(data)
  assert server.stopped_cleanly, server.log_tail()
  _check_equal(expected(TINY, tiny[1], request), data, decoded)


@pytest.fixture(name="rest_case", scope="module")
def fixture_rest_case(tiny):
  """(the tiny export's ExportedCodec, its compress signature's outputs
  for the test image, the encoder-side reconstruction of the image)."""
  codec, version_dir = tiny
  local = export.load_exported(version_dir)
  outputs = local.signatures[export.COMPRESS](
      **{export.IMAGE: tf.constant(_image())})
  _, _, reconstruction = codec.compress_with_reconstruction(
      tf.constant(_image()))
  return local, outputs, reconstruction.numpy()


@pytest.mark.slow
def test_rest_predict_responses_are_json_and_round_trip(rest_case):
  """TF Serving's REST API, as its json_tensor.cc writes and reads JSON
  (`tests/rest_json.py`), on the export's own signature defs: compress's
  response parses with json.loads, its "outputs" is {"b64": ...}, and fed
  as is to decompress's "bitstream" input it decodes to the encoder's
  reconstruction."""
  local, outputs, reconstruction = rest_case
  data = outputs[export.BITSTREAM_BYTES].numpy()
  compress_def = local.signature_defs[export.COMPRESS]
  assert list(compress_def.outputs) == [export.BITSTREAM_BYTES]
  response = json.loads(rest_json.predict_response(compress_def, outputs))
  assert list(response["outputs"]) == ["b64"]
  assert base64.b64decode(response["outputs"]["b64"]) == data

  request = json.dumps({"signature_name": export.DECOMPRESS,
                        "inputs": {export.BITSTREAM: response["outputs"]}})
  decompress_def = local.signature_defs[export.DECOMPRESS]
  inputs = rest_json.predict_request_inputs(request, decompress_def)
  assert inputs[export.BITSTREAM].item() == data
  decoded = local.signatures[export.DECOMPRESS](
      **{k: tf.constant(v.item()) for k, v in inputs.items()})
  response = json.loads(rest_json.predict_response(decompress_def, decoded))
  np.testing.assert_array_equal(np.array(response["outputs"], np.uint8),
                                reconstruction)


@pytest.mark.slow
def test_a_string_output_not_named_bytes_is_not_json(rest_case):
  """What the "_bytes" key prevents: the same outputs under the contract's
  old key ("bitstream") come back raw, and a bitstream is not UTF-8."""
  local, outputs, _ = rest_case
  with pytest.raises(UnicodeDecodeError):
    outputs[export.BITSTREAM_BYTES].numpy().decode("utf-8")  # Else the check below would prove nothing.
  old_def = type(local.signature_defs[export.COMPRESS])()
  old_def.CopyFrom(local.signature_defs[export.COMPRESS])
  old_def.outputs["bitstream"].CopyFrom(old_def.outputs[
      export.BITSTREAM_BYTES])
  del old_def.outputs[export.BITSTREAM_BYTES]
  body = rest_json.predict_response(
      old_def, {"bitstream": outputs[export.BITSTREAM_BYTES]})
  assert body.startswith(b'{"outputs": "')
  with pytest.raises(ValueError):  # UnicodeDecodeError: not JSON text.
    json.loads(body)


@pytest.mark.skipif(DEFAULT_SHIPPED is None, reason="no shipped models")
def test_every_shipped_export_needs_the_ops_of_the_checked_one():
  checked = _op_types(SHIPPED_EXPORTS[DEFAULT_SHIPPED])
  assert "Conv2D" in checked  # the parse found the transforms
  for name, version_dir in SHIPPED_EXPORTS.items():
    assert _op_types(version_dir) == checked, name


def test_an_unregistered_op_is_refused_by_name(tmp_path):
  """A SavedModel needing an op nobody registers is refused with its name
  (not a NotFoundError at the first call)."""
  version_dir = export.save_versioned(serving_fakes.FakePngCodec(),
                                      str(tmp_path / "fake"))
  path = os.path.join(version_dir, layout.SAVED_MODEL_FILENAME)
  with open(path, "rb") as f:
    saved = saved_model_pb2.SavedModel.FromString(f.read())
  renamed = 0
  for function in saved.meta_graphs[0].graph_def.library.function:
    for node in function.node_def:
      if node.op == "EncodePng":
        node.op = "DcaeNoSuchOp"
        renamed += 1
  assert renamed
  with open(path, "wb") as f:
    f.write(saved.SerializeToString())
  with pytest.raises(export.ExportError, match="DcaeNoSuchOp"):
    export.load_exported(version_dir)
