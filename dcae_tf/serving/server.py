"""A gRPC model server for DCAE exports, speaking TF Serving's API.

    python -m dcae_tf.serving.server --model_base_path saved_models/NAME \\
        --port 8500 [--model_name NAME] [--host 127.0.0.1]

It implements the parts of TF Serving that the codec needs -- Predict,
GetModelMetadata and GetModelStatus -- in Python on top of
`dcae_tf.runtime.exported.ExportedCodec` (TensorFlow only, like the export's
graphs), for hosts without TF Serving's binary or container. Stock TF
Serving serves the same export; the same client works against either
server.

Like TF Serving it serves the newest version under the base path and picks
up new versions while running: a poller loads a new version completely
before swapping it in, and never serves a `.tmp*` directory, a directory
without saved_model.pb, or one that fails to load.
"""
import argparse
import concurrent.futures
import dataclasses
import os
import signal
import sys
import threading

from absl import app
from absl import logging
from absl.flags import argparse_flags
import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dcae_tf.codec.container import DEFAULT_MAX_PIXELS
from dcae_tf.codec.errors import error_message
from dcae_tf.runtime import contract
from dcae_tf.runtime import layout
from dcae_tf.runtime import tensors
from dcae_tf.runtime.exported import ExportedCodec

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
DEFAULT_MAX_MESSAGE_BYTES = contract.DEFAULT_MAX_MESSAGE_BYTES
DEFAULT_POLL_SECONDS = 1.0
DEFAULT_THREADS = 8
# How long in-flight requests may finish after SIGTERM.
STOP_GRACE_SECONDS = 5.0
SIGNATURE_DEF_FIELD = "signature_def"
# SavedModel's internal signatures (e.g. "__saved_model_init_op").
INTERNAL_SIGNATURE_PREFIX = "__"


class RequestError(Exception):
  """A request the server refuses; carries the gRPC status code."""

  def __init__(self, code, message):
    super().__init__(message)
    self.code = code
    self.message = message


def _invalid(message):
  return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(message):
  return RequestError(grpc.StatusCode.NOT_FOUND, message)


@dataclasses.dataclass(frozen=True)
class Servable:
  """One loaded version: what a request is served from, start to end."""
  version: int
  codec: ExportedCodec

  @property
  def signature_defs(self):
    return {k: v for k, v in self.codec.signature_defs.items()
            if not k.startswith(INTERNAL_SIGNATURE_PREFIX)}


