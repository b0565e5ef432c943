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
import socket
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

# pylint: disable=wrong-import-position
import numpy as np
from tqdm import tqdm

from dcae_tf import export
from dcae_tf.serving import client as client_lib
from dcae_tf.serving import process
# pylint: enable=wrong-import-position

PRESETS = ("tiny", "small")
OPERATIONS = ("compress", "decompress")
MODES = ("served", "in-process")
HOST = "127.0.0.1"
DEFAULT_CONCURRENCY = "1,4,8"
DEFAULT_REQUESTS = 5
# Untimed requests per mode and operation before measuring: the first calls
# of a loaded concrete function and of a fresh gRPC channel cost extra.
DEFAULT_WARMUP = 2
DEFAULT_SIZE = 256
SEED = 2026
# Loading a SavedModel in a fresh process on a busy 2-core machine: generous.
START_TIMEOUT_SECONDS = 300
# SIGTERM lets in-flight requests finish (the server allows 5 s), then kill.
STOP_TIMEOUT_SECONDS = 30
# Per request; a `small` 1024x1024 request on a loaded machine fits easily.
REQUEST_TIMEOUT_SECONDS = 300
# The test image: a smooth gradient plus low-frequency structure (coarse
# random grid, bilinearly upsampled) plus a little pixel noise, so the codec
# sees something photo-like rather than white noise (whose bitstream and
# coding time would be unrepresentative).
BASE_LEVEL = 40.0
GRADIENT_RANGE = 153.0
COARSE_CELLS = 8
COARSE_AMPLITUDE = 80.0
PIXEL_NOISE = 6.0
PIXEL_MAX = 255
MS_PER_SECOND = 1e3
PERCENTILES = (50, 99)
BITS_PER_BYTE = 8


# --- the workload -------------------------------------------------------------

def make_image(height, width, seed=SEED):
  """A deterministic, smooth-ish uint8 RGB image (see the constants above)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  gradient = np.stack([yy / max(height - 1, 1), xx / max(width - 1, 1),
                       (yy + xx) / max(height + width - 2, 1)], axis=-1)
  coarse = rng.normal(size=(COARSE_CELLS + 1, COARSE_CELLS + 1, 3))
  # Bilinear upsampling of the coarse grid to the image size.
  gy = yy / max(height - 1, 1) * COARSE_CELLS
  gx = xx / max(width - 1, 1) * COARSE_CELLS
  y0 = np.minimum(gy.astype(int), COARSE_CELLS - 1)
  x0 = np.minimum(gx.astype(int), COARSE_CELLS - 1)
  fy, fx = (gy - y0)[..., None], (gx - x0)[..., None]
  smooth = ((1 - fy) * (1 - fx) * coarse[y0, x0]
            + (1 - fy) * fx * coarse[y0, x0 + 1]
            + fy * (1 - fx) * coarse[y0 + 1, x0]
            + fy * fx * coarse[y0 + 1, x0 + 1])
  image = (BASE_LEVEL + GRADIENT_RANGE * gradient + COARSE_AMPLITUDE * smooth
           + PIXEL_NOISE * rng.normal(size=(height, width, 3)))
  return np.clip(np.round(image), 0, PIXEL_MAX).astype(np.uint8)


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


def percentiles_ms(latencies):
  """{"p50": ms, "p99": ms} of a list of seconds (linear interpolation)."""
  values = np.percentile(np.asarray(latencies) * MS_PER_SECOND, PERCENTILES)
  return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values)}


class _Recorder:
  """Latencies and errors of one batch, shared by its threads."""

  def __init__(self, progress):
    self.latencies, self.errors = [], []
    self._lock = threading.Lock()
    self._progress = progress

  def timed(self, call, requests):
    """Runs `call` `requests` times, recording each latency; stops on error."""
    for _ in range(requests):
      start = time.perf_counter()
      try:
        call()
      except Exception as e:  # pylint: disable=broad-except
        with self._lock:
          self.errors.append(e)
        return
      elapsed = time.perf_counter() - start
      with self._lock:
        self.latencies.append(elapsed)
        self._progress.update(1)


def run_batch(make_worker_call, clients, requests, label):
  """Runs `requests` calls in each of `clients` threads, released together.

  Args:
    make_worker_call: called once per thread (before the clock starts) to
      get that thread's zero-argument request function, so per-thread
      setup such as opening a gRPC channel is not timed.
    clients, requests: threads, and requests per thread.
    label: progress bar description.

  Returns:
    {"requests", "seconds", "requests_per_s", "p50", "p99"} (latencies in
    ms).

  Raises:
    The first exception any thread raised (after all threads finished).
  """
  calls = [make_worker_call() for _ in range(clients)]
  barrier = threading.Barrier(clients + 1)
  with tqdm(total=clients * requests, desc=label, unit="req", file=sys.stderr,
            leave=False, dynamic_ncols=True) as progress:
    recorder = _Recorder(progress)

    def work(call):
      barrier.wait()
      recorder.timed(call, requests)

    # Daemon threads: a Ctrl-C in the main thread must not wait for them.
    threads = [threading.Thread(target=work, args=(call,), daemon=True)
               for call in calls]
    for thread in threads:
      thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
      thread.join()
    seconds = time.perf_counter() - start
  if recorder.errors:
    raise recorder.errors[0]
  latencies = recorder.latencies
  return {"requests": len(latencies), "seconds": seconds,
          "requests_per_s": len(latencies) / seconds,
          **percentiles_ms(latencies)}


# --- the server ----------------------------------------------------------------

def free_port(host=HOST):
  """A port nobody listens on right now (the OS picks it)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    sock.bind((host, 0))
    return sock.getsockname()[1]


