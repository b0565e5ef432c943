"""The workload of bench/serving.py: requests, threads, timings, the table.

A batch of C threads, each with its own zero-argument request function,
released together by a barrier; throughput is requests / wall time of the
whole batch and latency percentiles are over every request. The same
workload runs against the served model (a `ServingClient` per thread) and
in-process (one shared `ExportedCodec`, which is what the server runs
requests on).
"""
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

from dcae_tf.runtime import client as client_lib

OPERATIONS = ("compress", "decompress")
MODES = ("served", "in-process")
HOST = "127.0.0.1"
SEED = 2026
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
