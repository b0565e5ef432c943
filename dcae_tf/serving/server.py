"""A gRPC model server for DCAE exports, speaking TF Serving's API.

    python -m dcae_tf.serving.server --model_base_path saved_models/NAME \\
        --port 8500 [--model_name NAME] [--host 127.0.0.1] [--graph_cache DIR]

It implements the parts of TF Serving that the codec needs -- Predict,
GetModelMetadata and GetModelStatus (`serving.service`) -- in Python, for
hosts without TF Serving's binary or container. Stock TF Serving serves the
same export; the same client works against either server. Like TF Serving
it serves the newest version under the base path and picks up new versions
while running (`serving.versions`). This module is the process: the gRPC
server, its flags and its signals.
"""
import argparse
import concurrent.futures
import os
import signal
import sys
import threading

from absl import app
from absl import logging
from absl.flags import argparse_flags
import grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dcae_tf.codec.container import DEFAULT_MAX_PIXELS
from dcae_tf.runtime import contract
from dcae_tf.runtime import graph_cache as graph_cache_lib
from dcae_tf.serving.service import CodecService
from dcae_tf.serving.versions import VersionWatcher

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
DEFAULT_POLL_SECONDS = 1.0
DEFAULT_THREADS = 8
# How long in-flight requests may finish after SIGTERM.
STOP_GRACE_SECONDS = 5.0


def address(host, port):
  """host:port, with IPv6 hosts bracketed."""
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(model_base_path, model_name=None, host=DEFAULT_HOST,
          port=DEFAULT_PORT, max_pixels=DEFAULT_MAX_PIXELS,
          max_message_bytes=contract.DEFAULT_MAX_MESSAGE_BYTES,
          poll_seconds=DEFAULT_POLL_SECONDS, threads=DEFAULT_THREADS,
          stop_event=None, graph_cache=None):
  """Serves until `stop_event` is set (SIGTERM/SIGINT set it in `main`).

  Prints "serving NAME version V on HOST:PORT" (the bound port, so port 0
  works) each time a version goes live. `graph_cache`: the store of
  optimised graphs each version's first calls (its warm-up) go through, a
  `runtime.graph_cache.GraphCache`, or None (the default) for none.
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

  watcher = VersionWatcher(model_base_path, poll_seconds, on_swap,
                           graph_cache=graph_cache)
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
                      default=contract.DEFAULT_MAX_MESSAGE_BYTES,
                      help="gRPC send/receive message size limit.")
  parser.add_argument("--poll_seconds", type=float,
                      default=DEFAULT_POLL_SECONDS,
                      help="How often to look for new versions.")
  parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                      help="Requests handled concurrently.")
  # Off unless asked for: a server is long-running, so the store saves only
  # its warm-ups' optimising, and first calls through it take turns on one
  # process-wide lock (runtime.graph_cache).
  parser.add_argument(
      "--graph_cache", metavar="DIR|off",
      default=os.environ.get(graph_cache_lib.CACHE_ENV) or graph_cache_lib.OFF,
      help="Store of the graphs TensorFlow optimised for each version on "
           "this machine: a version's warm-up reads them instead of "
           "optimising again (same bytes) and writes them when missing. "
           f"Default ${graph_cache_lib.CACHE_ENV} when set, else off. While "
           f"a warm-up runs it sets ${graph_cache_lib.TF_CACHE_ENV} in this "
           "process, which is how TensorFlow is told where to read and "
           "write.")
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
          stop_event=stop_event,
          graph_cache=graph_cache_lib.from_setting(args.graph_cache))
  except OSError as e:
    print(f"dcae-tf-server: error: {e}", file=sys.stderr)
    return 1
  return 0


def run_main():
  app.run(main, flags_parser=parse_args)


if __name__ == "__main__":
  run_main()
