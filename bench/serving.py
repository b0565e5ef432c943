"""What serving over gRPC costs: served vs in-process compress / decompress.

  python bench/serving.py [--preset tiny|small | --model_base_path saved_models/NAME]
      [--concurrency 1,4,8] [--requests 5] [--height 256 --width 256]
      [--output results.json]

Exports a random-weight model (the timing does not depend on the weight
values) into a temporary directory, or uses an existing export, starts the
project's gRPC server on it (`python -m dcae_tf.serving.server`) as a
subprocess on a free loopback port, and runs the same workload twice at each
concurrency level:

  served:     C threads, each with its own `ServingClient` (its own gRPC
              channel), each sending `--requests` requests;
  in-process: C threads sharing one loaded export (`ExportedCodec`), which
              is what the server itself runs requests on, so the difference
              is the price of gRPC, protos and the second process.

Served and in-process runs alternate per (concurrency, operation), so a
change in background load (e.g. a training job on the same machine) hits
both sides alike. Throughput is requests / wall time of the whole batch
(all threads released together by a barrier); latency percentiles are over
every single request of the batch. With few requests p99 is close to the
maximum: give more `--requests` for a stable tail.

The server is always stopped with SIGTERM (then killed after a grace
period), also on errors, Ctrl-C or a SIGTERM sent to this script; it runs in
its own session so a terminal's Ctrl-C reaches only this script.
"""
import argparse
import datetime
import json
import os
import platform
import signal
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH)
for _path in (REPO_ROOT, BENCH):
  if _path not in sys.path:
    sys.path.insert(0, _path)

# pylint: disable=wrong-import-position
from dcae_tf import export
from dcae_tf.runtime import client as client_lib
from dcae_tf.serving import process
import machine
import serving_workload as workload
from serving_workload import HOST
# pylint: enable=wrong-import-position

PRESETS = ("tiny", "small")
DEFAULT_CONCURRENCY = "1,4,8"
DEFAULT_REQUESTS = 5
# Untimed requests per mode and operation before measuring: the first calls
# of a loaded concrete function and of a fresh gRPC channel cost extra.
DEFAULT_WARMUP = 2
DEFAULT_SIZE = 256
# Loading a SavedModel in a fresh process on a busy 2-core machine: generous.
START_TIMEOUT_SECONDS = 300
# SIGTERM lets in-flight requests finish (the server allows 5 s), then kill.
STOP_TIMEOUT_SECONDS = 30
BITS_PER_BYTE = 8
# Port 0: the server binds a free port and prints it.
ANY_PORT = 0


# --- the model ---------------------------------------------------------------

def export_random_model(preset, directory):
  """Exports a random-weight `preset` codec; returns its model base path."""
  # pylint: disable=import-outside-toplevel
  from dcae_tf.codec import DCAECodec
  from dcae_tf.model import DCAE
  name = f"bench-{preset}"
  codec = DCAECodec(DCAE(preset).build_weights(), name=f"{name}-random")
  base = os.path.join(directory, "saved_models", name)
  export.save_versioned(codec, base)
  return base


def machine_description():
  """Cores, CPU model and load: the numbers mean little without them."""
  return {"cores": os.cpu_count(), "cpu": machine.cpu_model(),
          "python": platform.python_version(),
          "load_average_1m_start": machine.load_average_1m()}


# --- the driver --------------------------------------------------------------------

def parse_concurrency(text):
  """ "1,4,8" -> [1, 4, 8] (positive integers, in the given order)."""
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    values = []
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(
        f"must be comma-separated positive integers, got {text!r}")
  return values


