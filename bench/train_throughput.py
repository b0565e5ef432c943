"""Training throughput (images/s) of DCAE through the project's own train step.

  python bench/train_throughput.py [--presets small,paper] [--crop_size 256]
      [--batch_size small=8,paper=2] [--steps 5] [--warmup 2]
      [--precisions float32,mixed_bfloat16] [--mirrored_devices 2]
      [--metric mse] [--output results.json]

For every preset and precision (`bin/train.py --precision`) two
configurations run at the same global batch:

  default   1 device                what `bin/train.py --strategy default` uses
  mirrored  N logical CPU devices   what `--strategy mirrored` uses on a
                                    machine without GPUs (MirroredStrategy)

and the table shows their images/s, seconds/step and the ratios
mirrored / 1 device and precision / float32, measured in the same run (so
machine load affects all of them). Whether bfloat16 pays depends on the
CPU: the table's header names the CPU's bfloat16 / AVX-512 features.

Why the measurement goes through `dcae_tf.training.Trainer`: a benchmark of
a re-implemented step would measure something the trainer does not run. Each
configuration builds a real Trainer from a TrainConfig on synthetic PNG files,
takes its train step from `Trainer.prepare()` (what `Trainer.train()` runs
before its loop) and calls it exactly as the loop does: the file pipeline,
`strategy.run`, the all-reduce, clipping and Adam are all in the timing, and
`float(loss)` is the synchronisation point. Checkpoints, summaries and
validation (the loop's hooks) are left out: they are periodic costs, not
throughput. The measuring side is `train_throughput_child.py`.

Why each configuration runs in its own subprocess (the script re-invokes
itself with the hidden `--_child` flag and reads a JSON result back): logical
CPU devices can only be configured before TensorFlow initialises, and a fresh
process keeps one run's memory (peak RSS is reported) and thread pools out of
the next one.

Logical CPU devices share the same physical cores and TensorFlow thread
pools, so on a CPU "mirrored over 2 devices" measures the overhead (or gain)
of splitting the batch into two replicas plus the all-reduce, not extra
hardware.
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
if BENCH not in sys.path:
  sys.path.insert(0, BENCH)

# pylint: disable=wrong-import-position
import machine
import train_throughput_child as child
from train_throughput_child import log
# pylint: enable=wrong-import-position

KNOWN_PRESETS = ("tiny", "small", "paper")
# bin/train.py --precision values (dcae_tf.model.PRECISIONS, checked against
# it by the tests: this script must not import TensorFlow in the parent).
KNOWN_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
BASELINE_PRECISION = "float32"
# The official recipe's batch is 8; the paper preset gets a smaller default so
# that a CPU run finishes in minutes and fits in memory.
DEFAULT_BATCH_SIZES = {"tiny": 8, "small": 8, "paper": 2}
DEFAULT_CROP_SIZE = 256
DEFAULT_STEPS = 5
# The first step traces the tf.function (minutes for `paper`); the next may
# still allocate. Neither is throughput.
DEFAULT_WARMUP = 2
DEFAULT_MIRRORED_DEVICES = 2
# Per configuration: tracing `paper` over 2 replicas on a busy CPU is slow.
DEFAULT_TIMEOUT_SECONDS = 3600
# Lines of a failed child's output kept for the error report.
ERROR_TAIL_LINES = 15
# Start-up noise of the TF 2.14 CPU wheel (logged at error level, harmless),
# not echoed as progress.
NOISE_MARKERS = ("Unable to register cu", "TF-TRT Warning")


# --- arguments ------------------------------------------------------------------

def _parse_names(text, known, what):
  """Comma-separated names from `known`, checked before any subprocess."""
  names = [p.strip() for p in text.split(",") if p.strip()]
  unknown = sorted(set(names) - set(known))
  if not names or unknown:
    raise argparse.ArgumentTypeError(
        f"{what} must be a comma-separated subset of {known}"
        f"{'; unknown: ' + ', '.join(unknown) if unknown else ''}")
  return names


def parse_presets(text):
  return _parse_names(text, KNOWN_PRESETS, "presets")


def parse_precisions(text):
  return _parse_names(text, KNOWN_PRECISIONS, "precisions")


def parse_batch_sizes(text):
  """'8' (every preset) or 'small=8,paper=2' (per preset, others default).

  Per-preset values exist because one global batch cannot suit both a 4 M and
  a 119 M parameter model on a CPU.
  """
  sizes = dict(DEFAULT_BATCH_SIZES)
  if text is None:
    return sizes
  try:
    if "=" not in text:
      sizes = {preset: int(text) for preset in sizes}
    else:
      for item in text.split(","):
        preset, value = item.split("=")
        if preset.strip() not in sizes:
          raise ValueError(f"unknown preset {preset!r}")
        sizes[preset.strip()] = int(value)
  except ValueError as e:
    raise argparse.ArgumentTypeError(
        f"batch size must be N or PRESET=N,...: {e}") from e
  if min(sizes.values()) < 1:
    raise argparse.ArgumentTypeError(f"batch sizes must be >= 1: {sizes}")
  return sizes


def positive_int(text):
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
  return value


def build_parser():
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n", maxsplit=1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--presets", type=parse_presets,
                      default=["small", "paper"],
                      help="comma-separated presets (default: small,paper)")
  parser.add_argument("--crop_size", type=positive_int,
                      default=DEFAULT_CROP_SIZE,
                      help="training crop side (default: %(default)s)")
  parser.add_argument("--batch_size", type=parse_batch_sizes,
                      default=parse_batch_sizes(None),
                      help="global batch: N for every preset, or "
                      "PRESET=N,... (default: small=8, paper=2)")
  parser.add_argument("--precisions", type=parse_precisions,
                      default=[BASELINE_PRECISION],
                      help="comma-separated training precisions "
                      f"{KNOWN_PRECISIONS} (default: {BASELINE_PRECISION})")
  parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS,
                      help="timed steps (default: %(default)s)")
  parser.add_argument("--warmup", type=positive_int, default=DEFAULT_WARMUP,
                      help="untimed steps first; the first one traces "
                      "(default: %(default)s)")
  parser.add_argument("--mirrored_devices", type=int,
                      default=DEFAULT_MIRRORED_DEVICES,
                      help="logical CPU devices of the mirrored run; 0 or 1 "
                      "skips it (default: %(default)s)")
  parser.add_argument("--metric", choices=("mse", "ms-ssim"), default="mse",
                      help="distortion term of the loss (default: mse)")
  parser.add_argument("--timeout", type=positive_int,
                      default=DEFAULT_TIMEOUT_SECONDS,
                      help="seconds per configuration (default: "
                      "%(default)s)")
  parser.add_argument("--output", help="also write the results as JSON")
  parser.add_argument("--_child", help=argparse.SUPPRESS)
  return parser


# --- parent: orchestration ------------------------------------------------------

def plan(args):
  """The (preset, strategy, devices, batch) jobs, validated before running."""
  jobs = []
  configs = [("default", 1)]
  if args.mirrored_devices > 1:
    configs.append(("mirrored", args.mirrored_devices))
  for preset in args.presets:
    batch = args.batch_size[preset]
    for precision in args.precisions:
      for strategy, devices in configs:
        if batch % devices:
          raise SystemExit(f"error: {preset} batch {batch} is not divisible "
                           f"by {devices} devices")
        jobs.append(dict(preset=preset, precision=precision,
                         strategy=strategy, devices=devices,
                         batch_size=batch, crop_size=args.crop_size,
                         steps=args.steps, warmup=args.warmup,
                         metric=args.metric))
  return jobs


def child_env():
  """CPU only, quiet TF, no inherited cluster, the repository importable."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  env.pop("TF_CONFIG", None)
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
  return env