class VersionWatcher:
  """Keeps the newest loadable version of a model base path loaded.

  `poll()` loads the candidate completely, then swaps the reference under a
  lock; requests hold the Servable they started with, so a swap never
  disturbs them. Versions that are incomplete (no saved_model.pb yet) or
  fail to load are skipped with one log line, and retried only when their
  saved_model.pb changes.
  """

  def __init__(self, model_base_path, poll_seconds, on_swap):
    self.model_base_path = model_base_path
    self.poll_seconds = poll_seconds
    self._on_swap = on_swap
    self._lock = threading.Lock()
    self._current = None
    self._skipped = {}  # version -> saved_model.pb mtime (None: incomplete)
    self._stop = threading.Event()
    self._thread = None

  @property
  def current(self):
    with self._lock:
      return self._current

  def _skip(self, version, stamp, reason):
    if self._skipped.get(version, ()) != stamp:
      logging.warning("not serving version %d of %s: %s", version,
                      self.model_base_path, reason)
    self._skipped[version] = stamp

  def poll(self):
    """Loads and swaps in the newest good version if it is not served yet."""
    current = self.current
    for version in reversed(layout.list_versions(self.model_base_path)):
      if current is not None and version == current.version:
        return False
      version_dir = os.path.join(self.model_base_path, str(version))
      try:
        stamp = os.stat(os.path.join(version_dir,
                                     layout.SAVED_MODEL_FILENAME)).st_mtime_ns
      except OSError:
        self._skip(version, None,
                   f"no {layout.SAVED_MODEL_FILENAME} (incomplete)")
        continue
      if self._skipped.get(version, ()) == stamp:
        continue
      try:
        codec = ExportedCodec(version_dir)
        codec.warm_up()  # As TF Serving does with the warm-up file.
      except Exception as e:  # pylint: disable=broad-except
        self._skip(version, stamp, f"failed to load: {e}")
        continue
      servable = Servable(version=version, codec=codec)
      with self._lock:
        self._current = servable
      self._on_swap(servable)
      return True
    return False

  def _run(self):
    while not self._stop.wait(self.poll_seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        logging.exception("version poll of %s failed", self.model_base_path)

  def start(self):
    self._thread = threading.Thread(target=self._run, name="version-poller",
                                    daemon=True)
    self._thread.start()

  def stop(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()


def _grpc_method(method):
  """Turns RequestError / TF argument errors into gRPC statuses."""

  def wrapper(self, request, context):
    try:
      return method(self, request, context)
    except RequestError as e:
      context.abort(e.code, e.message)
    except tensors.TensorError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    except tf.errors.InvalidArgumentError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                    error_message(e))
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("%s failed", method.__name__)
      context.abort(grpc.StatusCode.INTERNAL,
                    f"{type(e).__name__}: {error_message(e)}")

  wrapper.__name__ = method.__name__
  wrapper.__doc__ = method.__doc__
  return wrapper


class CodecService(prediction_service_pb2_grpc.PredictionServiceServicer,
                   model_service_pb2_grpc.ModelServiceServicer):
  """PredictionService.Predict/GetModelMetadata + ModelService.GetModelStatus.

  Refusals name what was wrong and what is accepted: a client sees the
  message, not a server log.
  """

  def __init__(self, model_name, watcher, max_pixels):
    self.model_name = model_name
    self.watcher = watcher
    self.max_pixels = max_pixels

  def _servable(self, model_spec):
    if model_spec.name != self.model_name:
      raise _not_found(f"model {model_spec.name!r} is not served "
                       f"(this server serves {self.model_name!r})")
    if model_spec.version_label:
      raise _invalid("version labels are not supported; "
                     "give a version number or none for the newest")
    servable = self.watcher.current
    if servable is None:
      raise RequestError(grpc.StatusCode.UNAVAILABLE,
                         f"no version of model {self.model_name!r} "
                         f"is loaded yet")
    if (model_spec.HasField("version")
        and model_spec.version.value != servable.version):
      raise _not_found(f"version {model_spec.version.value} of model "
                       f"{self.model_name!r} is not served (serving version "
                       f"{servable.version})")
    return servable

  def _model_spec(self, servable, signature_name=""):
    spec = model_pb2.ModelSpec(name=self.model_name,
                               signature_name=signature_name)
    spec.version.value = servable.version
    return spec

  def _inputs(self, request, signature_name, signature_def):
    """Validates request.inputs against the signature, then converts."""
    expected = set(signature_def.inputs)
    given = set(request.inputs)
    missing, extra = sorted(expected - given), sorted(given - expected)
    accepted = f"signature {signature_name!r} takes {sorted(expected) or 'no inputs'}"
    if missing:
      raise _invalid(f"missing input {missing[0]!r}: {accepted}")
    if extra:
      raise _invalid(f"unexpected input {extra[0]!r}: {accepted}")
    for name in sorted(expected):
      shape = tensors.check_against_spec(request.inputs[name],
                                         signature_def.inputs[name], name)
      if name == contract.IMAGE:
        pixels = shape[0] * shape[1]
        if pixels > self.max_pixels:
          raise _invalid(f"image {shape[0]}x{shape[1]} ({pixels} pixels) "
                         f"exceeds the server's limit of {self.max_pixels} "
                         f"pixels")
        if pixels == 0:
          raise _invalid(f"image is empty: shape {shape}")
    return {name: tf.constant(tensors.to_numpy(request.inputs[name], name))
            for name in sorted(expected)}

  @_grpc_method
  def Predict(self, request, context):  # pylint: disable=invalid-name
    servable = self._servable(request.model_spec)
    signature_defs = servable.signature_defs
    name = request.model_spec.signature_name
    if name not in signature_defs:
      raise _not_found(f"signature {name!r} not found; "
                       f"choose one of {sorted(signature_defs)}")
    signature_def = signature_defs[name]
    outputs = set(request.output_filter or signature_def.outputs)
    unknown = sorted(outputs - set(signature_def.outputs))
    if unknown:
      raise _invalid(f"output_filter names unknown output {unknown[0]!r}: "
                     f"signature {name!r} has {sorted(signature_def.outputs)}")
    inputs = self._inputs(request, name, signature_def)
    results = servable.codec.signatures[name](**inputs)
    response = predict_pb2.PredictResponse(
        model_spec=self._model_spec(servable, name))
    for key in sorted(outputs):
      response.outputs[key].CopyFrom(tensors.to_proto(results[key].numpy()))
    return response

  @_grpc_method
  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    servable = self._servable(request.model_spec)
    fields = list(request.metadata_field)
    if not fields:
      raise _invalid(f"metadata_field is empty; the supported field is "
                     f"{SIGNATURE_DEF_FIELD!r}")
    for field in fields:
      if field != SIGNATURE_DEF_FIELD:
        raise _invalid(f"metadata field {field!r} is not supported; the "
                       f"supported field is {SIGNATURE_DEF_FIELD!r}")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
      signature_map.signature_def[key].CopyFrom(value)
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=self._model_spec(servable))
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response

  @_grpc_method
  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    servable = self._servable(request.model_spec)
    return get_model_status_pb2.GetModelStatusResponse(model_version_status=[
        get_model_status_pb2.ModelVersionStatus(
            version=servable.version,
            state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)])


