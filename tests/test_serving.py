"""The gRPC server as a real subprocess on 127.0.0.1, driven by the client."""
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from dcae_tf import export
from dcae_tf.runtime import client as client_lib
from dcae_tf.serving import process
from dcae_tf.runtime import tensors
from tests import serving_fakes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_NAME = "codec"
POLL_SECONDS = 0.2
# Small, so a real image can exceed it: 40x40 passes, 80x80 does not.
MAX_PIXELS = 64 * 64
VERSION_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 30
NUM_CLIENTS = 8
REQUESTS_PER_CLIENT = 5
READY_RE = process.READY_RE
# The real codec is part of the package, never optional: a broken import of
# it fails the "tiny" tests (tests/test_export.py checks that).
CODEC_KINDS = ["fake", "tiny"]
# What decompressing garbage says, per codec.
CORRUPT_MESSAGES = {"fake": "Unknown image file format",
                    "tiny": "not a DCAE bitstream"}


@pytest.fixture(name="setup", scope="module", params=CODEC_KINDS)
def fixture_setup(request, tmp_path_factory):
  """(kind, base path, local ExportedCodec of version 1, running server)."""
  tmp = tmp_path_factory.mktemp(f"serving-{request.param}")
  base = str(tmp / MODEL_NAME)
  export.save_versioned(serving_fakes.make_codec(request.param), base)
  local = export.load_exported(base)
  server = process.ServerProcess(
      ["--model_base_path", base, "--model_name", MODEL_NAME, "--port", "0",
       "--poll_seconds", str(POLL_SECONDS), "--max_pixels", str(MAX_PIXELS)],
      str(tmp / "server.log"),
      env=process.repo_env(REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")).start()
  yield request.param, base, local, server
  server.stop()


@pytest.fixture(name="client")
def fixture_client(setup):
  with client_lib.ServingClient("127.0.0.1", setup[3].port, MODEL_NAME,
                                timeout=VERSION_TIMEOUT_SECONDS) as c:
    yield c


def _images():
  return [serving_fakes.make_image(h, w, seed=s)
          for s, (h, w) in enumerate([(24, 40), (1, 1), (33, 17)])]


def test_ready_line_names_model_and_version(setup):
  assert READY_RE.search(setup[3].lines[0]).groups()[:3] == (
      MODEL_NAME, "1", "127.0.0.1")


def test_round_trip_matches_local_export(setup, client):
  local = setup[2]
  for image in _images():
    data = client.compress(image)
    assert data == local.compress(image)
    decoded = client.decompress(data)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, local.decompress(data))


def test_status_and_metadata(setup, client):
  local = setup[2]
  assert client.status() == [{"version": 1, "state": "AVAILABLE",
                              "error_code": 0, "error_message": ""}]
  meta = client.metadata()
  assert (meta["model"], meta["version"]) == (MODEL_NAME, 1)
  assert meta["codec"] == local.metadata
  assert meta["signatures"]["compress"] == {
      "inputs": {"image": {"dtype": "DT_UINT8", "shape": [-1, -1, 3]}},
      "outputs": {"bitstream_bytes": {"dtype": "DT_STRING", "shape": []}}}
  assert meta["signatures"]["decompress"]["inputs"] == {
      "bitstream": {"dtype": "DT_STRING", "shape": []}}
  # The real codec also exports the optional `reconstruct` signature.
  assert sorted(meta["signatures"]) == sorted(local.signatures)
  assert {"compress", "decompress", "metadata"} <= set(meta["signatures"])
  remote = client_lib.remote_codec(f"127.0.0.1:{setup[3].port}", MODEL_NAME)
  assert remote.metadata == local.metadata
  image = _images()[0]
  assert remote.compress(image) == local.compress(image)
  remote.close()


def test_concurrent_clients_agree(setup):
  local, port = setup[2], setup[3].port
  images = [serving_fakes.make_image(16 + i, 24 + 2 * i, seed=10 + i)
            for i in range(NUM_CLIENTS)]
  expected = [local.compress(image) for image in images]

  def work(i):
    with client_lib.ServingClient("127.0.0.1", port, MODEL_NAME) as c:
      for _ in range(REQUESTS_PER_CLIENT):
        data = c.compress(images[i])
        assert data == expected[i]
        np.testing.assert_array_equal(c.decompress(data),
                                      local.decompress(data))
    return i

  with concurrent.futures.ThreadPoolExecutor(NUM_CLIENTS) as pool:
    assert sorted(pool.map(work, range(NUM_CLIENTS))) == list(
        range(NUM_CLIENTS))


def _image_proto_with_shape(shape):
  """A 1x1 image proto whose declared shape lies (nothing big allocated)."""
  proto = tensors.image_proto(np.zeros([1, 1, 3], np.uint8))
  for dim, size in zip(proto.tensor_shape.dim, shape):
    dim.size = size
  return proto


IMAGE = serving_fakes.make_image(8, 8)
BAD_REQUESTS = {
    # name: (model, version, signature, inputs, code, message regex)
    "unknown model": ("nope", None, "compress",
                      {"image": tensors.image_proto(IMAGE)}, "NOT_FOUND",
                      "model 'nope' is not served .this server serves "
                      f"'{MODEL_NAME}'"),
    "unknown version": (MODEL_NAME, 99, "compress",
                        {"image": tensors.image_proto(IMAGE)}, "NOT_FOUND",
                        "version 99 of model 'codec' is not served"),
    "unknown signature": (MODEL_NAME, None, "encode", {}, "NOT_FOUND",
                          "signature 'encode' not found; choose one of "
                          r"\['compress', 'decompress', 'metadata'"),
    "missing input": (MODEL_NAME, None, "compress", {}, "INVALID_ARGUMENT",
                      r"missing input 'image': signature 'compress' takes "
                      r"\['image'\]"),
    "extra input": (MODEL_NAME, None, "decompress",
                    {"bitstream": tensors.string_proto(b"x"),
                     "extra": tensors.string_proto(b"y")},
                    "INVALID_ARGUMENT", "unexpected input 'extra'"),
    "wrong dtype": (MODEL_NAME, None, "compress",
                    {"image": tf.make_tensor_proto(IMAGE.astype(np.float32))},
                    "INVALID_ARGUMENT",
                    "input 'image' must be DT_UINT8, got DT_FLOAT"),
    "wrong rank": (MODEL_NAME, None, "compress",
                   {"image": tensors.image_proto(IMAGE[0])},
                   "INVALID_ARGUMENT", "input 'image' must have rank 3"),
    "scalar expected": (MODEL_NAME, None, "decompress",
                        {"bitstream": tf.make_tensor_proto([b"a", b"b"])},
                        "INVALID_ARGUMENT",
                        "input 'bitstream' must have rank 0"),
    "four channels": (MODEL_NAME, None, "compress",
                      {"image": tensors.image_proto(
                          np.zeros([4, 4, 4], np.uint8))},
                      "INVALID_ARGUMENT",
                      r"must have shape \[\?, \?, 3\], got \[4, 4, 4\]"),
    # Declares 10^10 pixels but carries 3 bytes: refused on the shape alone.
    "over pixel limit": (MODEL_NAME, None, "compress",
                         {"image": _image_proto_with_shape([100000, 100000])},
                         "INVALID_ARGUMENT",
                         r"image 100000x100000 \(10000000000 pixels\) exceeds "
                         f"the server's limit of {MAX_PIXELS} pixels"),
    "payload shorter than shape": (MODEL_NAME, None, "compress",
                                   {"image": _image_proto_with_shape([2, 2])},
                                   "INVALID_ARGUMENT",
                                   "tensor_content has 3 bytes, shape "
                                   r"\[2, 2, 3\] needs 12"),
    "corrupt bitstream": (MODEL_NAME, None, "decompress",
                          {"bitstream": tensors.string_proto(b"garbage")},
                          "INVALID_ARGUMENT", None),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_and_server_keeps_serving(setup, client, case):
  kind, port = setup[0], setup[3].port
  model, version, signature, inputs, code, message = BAD_REQUESTS[case]
  message = message or CORRUPT_MESSAGES[kind]
  with client_lib.ServingClient("127.0.0.1", port, model,
                                version=version) as bad:
    with pytest.raises(client_lib.ServingError) as info:
      bad.predict(signature, inputs)
  assert info.value.code.name == code
  assert re.search(message, info.value.details), info.value.details
  assert "\n" not in info.value.details
  image = _images()[0]
  np.testing.assert_array_equal(client.decompress(client.compress(image)),
                                setup[2].decompress(setup[2].compress(image)))


def test_real_image_over_pixel_limit_is_refused(client):
  with pytest.raises(client_lib.ServingError,
                     match="image 80x80 .6400 pixels. exceeds") as info:
    client.compress(serving_fakes.make_image(80, 80))
  assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert client.compress(serving_fakes.make_image(40, 40))


def test_metadata_request_errors(client):
  request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=client._model_spec(), metadata_field=["bogus"])  # pylint: disable=protected-access
  with pytest.raises(client_lib.ServingError,
                     match="metadata field 'bogus' is not supported") as info:
    client._call(client._predict.GetModelMetadata, request)  # pylint: disable=protected-access
  assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_no_server_is_a_clear_error():
  # A bound but not listening socket: a loopback port nobody serves.
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with client_lib.ServingClient("127.0.0.1", port, MODEL_NAME,
                                  timeout=5) as c:
      with pytest.raises(client_lib.ServingError,
                         match=f"127.0.0.1:{port}: UNAVAILABLE"):
        c.status()
  with pytest.raises(ValueError, match="HOST:PORT"):
    client_lib.remote_codec("localhost", MODEL_NAME)


def _wait_for_status_version(client, version):
  deadline = time.monotonic() + VERSION_TIMEOUT_SECONDS
  while time.monotonic() < deadline:
    if client.status()[0]["version"] == version:
      return
    time.sleep(POLL_SECONDS)
  raise AssertionError(f"version {version} not served after "
                       f"{VERSION_TIMEOUT_SECONDS}s: {client.status()}")


# Which versions the server loads is the server's logic, whatever the
# codec: the fake codec's exports take a second, the real one's a minute
# each (the real codec's load and warm-up are the fixture's version 1).
@pytest.mark.parametrize("setup", ["fake"], indirect=True)
def test_new_versions_are_picked_up_and_half_written_ones_never(setup,
                                                                client):
  kind, base, _, server = setup
  # Version 2, exported while the server runs.
  export.save_versioned(serving_fakes.make_codec(kind, name="second"), base)
  server.wait_for(r"serving codec version 2 ", VERSION_TIMEOUT_SECONDS)
  _wait_for_status_version(client, 2)
  assert client.codec_metadata()["name"] == "second"
  local2 = export.load_exported(base)
  image = _images()[0]
  assert client.compress(image) == local2.compress(image)

  # Half-written versions 5 (no saved_model.pb yet) and 7 (a truncated
  # saved_model.pb), and a complete SavedModel still under a .tmp name.
  os.makedirs(os.path.join(base, "5", "variables"))
  os.makedirs(os.path.join(base, "7"))
  with open(os.path.join(base, "2", export.SAVED_MODEL_FILENAME), "rb") as f:
    head = f.read(100)
  with open(os.path.join(base, "7", export.SAVED_MODEL_FILENAME), "wb") as f:
    f.write(head)
  shutil.copytree(os.path.join(base, "2"), os.path.join(base, ".tmp-9"))
  deadline = time.monotonic() + VERSION_TIMEOUT_SECONDS
  log = ""
  while time.monotonic() < deadline and not (
      "version 5" in log and "version 7" in log):
    time.sleep(POLL_SECONDS)
    log = server.log()
  assert re.search(r"not serving version 5 .*no saved_model.pb", log), log
  assert re.search(r"not serving version 7 .*failed to load", log), log
  assert client.status()[0]["version"] == 2
  assert client.compress(image) == local2.compress(image)

  # The next proper export (version 8) is served; 5, 7, .tmp-9 never were.
  version_dir = export.save_versioned(
      serving_fakes.make_codec(kind, name="third"), base)
  assert version_dir == os.path.join(base, "8")
  server.wait_for(r"serving codec version 8 ", VERSION_TIMEOUT_SECONDS)
  assert client.codec_metadata()["name"] == "third"
  served = [READY_RE.search(line).group(2) for line in server.lines
            if READY_RE.search(line)]
  assert served == ["1", "2", "8"]
  # Logged once, not on every poll.
  assert server.log().count("not serving version 5") == 1


def _cli(*args):
  command = os.path.join(os.path.dirname(sys.executable), "dcae-tf")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("DCAE_TF_DEBUG", None)
  return subprocess.run([command, *map(str, args)], capture_output=True,
                        text=True, timeout=300, env=env,
                        stdin=subprocess.DEVNULL)


def test_cli_compresses_and_decompresses_on_the_server(setup, tmp_path):
  """`dcae-tf --server`: same files as local coding, one-line errors."""
  kind, base, _, server = setup
  if kind != "tiny":
    pytest.skip("the CLI reads DCAE headers; the fake codec writes PNG")
  from PIL import Image  # pylint: disable=import-outside-toplevel
  image = serving_fakes.make_image(24, 40, seed=7)
  Image.fromarray(image).save(tmp_path / "in.png")
  address = f"127.0.0.1:{server.port}"
  local = export.load_exported(base)  # The version being served.
  proc = _cli("--server", address, "--model", MODEL_NAME, "compress",
              tmp_path / "in.png", tmp_path / "in.dcae")
  assert proc.returncode == 0, proc.stderr
  data = (tmp_path / "in.dcae").read_bytes()
  assert data == local.compress(image)
  proc = _cli("--server", address, "--model", MODEL_NAME, "decompress",
              tmp_path / "in.dcae", tmp_path / "out.png")
  assert proc.returncode == 0, proc.stderr
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")),
                                local.decompress(data))
  proc = _cli("--server", address, "--model", "nope", "compress",
              tmp_path / "in.png", tmp_path / "nope.dcae")
  assert proc.returncode == 1
  assert proc.stderr.count("\n") == 1 and "NOT_FOUND" in proc.stderr, (
      proc.stderr)
  assert not (tmp_path / "nope.dcae").exists()


def test_sigterm_stops_cleanly(setup, client):
  """Runs last in this module: it stops the module's server."""
  server = setup[3]
  assert client.status()
  server.proc.send_signal(signal.SIGTERM)
  assert server.proc.wait(timeout=STOP_TIMEOUT_SECONDS) == 0, server.log()
  server.wait_for(r"stopped serving codec", STOP_TIMEOUT_SECONDS)
  assert "Traceback" not in server.log()



def test_server_that_cannot_start_is_a_clear_error(tmp_path):
  server = process.ServerProcess(
      ["--model_base_path", str(tmp_path), "--no_such_flag"],
      str(tmp_path / "server.log"),
      env=process.repo_env(REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
  # The error says so at once (no waiting for the start timeout) and shows
  # the server's own message.
  with pytest.raises(process.ServerError,
                     match=r"(?s)server exited \(2\).*no_such_flag"):
    server.start()
  assert server.exit_code == 2 and not server.stopped_cleanly