def run_job(job, timeout):
  """Runs one job in a subprocess, streaming its progress; returns its result.

  A failure (out of memory, timeout, error) becomes a result with an `error`
  field, so that the other configurations still get measured. The parent
  owns the child's work directory (images, model directory, result), so it
  is removed even when the child is killed.
  """
  workdir = tempfile.mkdtemp(prefix="dcae_throughput_")
  cmd = [sys.executable, os.path.abspath(__file__),
         "--_child", json.dumps(dict(job, workdir=workdir))]
  tail = collections.deque(maxlen=ERROR_TAIL_LINES)
  begin = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          env=child_env(), cwd=REPO)
  timer = threading.Timer(timeout, proc.kill)
  timer.start()
  try:
    for line in proc.stdout:
      line = line.rstrip()
      tail.append(line)
      if not any(marker in line for marker in NOISE_MARKERS):
        print(line, file=sys.stderr, flush=True)
    proc.wait()
  finally:
    timer.cancel()
    if proc.poll() is None:
      proc.kill()
  wall = time.perf_counter() - begin
  try:
    if proc.returncode == 0:
      with open(os.path.join(workdir, child.RESULT_FILE),
                encoding=child.RESULT_FILE_ENCODING) as f:
        result = dict(json.load(f), wall_seconds=wall)
        result.pop("workdir", None)
        return result
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  reason = (f"timed out after {timeout} s" if wall >= timeout
            else f"exit code {proc.returncode}")
  return dict(job, error=reason, error_tail=list(tail), wall_seconds=wall)


