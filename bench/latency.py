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
just before and after the timings (best of N large tf.linalg.matmul). On a shared machine the roofline run can be slowed
by other load more than a part's best time was: a fraction above 100 % means
that, not a counting error.

The driver (this file, which never imports TensorFlow) starts the workers
and reports; the measuring side is `latency_worker.py`.
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
import latency_worker as worker
# pylint: enable=wrong-import-position

MODES = ("eager", "function", "xla")
DIRECTIONS = ("encode", "decode")
# = dcae_tf.codec.metadata.WEIGHT_DTYPES (tests/test_bench.py), without importing
# TensorFlow into the parent process.
WEIGHT_DTYPES = ("float32", "float16")
# dcae_tf.codec.metadata.TRANSFORM_DTYPES (the driver does not import dcae_tf).
TRANSFORM_DTYPES = ("float32", "bfloat16")
# How codec processes compute the entropy parameters (DCAECodec numerics).
NUMERICS = ("exact", "float")
CODEC_SOURCES = ("model", "export")
# Targets of issue 6 on this class of CPU.
TARGET_ROOFLINE_RATIO = 1.25
TARGET_PEAK_RSS_MIB = 1.5e9 / 2 ** 20


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


def codec_report(codec_results, flops_by_part):
  """Prints the codec processes' table against the targets; returns rows."""
  rows = []
  print(f"\ncodec processes (model: build + {'/'.join(DIRECTIONS)} only; "
        f"export: load + {'/'.join(DIRECTIONS)} only; targets: <= "
        f"{TARGET_ROOFLINE_RATIO}x the roofline time, peak RSS <= "
        f"{TARGET_PEAK_RSS_MIB:.0f} MiB)")
  print(f"{'source':<7} {'dir':<7} {'weights':<8} {'g_a/g_s':<8} "
        f"{'entropy':<8} {'load s':>6} "
        f"{'first s':>7} {'seconds':>8} {'GFLOP':>7} {'x roofline time':>15} "
        f"{'peak RSS MiB':>12}  targets")
  for r in codec_results:
    flops = sum(flops_by_part.get(n, 0)
                for n in worker.PARTS[r["direction"]])
    ideal = flops / (r["roofline_gflops_per_s"] * 1e9) if flops else None
    ratio = r["seconds"] / ideal if ideal else None
    met = (ratio is not None and ratio <= TARGET_ROOFLINE_RATIO,
           r["peak_rss_mib"] <= TARGET_PEAK_RSS_MIB)
    row = dict(source=r["source"], direction=r["direction"],
               weight_dtype=r["weight_dtype"],
               transform_dtype=r["transform_dtype"],
               numerics=r.get("numerics", "exact"),
               load_seconds=r.get("load_seconds"),
               first_call_seconds=r["first_call_seconds"],
               seconds=r["seconds"], gflop=flops / 1e9 if flops else None,
               roofline_gflops_per_s=r["roofline_gflops_per_s"],
               roofline_time_ratio=ratio, peak_rss_mib=r["peak_rss_mib"],
               time_target_met=met[0], memory_target_met=met[1])
    rows.append(row)
    ratio_text = f"{ratio:.2f}x" if ratio else "-"
    load = f"{r['load_seconds']:6.1f}" if "load_seconds" in r else "-"
    print(f"{r['source']:<7} {r['direction']:<7} {r['weight_dtype']:<8} "
          f"{r['transform_dtype']:<8} {r.get('numerics', 'exact'):<8} "
          f"{load:>6} "
          f"{r['first_call_seconds']:7.1f} {r['seconds']:8.3f} "
          f"{flops / 1e9:7.1f} {ratio_text:>15} {r['peak_rss_mib']:12.0f}  "
          f"time {'met' if met[0] else 'NOT met'}, "
          f"memory {'met' if met[1] else 'NOT met'}")
  return rows


def numerics_ratios(rows):
  """Prints the exact path's seconds over the float path's, per process
  kind measured with both."""
  by_key = {}
  for r in rows:
    key = (r["source"], r["direction"], r["weight_dtype"],
           r["transform_dtype"])
    by_key.setdefault(key, {})[r["numerics"]] = r["seconds"]
  for key, seconds in sorted(by_key.items()):
    if {"exact", "float"} <= set(seconds):
      print(f"{'/'.join(key)}: exact entropy parameters take "
            f"{seconds['exact'] / seconds['float']:.2f}x the float path's "
            f"time ({seconds['exact']:.3f} vs {seconds['float']:.3f} s)")