# --- the measurements ------------------------------------------------------------

def served_calls(port, model_name, image, bitstream):
  """Per operation: a factory of per-thread calls, each with its own client."""
  opened = []

  def factory(operation):
    def make():
      client = client_lib.ServingClient(HOST, port, model_name,
                                        timeout=REQUEST_TIMEOUT_SECONDS)
      opened.append(client)
      if operation == "compress":
        return lambda: client.compress(image)
      return lambda: client.decompress(bitstream)
    return make

  return factory, opened


def in_process_calls(codec, image, bitstream):
  """Per operation: a factory of per-thread calls on the one shared codec.

  One codec for all threads, like the server's one loaded version: a copy
  per thread would measure N models competing for the cores instead.
  """
  def factory(operation):
    def make():
      if operation == "compress":
        return lambda: codec.compress(image)
      return lambda: codec.decompress(bitstream)
    return make

  return factory


def warm_up(call_factories, repeats):
  """`repeats` untimed requests per mode and operation (first-call costs)."""
  for factory in call_factories.values():
    for operation in OPERATIONS:
      call = factory(operation)()
      for _ in range(repeats):
        call()


def measure(call_factories, concurrency, requests):
  """Results per (clients, operation, mode), served and in-process alternated."""
  results = []
  for clients in concurrency:
    for operation in OPERATIONS:
      for mode in MODES:
        label = f"{operation} {mode} x{clients}"
        stats = run_batch(call_factories[mode](operation), clients, requests,
                          label)
        results.append({"clients": clients, "operation": operation,
                        "mode": mode, **stats})
        print(f"  {label}: {stats['requests_per_s']:.2f} req/s, "
              f"p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms",
              file=sys.stderr, flush=True)
  return results


def ratio_rows(results):
  """Served / in-process ratios per (clients, operation)."""
  by_key = {(r["clients"], r["operation"], r["mode"]): r for r in results}
  rows = []
  for (clients, operation, mode), served in by_key.items():
    if mode != "served":
      continue
    local = by_key[(clients, operation, "in-process")]
    rows.append({
        "clients": clients, "operation": operation,
        "served": {k: served[k] for k in ("requests_per_s", "p50", "p99")},
        "in_process": {k: local[k] for k in ("requests_per_s", "p50", "p99")},
        "throughput_ratio": served["requests_per_s"] / local["requests_per_s"],
        "p50_ratio": served["p50"] / local["p50"],
        "p99_ratio": served["p99"] / local["p99"],
    })
  rows.sort(key=lambda r: (OPERATIONS.index(r["operation"]), r["clients"]))
  return rows


def format_table(rows):
  """Markdown table: served and in-process numbers with their ratios."""
  lines = [
      "| operation | clients | served req/s | in-process req/s | ratio "
      "| served p50 ms | in-process p50 ms | ratio | served p99 ms "
      "| in-process p99 ms | ratio |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    s, p = r["served"], r["in_process"]
    lines.append(
        f"| {r['operation']} | {r['clients']} | {s['requests_per_s']:.2f} "
        f"| {p['requests_per_s']:.2f} | {r['throughput_ratio']:.2f} "
        f"| {s['p50']:.0f} | {p['p50']:.0f} | {r['p50_ratio']:.2f} "
        f"| {s['p99']:.0f} | {p['p99']:.0f} | {r['p99_ratio']:.2f} |")
  return "\n".join(lines)


def machine_description():
  """Cores, CPU model and load: the numbers mean little without them."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {"cores": os.cpu_count(), "cpu": cpu,
          "python": platform.python_version(),
          "load_average_1m_start": load_average()}


def load_average():
  """1-minute load average (None where the OS does not tell)."""
  return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


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
  image = make_image(args.height, args.width)
  bitstream = codec.compress(image)
  machine = machine_description()
  threads = args.server_threads or max(args.concurrency)
  port = free_port()
  print(f"starting the server on {HOST}:{port} ...", file=sys.stderr,
        flush=True)
  server = process.ServerProcess(
      ["--model_base_path", base, "--model_name", model_name,
       "--host", HOST, "--port", str(port), "--threads", str(threads)],
      os.path.join(workdir, "server.log"),
      env=process.repo_env(REPO_ROOT),
      start_timeout=START_TIMEOUT_SECONDS, stop_timeout=STOP_TIMEOUT_SECONDS)
  with server:
    factory, opened = served_calls(port, model_name, image, bitstream)
    try:
      check = client_lib.ServingClient(HOST, port, model_name,
                                       timeout=REQUEST_TIMEOUT_SECONDS)
      with check:
        identical = check.compress(image) == bitstream
      factories = {"served": factory,
                   "in-process": in_process_calls(codec, image, bitstream)}
      warm_up(factories, args.warmup)
      results = measure(factories, args.concurrency, args.requests)
    finally:
      for client in opened:
        client.close()
  return {
      "date": datetime.date.today().isoformat(),
      "machine": {**machine, "load_average_1m_end": load_average()},
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
      "rows": ratio_rows(results),
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
  print(format_table(summary["rows"]))


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
