"""One configuration of bench/train_throughput.py, in its own process.

The parent runs `train_throughput.py --_child JOB_JSON`; this module does
the measuring: it builds a real `Trainer` on synthetic PNG files, takes its
train step from `Trainer.prepare()` (what `Trainer.train()` runs before its
loop), calls it as the loop does and writes the result as JSON into the
job's work directory.
"""
import json
import math
import os
import statistics
import sys
import time

# A mid-range official lambda; the value does not change the cost of a step.
LMBDA = 0.0067
SEED = 2026
# Synthetic training set: this many files, a little larger than the crop so
# that random crops differ. Decoding them is negligible next to a step.
SYNTHETIC_IMAGES = 16
SYNTHETIC_MARGIN = 32
PIXEL_LEVELS = 256
RESULT_FILE = "result.json"
RESULT_FILE_ENCODING = "utf-8"


def log(message):
  """Progress on stderr, flushed: the parent streams it line by line."""
  print(message, file=sys.stderr, flush=True)


def peak_rss_mib():
  """Peak resident set size of this process, in MiB (bench/latency.py's)."""
  from latency import peak_rss_mib as latency_peak_rss_mib  # pylint: disable=import-outside-toplevel
  return latency_peak_rss_mib()


def write_synthetic_images(directory, crop_size, count=SYNTHETIC_IMAGES,
                           seed=SEED):
  """Random PNGs for the real file pipeline; returns their glob.

  Files (rather than an in-memory dataset) so that the timed step includes
  the same tf.data pipeline as a real run; the content does not change the
  cost of a step.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  side = crop_size + SYNTHETIC_MARGIN
  os.makedirs(directory, exist_ok=True)
  for i in range(count):
    pixels = rng.integers(0, PIXEL_LEVELS, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(directory, f"img{i:03d}.png"))
  return os.path.join(directory, "*.png")


def configure_logical_cpus(devices):
  """Splits the CPU into `devices` logical devices; must precede TF init
  (so before dcae_tf is imported)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if devices > 1:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * devices)


def build_train_step(job, workdir):
  """(trainer, train_step) of a real Trainer, as Trainer.train() makes them."""
  from dcae_tf import training  # pylint: disable=import-outside-toplevel
  cfg = training.TrainConfig(
      model_path=os.path.join(workdir, "model"), lmbda=LMBDA,
      metric=job["metric"], preset=job["preset"],
      train_glob=write_synthetic_images(os.path.join(workdir, "images"),
                                        job["crop_size"]),
      batch_size=job["batch_size"], crop_size=job["crop_size"],
      steps=job["warmup"] + job["steps"], strategy=job["strategy"],
      precision=job["precision"], seed=SEED, verbose=False)
  trainer = training.Trainer(cfg)
  _, train_step = trainer.prepare()
  return trainer, train_step


def time_steps(trainer, train_step, warmup, steps, label):
  """Seconds of each warm-up and timed step, synchronised as the loop does
  (`float(loss)` waits for the step)."""
  total = warmup + steps
  seconds = []
  for i in range(total):
    start = time.perf_counter()
    out = train_step(trainer.train_iterator)
    loss = float(out["loss"])  # Blocks until the step is done.
    seconds.append(time.perf_counter() - start)
    if not math.isfinite(loss):
      raise FloatingPointError(f"loss {loss} at step {i + 1}")
    kind = "warm-up" if i < warmup else "timed"
    log(f"  {label}: step {i + 1}/{total} ({kind}) {seconds[-1]:.2f} s, "
        f"loss {loss:.4g}")
  return seconds[:warmup], seconds[warmup:]


def run_child(job):
  """Measures one configuration; returns a JSON-serialisable dict."""
  configure_logical_cpus(job["devices"])
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  label = (f"{job['preset']}/{job['precision']}/{job['strategy']}"
           f"x{job['devices']}")
  begin = time.perf_counter()
  trainer, train_step = build_train_step(job, job["workdir"])
  setup = time.perf_counter() - begin
  log(f"  {label}: {trainer.num_replicas} replica(s) on "
      f"{len(tf.config.list_logical_devices('CPU'))} logical CPU(s), "
      f"set up in {setup:.1f} s; first step traces the train step")
  warm, timed = time_steps(trainer, train_step, job["warmup"], job["steps"],
                           label)
  mean = statistics.fmean(timed)
  return dict(job, replicas=trainer.num_replicas, setup_seconds=setup,
              trace_seconds=warm[0], warmup_seconds=warm,
              step_seconds=timed, seconds_per_step=mean,
              median_seconds_per_step=statistics.median(timed),
              images_per_second=job["batch_size"] / mean,
              peak_rss_mib=peak_rss_mib(), tensorflow=tf.__version__)


def child_main(job_json):
  job = json.loads(job_json)
  result = run_child(job)
  with open(os.path.join(job["workdir"], RESULT_FILE), "w",
            encoding=RESULT_FILE_ENCODING) as f:
    json.dump(result, f)