def address(host, port):
  """host:port, with IPv6 hosts bracketed."""
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(model_base_path, model_name=None, host=DEFAULT_HOST,
          port=DEFAULT_PORT, max_pixels=DEFAULT_MAX_PIXELS,
          max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
          poll_seconds=DEFAULT_POLL_SECONDS, threads=DEFAULT_THREADS,
          stop_event=None):
  """Serves until `stop_event` is set (SIGTERM/SIGINT set it in `main`).

  Prints "serving NAME version V on HOST:PORT" (the bound port, so port 0
  works) each time a version goes live.
  """
  if not os.path.isdir(model_base_path):
    raise FileNotFoundError(f"model base path {model_base_path} does not "
                            f"exist or is not a directory")
  model_name = model_name or os.path.basename(
      os.path.normpath(os.path.abspath(model_base_path)))
  stop_event = stop_event or threading.Event()
  server = grpc.server(
      concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                            thread_name_prefix="grpc"),
      options=[("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)])
  try:
    bound_port = server.add_insecure_port(address(host, port))
  except RuntimeError as e:
    raise OSError(f"cannot bind {address(host, port)}: {e}") from None
  if not bound_port:
    raise OSError(f"cannot bind {address(host, port)}")
  where = address(host, bound_port)

  def on_swap(servable):
    print(f"serving {model_name} version {servable.version} on {where}",
          flush=True)

  watcher = VersionWatcher(model_base_path, poll_seconds, on_swap)
  service = CodecService(model_name, watcher, max_pixels)
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      service, server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
  server.start()
  if not watcher.poll():
    logging.warning("no loadable version under %s yet; waiting for one",
                    model_base_path)
  watcher.start()
  try:
    while not stop_event.wait(poll_seconds):
      pass
  finally:
    server.stop(STOP_GRACE_SECONDS).wait()
    watcher.stop()
  print(f"stopped serving {model_name} on {where}", flush=True)


def parse_args(argv):
  parser = argparse_flags.ArgumentParser(
      prog="dcae-tf-server", description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--model_base_path", required=True,
                      help="Directory of integer version subdirectories "
                           "(saved_models/NAME).")
  parser.add_argument("--model_name", default=None,
                      help="Name clients ask for; default: the base path's "
                           "directory name.")
  parser.add_argument("--host", default=DEFAULT_HOST,
                      help="Address to bind (loopback by default).")
  parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                      help="Port to bind; 0 picks a free one (printed).")
  parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                      help="Largest image (H*W) accepted by compress.")
  parser.add_argument("--max_message_bytes", type=int,
                      default=DEFAULT_MAX_MESSAGE_BYTES,
                      help="gRPC send/receive message size limit.")
  parser.add_argument("--poll_seconds", type=float,
                      default=DEFAULT_POLL_SECONDS,
                      help="How often to look for new versions.")
  parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                      help="Requests handled concurrently.")
  args = parser.parse_args(argv[1:])
  for name in ("max_pixels", "max_message_bytes", "threads"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1")
  if args.poll_seconds <= 0:
    parser.error("--poll_seconds must be > 0")
  return args


def main(args):
  stop_event = threading.Event()
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda *_: stop_event.set())
  try:
    serve(args.model_base_path, model_name=args.model_name, host=args.host,
          port=args.port, max_pixels=args.max_pixels,
          max_message_bytes=args.max_message_bytes,
          poll_seconds=args.poll_seconds, threads=args.threads,
          stop_event=stop_event)
  except OSError as e:
    print(f"dcae-tf-server: error: {e}", file=sys.stderr)
    return 1
  return 0


def run_main():
  app.run(main, flags_parser=parse_args)


if __name__ == "__main__":
  run_main()