def add_ratios(results):
  """images/s of each configuration over that of the 1-device run of the
  same preset and precision, and over that of the float32 run of the same
  preset and strategy."""
  ok = [r for r in results if "error" not in r]
  one_device = {(r["preset"], r["precision"]): r["images_per_second"]
                for r in ok if r["devices"] == 1}
  float32 = {(r["preset"], r["strategy"]): r["images_per_second"]
             for r in ok if r["precision"] == BASELINE_PRECISION}
  for r in ok:
    base = one_device.get((r["preset"], r["precision"]))
    if base:
      r["ratio_vs_1_device"] = r["images_per_second"] / base
    base = float32.get((r["preset"], r["strategy"]))
    if base:
      r["ratio_vs_float32"] = r["images_per_second"] / base
  return results


def format_table(results):
  """Markdown table (pasteable into docs/training.md)."""
  header = ("| preset | precision | strategy | devices | global batch | "
            "images/s | s/step | first step (trace) s | peak RSS MiB | "
            "images/s vs 1 device | images/s vs float32 |")
  lines = [header, "|" + "---|" * header.count(" |")]
  for r in results:
    cells = [r["preset"], r["precision"], r["strategy"], str(r["devices"]),
             str(r["batch_size"])]
    if "error" in r:
      cells += [f"failed: {r['error']}", "", "", "", "", ""]
    else:
      rss = r.get("peak_rss_mib")
      ratios = [r.get("ratio_vs_1_device"), r.get("ratio_vs_float32")]
      cells += [f"{r['images_per_second']:.3g}",
                f"{r['seconds_per_step']:.3g}",
                f"{r['trace_seconds']:.0f}",
                f"{rss:.0f}" if rss else "?"]
      cells += [f"{ratio:.2f}x" if ratio else "" for ratio in ratios]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  args = build_parser().parse_args(argv)
  if args._child:  # pylint: disable=protected-access
    child.child_main(args._child)  # pylint: disable=protected-access
    return
  jobs = plan(args)
  info = machine.machine_info()
  log(f"{len(jobs)} configuration(s), crop {args.crop_size}, "
      f"{args.warmup} warm-up + {args.steps} timed steps each; "
      f"{info['cpu_count']} CPUs ({', '.join(info['cpu_features'])}), "
      f"load average {info['load_average']}")
  results = []
  for i, job in enumerate(jobs, 1):
    log(f"[{i}/{len(jobs)}] {job['preset']} {job['precision']} "
        f"{job['strategy']} on "
        f"{job['devices']} device(s), global batch {job['batch_size']}")
    results.append(run_job(job, args.timeout))
    r = results[-1]
    log(f"[{i}/{len(jobs)}] " + (
        f"failed: {r['error']}" if "error" in r else
        f"{r['images_per_second']:.3g} images/s "
        f"({r['seconds_per_step']:.3g} s/step), "
        f"{r['wall_seconds']:.0f} s in all"))
  add_ratios(results)
  print(format_table(results))
  if args.output:
    with open(args.output, "w", encoding=child.RESULT_FILE_ENCODING) as f:
      json.dump(dict(machine=info, args=dict(
          presets=args.presets, precisions=args.precisions,
          crop_size=args.crop_size,
          steps=args.steps, warmup=args.warmup, metric=args.metric,
          mirrored_devices=args.mirrored_devices), results=results),
                f, indent=2)
    log(f"wrote {args.output}")
  if any("error" in r for r in results):
    sys.exit(1)


if __name__ == "__main__":
  main()
