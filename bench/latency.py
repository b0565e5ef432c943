"""Latency, peak memory and FLOP efficiency of DCAE encode / decode on CPU.

  python bench/latency.py [--preset paper] [--height 512 --width 768]
      [--modes function,eager,xla] [--weight_dtypes float32,float16]
      [--codecs model,export] [--transform_dtypes float32,bfloat16]
      [--numerics exact,float]
      [--repeats 2] [--output latency.json]

Builds a DCAE with random weights (the timing does not depend on the values)
and measures two things, each in fresh subprocesses:

The codec, as a user runs it (`codec` processes, one per codec source,
direction and weight storage dtype), from two sources:
  model:  a process that builds the model and runs `DCAECodec.compress`
          (or `decompress` of the bitstream the encode process wrote) and
          nothing else, as a Python program using the library does, its
          first call preceded by `DCAECodec.warm_up`;
  export: a process that loads an export of that model
          (`dcae_tf.export.ExportedCodec`, what the `dcae-tf` command line
          and bin/evaluate.py load) and compresses or decompresses, its
          first call preceded by the export's warm-up requests; the export
          is written by a separate process first.
Best wall time of the calls after the first is put next to the roofline
time of the codec's FLOPs (counted below); the first call (graph
optimisation included) and, for exports, the load time are reported too.
The peak resident set size (VmHWM of /proc/self/status, the whole process:
Python, TensorFlow, the weights and the peak of the computation) is what
a compress / decompress command needs. float16 is how the shipped models
store their weights (`dcae_tf.codec.weights`). `--transform_dtypes` adds codec
processes whose g_a and g_s compute in bfloat16 (`DCAECodec(transform_dtype=)`,
`bin/export.py --transform_dtype`; everything else stays float32), for
every weight storage dtype; its speed-up depends on the CPU's AVX512_BF16 /
AMX support. `--numerics exact,float` adds codec processes whose entropy
parameters compute in float32 as before format 3 (`DCAECodec(numerics=)`),
and prints the exact path's time as a ratio of theirs, per process kind.

The parts (`parts` processes, one per mode and direction), timed
separately:

  encode: g_a (analysis transform), hyperprior (h_a, z quantisation, both
          h_s branches), slices (dictionary cross-attention + mean / scale /
          LRP networks of every slice), range coding (= DCAECodec.compress
          minus the three network parts: the TFC range coder plus the
          bitstream container)
  decode: hyperprior (both h_s branches), slices, g_s (synthesis transform),
          range decoding (= DCAECodec.decompress minus the network parts)

Network parts run as `eager` (plain Python calls), `function` (tf.function
with a static input signature) or `xla` (tf.function(jit_compile=True)).
In function mode a parts process also times the steps of its direction's
transform (g_a's or g_s's layers: resampling blocks, Swin stages, the
latent convs), each as its own tf.function on the previous step's output,
with its FLOPs, and the two halves (attention, conv GLU) of each Swin
stage's first block: where the transform's distance to the roofline comes
from.
A parts process holds every part's graph and the codec's at once, so its
peak RSS (reported after the timed section's, whose high-water mark is reset
through /proc/self/clear_refs after warm-up) is above a codec process's.
FLOPs come from the TF profiler on the graph of each part's concrete function
(it counts Conv2D, MatMul, BatchMatMul, elementwise ops...) plus an exact count
of Einsum ops, which the profiler does not know (2 * product of all index
sizes); the graphs counted run the Swin blocks as whole-map products (training
mode), not as the inference loops over bands of rows, whose bodies the
profiler skips (a graph with a loop is refused). Achieved GFLOP/s are put
next to a float32 matrix-multiply roofline measured in the same process
just before and after the timings (best of N large tf.linalg.matmul). On a
shared machine the roofline run can be slowed by other load more than a
part's best time was: a fraction above 100 % means that, not a counting
error.

The driver (this file, which never imports TensorFlow) starts the workers;
`latency_report.py` prints their results, `latency_worker.py` measures.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCH = os.path.dirname(os.path.abspath(__file__))
if BENCH not in sys.path:
  sys.path.insert(0, BENCH)

# pylint: disable=wrong-import-position
import latency_report  # noqa: E402
import latency_worker as worker  # noqa: E402
# pylint: enable=wrong-import-position

MODES = ("eager", "function", "xla")
DIRECTIONS = latency_report.DIRECTIONS
# = dcae_tf.codec.metadata.WEIGHT_DTYPES (tests/test_bench.py), without
# importing TensorFlow into the parent process.
WEIGHT_DTYPES = ("float32", "float16")
# dcae_tf.codec.metadata.TRANSFORM_DTYPES (the driver does not import dcae_tf).
TRANSFORM_DTYPES = ("float32", "bfloat16")
# How codec processes compute the entropy parameters (DCAECodec numerics).
NUMERICS = ("exact", "float")
CODEC_SOURCES = ("model", "export")


def run_worker(args, kind, direction, *extra):
  """Runs a `kind` ("parts", "codec" or "export") worker; its JSON result
  or None."""
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind,
         "--direction", direction, "--preset", args.preset,
         "--height", str(args.height), "--width", str(args.width),
         "--repeats", str(args.repeats), *extra]
  paths = ("--bitstream", "--export")
  label = " ".join([kind, direction] + [
      v for k, v in zip(extra[::2], extra[1::2]) if k not in paths])
  if "--export" in extra and kind == "codec":
    label += " (export)"
  print(f"measuring {label} ...", file=sys.stderr, flush=True)
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
    print(f"warning: {label} failed: {tail[0]}", file=sys.stderr)
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _same_files(paths):
  """Whether the files are byte-identical; None unless there are 2+ files."""
  contents = []
  for path in paths:
    if os.path.isfile(path):
      with open(path, "rb") as f:
        contents.append(f.read())
  if len(contents) < 2:
    return None
  return all(c == contents[0] for c in contents)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--height", type=int, default=512)
  parser.add_argument("--width", type=int, default=768)
  parser.add_argument("--modes", default="function",
                      help="comma-separated subset of " + ",".join(MODES))
  parser.add_argument("--directions", default=",".join(DIRECTIONS))
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--weight_dtypes", default=",".join(WEIGHT_DTYPES),
                      help="weight storage of the codec processes: "
                      "comma-separated subset of " + ",".join(WEIGHT_DTYPES))
  parser.add_argument("--codecs", default=",".join(CODEC_SOURCES),
                      help="codec processes to measure: comma-separated "
                      "subset of " + ",".join(CODEC_SOURCES))
  parser.add_argument("--transform_dtypes", default=TRANSFORM_DTYPES[0],
                      help="what g_a / g_s of the codec processes compute "
                      "in: comma-separated subset of "
                      + ",".join(TRANSFORM_DTYPES))
  parser.add_argument("--numerics", default="exact",
                      help="how the codec processes compute the entropy "
                      "parameters: comma-separated subset of exact,float")
  parser.add_argument("--output", help="also write the results as JSON")
  parser.add_argument("--worker", choices=("parts", "codec", "export"),
                      help=argparse.SUPPRESS)
  parser.add_argument("--mode", default="function", choices=MODES,
                      help=argparse.SUPPRESS)
  parser.add_argument("--direction", default="encode", choices=DIRECTIONS,
                      help=argparse.SUPPRESS)
  parser.add_argument("--weight_dtype", default="float32",
                      choices=WEIGHT_DTYPES, help=argparse.SUPPRESS)
  parser.add_argument("--transform_dtype", default=TRANSFORM_DTYPES[0],
                      choices=TRANSFORM_DTYPES, help=argparse.SUPPRESS)
  parser.add_argument("--entropy_numerics", default="exact",
                      choices=NUMERICS, help=argparse.SUPPRESS)
  parser.add_argument("--bitstream", help=argparse.SUPPRESS)
  parser.add_argument("--export", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker == "parts":
    worker.parts_worker(args)
    return 0
  if args.worker == "codec":
    worker.codec_worker(args)
    return 0
  if args.worker == "export":
    worker.export_worker(args)
    return 0
  modes = [m for m in args.modes.split(",") if m]
  directions = [d for d in args.directions.split(",") if d]
  dtypes = [d for d in args.weight_dtypes.split(",") if d]
  sources = [c for c in args.codecs.split(",") if c]
  computes = [d for d in args.transform_dtypes.split(",") if d]
  numerics = [n for n in args.numerics.split(",") if n]
  bad = (sorted(set(numerics) - set(NUMERICS)) +
         sorted(set(modes) - set(MODES)) +
         sorted(set(directions) - set(DIRECTIONS)) +
         sorted(set(dtypes) - set(WEIGHT_DTYPES)) +
         sorted(set(sources) - set(CODEC_SOURCES)) +
         sorted(set(computes) - set(TRANSFORM_DTYPES)))
  if bad:
    print("error: unknown numerics/mode/direction/weight dtype/codec "
          f"source/transform dtype {bad}",
          file=sys.stderr)
    return 1
  # FLOPs are counted in function mode: make sure it runs.
  if "function" not in modes:
    modes.insert(0, "function")
  results = []
  for mode in modes:
    for direction in directions:
      r = run_worker(args, "parts", direction, "--mode", mode)
      if r:
        results.append(r)
  codec_results = []
  with tempfile.TemporaryDirectory() as tmp:
    # One label per weight storage x transform dtype x numerics (the
    # files' names).
    labels = {(d, t, n): "/".join(
        [d] + [t] * (t != TRANSFORM_DTYPES[0]) + [n] * (n != NUMERICS[0]))
              for d, t, n in itertools.product(dtypes, computes, numerics)}

    def path(label, what):
      return os.path.join(tmp, f"{label.replace('/', '_')}_{what}")

    for (dtype, compute, entropy), source in itertools.product(labels,
                                                               sources):
      label = labels[dtype, compute, entropy]
      extra = ["--weight_dtype", dtype, "--transform_dtype", compute,
               "--entropy_numerics", entropy]
      if source == "export":
        extra += ["--export", path(label, "export")]
        if run_worker(args, "export", "encode", *extra) is None:
          continue
      for direction in DIRECTIONS:
        # The decode process decodes what the encode process wrote.
        r = run_worker(args, "codec", direction, *extra, "--bitstream",
                       path(label, f"{source}.dcae"))
        if r is None:
          break
        if direction in directions:
          codec_results.append(r)
    same = {label: _same_files([path(label, f"{s}.dcae") for s in sources])
            for label in labels.values()}
  if not results:
    print("error: every measurement failed", file=sys.stderr)
    return 1
  flops = {n: p["flops"] for r in results for n, p in r["parts"].items()
           if "flops" in p}
  rows = latency_report.report(results, flops)
  codec_rows = latency_report.codec_report(codec_results, flops)
  latency_report.numerics_ratios(codec_rows)
  rows += codec_rows
  for dtype, equal in same.items():
    if equal is not None:
      print(f"{dtype}: the export's bitstream equals the in-process "
            f"codec's: {equal}")
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump({"measurements": results + codec_results, "rows": rows,
                 "export_bitstream_equals_model": same}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