def report(results, flops_by_part):
  """Prints the table and the ratios; returns the summary rows."""
  rows = []
  size = worker.ROOFLINE_SIZE
  print(f"roofline: float32 {size}x{size} tf.linalg.matmul, best of "
        f"{worker.ROOFLINE_REPEATS}, measured in each measurement's process")
  print(f"{'mode':<9} {'dir':<7} {'part':<15} {'seconds':>8} {'share':>6} "
        f"{'GFLOP':>8} {'GFLOP/s':>8} {'roofline':>8}")
  for r in results:
    roofline = r["roofline_gflops_per_s"]
    total = r.get("codec_seconds") or sum(p["seconds"] for p in
                                          r["parts"].values())
    for name, part in r["parts"].items():
      flops = flops_by_part.get(name)
      gflops = flops / 1e9 if flops else None
      rate = gflops / part["seconds"] if gflops and part["seconds"] else None
      row = dict(mode=r["mode"], direction=r["direction"], part=name,
                 seconds=part["seconds"], share=part["seconds"] / total,
                 gflop=gflops, gflops_per_s=rate,
                 roofline_fraction=rate / roofline if rate else None)
      rows.append(row)
      fmt = lambda v, f: format(v, f) if v is not None else "-"  # pylint: disable=unnecessary-lambda-assignment
      print(f"{r['mode']:<9} {r['direction']:<7} {name:<15} "
            f"{part['seconds']:8.3f} {row['share']:6.1%} "
            f"{fmt(gflops, '8.2f'):>8} {fmt(rate, '8.2f'):>8} "
            f"{fmt(row['roofline_fraction'], '8.1%'):>8}")
    extra = (f", full codec {r['codec_seconds']:.3f} s, "
             f"{r['bitstream_bytes']} bytes") if "codec_seconds" in r else ""
    print(f"{r['mode']:<9} {r['direction']:<7} roofline {roofline:.1f} "
          f"GFLOP/s; peak RSS of this parts process: timed section "
          f"{r['timed_peak_rss_mib']:.0f} MiB (reset: {r['peak_reset']}), "
          f"process {r['process_peak_rss_mib']:.0f} MiB{extra}")
  for r in results:
    if "steps" in r:
      rows += steps_report(r)
  by_key = {(r["mode"], r["direction"]): r for r in results}
  for direction in DIRECTIONS:
    nets = {m: sum(p["seconds"] for n, p in r["parts"].items()
                   if n != "range_coding")
            for (m, d), r in by_key.items() if d == direction}
    if "eager" in nets and "function" in nets:
      print(f"{direction}: networks eager / tf.function = "
            f"{nets['eager'] / nets['function']:.2f}x")
    if "xla" in nets and "function" in nets:
      print(f"{direction}: networks tf.function / XLA = "
            f"{nets['function'] / nets['xla']:.2f}x")
  return rows


def _against_roofline(seconds, flops, roofline):
  """A timing's GFLOP, fraction of the roofline and excess seconds (its
  time beyond the roofline time of its FLOPs)."""
  gflop = flops / 1e9
  ideal = gflop / roofline
  return dict(seconds=seconds, gflop=gflop, roofline_fraction=ideal / seconds,
              excess_seconds=seconds - ideal)


def steps_report(result):
  """Prints the transform's steps of one parts result; returns rows.

  "excess" is a step's time beyond the roofline time of its FLOPs: the
  steps with the largest excess are where the transform loses its time.
  """
  roofline = result["roofline_gflops_per_s"]
  name = worker.TRANSFORM[result["direction"]]
  total = sum(step["seconds"] for step in result["steps"])
  print(f"\n{name} step by step ({result['direction']}, each step a "
        f"tf.function on the previous one's output; {total:.3f} s in all)")
  print(f"{'step':<14} {'input':<16} {'seconds':>8} {'share':>6} "
        f"{'GFLOP':>7} {'roofline':>8} {'excess s':>8}")
  rows = []
  for step in result["steps"]:
    row = dict(direction=result["direction"], transform=name,
               step=step["name"], input_shape=step["input_shape"],
               share=step["seconds"] / total,
               **_against_roofline(step["seconds"], step["flops"], roofline))
    rows.append(row)
    shape = "x".join(str(d) for d in step["input_shape"])
    print(f"{step['name']:<14} {shape:<16} {row['seconds']:8.3f} "
          f"{row['share']:6.1%} {row['gflop']:7.2f} "
          f"{row['roofline_fraction']:8.1%} {row['excess_seconds']:8.3f}")
    blocks = step.get("blocks", {})
    for half in ("attention", "conv_glu"):
      if half in blocks:
        part = _against_roofline(blocks[half]["seconds"],
                                 blocks[half]["flops"], roofline)
        row.setdefault("blocks", {})[half] = part
        print(f"  {half:<12} {'one block of ' + str(blocks['depth']):<16} "
              f"{part['seconds']:8.3f} {'':>6} {part['gflop']:7.2f} "
              f"{part['roofline_fraction']:8.1%} "
              f"{part['excess_seconds']:8.3f}")
  return rows


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
  rows = report(results, flops)
  codec_rows = codec_report(codec_results, flops)
  numerics_ratios(codec_rows)
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