def parse_args(argv):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  source = parser.add_mutually_exclusive_group()
  source.add_argument("--preset", choices=PRESETS, default="tiny",
                      help="architecture of the random-weight model exported "
                           "into a temporary directory.")
  source.add_argument("--model_base_path",
                      help="an existing export (saved_models/NAME) to serve "
                           "instead; its newest version is used.")
  parser.add_argument("--concurrency", type=parse_concurrency,
                      default=DEFAULT_CONCURRENCY,
                      help="client thread counts to measure.")
  parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS,
                      help="requests per client thread and measurement.")
  parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                      help="untimed requests per mode and operation first.")
  parser.add_argument("--height", type=int, default=DEFAULT_SIZE)
  parser.add_argument("--width", type=int, default=DEFAULT_SIZE)
  parser.add_argument("--server_threads", type=int, default=None,
                      help="server's --threads (default: the largest "
                           "concurrency, so no request queues in gRPC).")
  parser.add_argument("--output", help="also write the results as JSON.")
  args = parser.parse_args(argv)
  for name in ("requests", "height", "width"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1")
  if args.warmup < 0:
    parser.error("--warmup must be >= 0")
  if args.server_threads is not None and args.server_threads < 1:
    parser.error("--server_threads must be >= 1")
  if args.model_base_path and not os.path.isdir(args.model_base_path):
    parser.error(f"--model_base_path {args.model_base_path} is not a "
                 f"directory")
  return args


def _raise_system_exit(signum, _frame):
  """SIGTERM -> SystemExit, so `with`/`finally` blocks stop the server."""
  raise SystemExit(128 + signum)


def run(args, workdir):
  """Export (if needed), serve, measure; returns the JSON-able results."""
  if args.model_base_path:
    base = os.path.abspath(args.model_base_path)
  else:
    print(f"exporting a random-weight {args.preset} model ...",
          file=sys.stderr, flush=True)
    base = export_random_model(args.preset, workdir)
  model_name = os.path.basename(os.path.normpath(base))
  codec = export.ExportedCodec(base)
  image = workload.make_image(args.height, args.width)
  bitstream = codec.compress(image)
  machine_info = machine_description()
  threads = args.server_threads or max(args.concurrency)
  print(f"starting the server on {HOST} ...", file=sys.stderr, flush=True)
  server = process.ServerProcess(
      ["--model_base_path", base, "--model_name", model_name,
       "--host", HOST, "--port", str(ANY_PORT), "--threads", str(threads)],
      os.path.join(workdir, "server.log"),
      env=process.repo_env(REPO_ROOT),
      start_timeout=START_TIMEOUT_SECONDS, stop_timeout=STOP_TIMEOUT_SECONDS)
  with server:
    factory, opened = workload.served_calls(server.port, model_name, image,
                                            bitstream)
    try:
      check = client_lib.ServingClient(
          HOST, server.port, model_name,
          timeout=workload.REQUEST_TIMEOUT_SECONDS)
      with check:
        identical = check.compress(image) == bitstream
      factories = {"served": factory,
                   "in-process": workload.in_process_calls(codec, image,
                                                           bitstream)}
      workload.warm_up(factories, args.warmup)
      results = workload.measure(factories, args.concurrency, args.requests)
    finally:
      for client in opened:
        client.close()
  return {
      "date": datetime.date.today().isoformat(),
      "machine": {**machine_info,
                  "load_average_1m_end": machine.load_average_1m()},
      "model_base_path": None if not args.model_base_path else base,
      "preset": codec.metadata.get("preset"),
      "model": codec.metadata.get("name"),
      "version": codec.version,
      "height": args.height, "width": args.width,
      "bitstream_bytes": len(bitstream),
      "bpp": BITS_PER_BYTE * len(bitstream) / (args.height * args.width),
      "served_bitstream_identical": identical,
      "requests_per_client": args.requests,
      "warmup_requests": args.warmup,
      "server_threads": threads,
      "server_exit_code": server.exit_code,
      "server_stopped_cleanly": server.stopped_cleanly,
      "measurements": results,
      "rows": workload.ratio_rows(results),
  }


def report(summary):
  """Prints the context and the table."""
  m = summary["machine"]
  print(f"{summary['date']}: {m['cores']} cores ({m['cpu']}), 1-min load "
        f"{m['load_average_1m_start']} -> {m['load_average_1m_end']}; "
        f"model {summary['model']} "
        f"(preset {summary['preset']}), {summary['height']}x"
        f"{summary['width']} image -> {summary['bitstream_bytes']} bytes "
        f"({summary['bpp']:.3f} bpp); {summary['requests_per_client']} "
        f"requests per client; server --threads {summary['server_threads']}")
  print(f"served bitstream identical to in-process: "
        f"{summary['served_bitstream_identical']}; server stopped by SIGTERM "
        f"with exit code {summary['server_exit_code']} (clean: "
        f"{summary['server_stopped_cleanly']})")
  print("ratio = served / in-process (throughput: < 1 is slower served; "
        "latency: > 1 is slower served)")
  print(workload.format_table(summary["rows"]))


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  signal.signal(signal.SIGTERM, _raise_system_exit)
  try:
    with tempfile.TemporaryDirectory(prefix="dcae-bench-serving-") as workdir:
      summary = run(args, workdir)
  except KeyboardInterrupt:
    print("interrupted (server stopped)", file=sys.stderr)
    return 130
  except (RuntimeError, OSError, ValueError,
          client_lib.ServingError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  report(summary)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
