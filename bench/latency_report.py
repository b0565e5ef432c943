"""The tables of bench/latency.py: the workers' results against the
float32 matmul roofline and the targets (no TensorFlow)."""
import latency_worker as worker

DIRECTIONS = ("encode", "decode")
# Targets of issue 6 on this class of CPU.
TARGET_ROOFLINE_RATIO = 1.25
TARGET_PEAK_RSS_MIB = 1.5e9 / 2 ** 20


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
