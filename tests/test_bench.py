"""bench/latency.py runs end to end (on the tiny preset) and reports honestly."""
import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench",
                     "latency.py")
TRANSFORM_STEPS = {
    "g_a": ["down0", "stage0", "down1", "stage1", "down2", "stage2",
            "to_latent"],
    "g_s": ["from_latent", "stage0", "up0", "stage1", "up1", "stage2", "up2"],
}


@pytest.mark.slow
def test_latency_bench_reports_parts_and_codec_processes(tmp_path):
  out = tmp_path / "latency.json"
  proc = subprocess.run(
      [sys.executable, BENCH, "--preset", "tiny", "--height", "128",
       "--width", "128", "--repeats", "1", "--weight_dtypes", "float16",
       "--transform_dtypes", "bfloat16", "--output", str(out)],
      capture_output=True, text=True, check=False, timeout=900)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "warning" not in proc.stderr, proc.stderr[-2000:]
  report = json.loads(out.read_text())
  parts = [m for m in report["measurements"] if m["kind"] == "parts"]
  codec = [m for m in report["measurements"] if m["kind"] == "codec"]
  assert {m["direction"] for m in parts} == {"encode", "decode"}
  for m in parts:
    networks = {n: p for n, p in m["parts"].items() if n != "range_coding"}
    assert all(p["seconds"] > 0 and p["flops"] > 0
               for p in networks.values())
    # The codec's time beyond its networks (0 when within timing noise).
    assert m["parts"]["range_coding"]["seconds"] >= 0
    # The direction's transform step by step: its layers, in order, whose
    # FLOPs add up to the transform's.
    transform = {"encode": "g_a", "decode": "g_s"}[m["direction"]]
    steps = m["steps"]
    assert [s["name"] for s in steps] == TRANSFORM_STEPS[transform]
    assert all(s["seconds"] > 0 and s["flops"] > 0 for s in steps)
    assert sum(s["flops"] for s in steps) == m["parts"][transform]["flops"]
    assert steps[0]["input_shape"] == (
        [128, 128, 3] if transform == "g_a" else [8, 8, 40])
    # Each Swin stage's block halves, timed and counted alone: its blocks'
    # halves are most of the stage's FLOPs (the rest: residual scales and
    # the stage's 3x3 conv).
    stages = [s for s in steps if s["name"].startswith("stage")]
    depths = [s["blocks"]["depth"] for s in stages]
    assert depths == ([1, 2, 2] if transform == "g_a" else [2, 2, 1])
    assert all("blocks" not in s for s in steps if s not in stages)
    for stage in stages:
      halves = [stage["blocks"][h] for h in ("attention", "conv_glu")]
      assert all(h["seconds"] > 0 and h["flops"] > 0 for h in halves)
      block_flops = stage["blocks"]["depth"] * sum(h["flops"] for h in halves)
      assert 0.5 * stage["flops"] < block_flops < stage["flops"]
  # The decode process decoded the encode process's bitstream (a weights
  # mismatch between the two processes would fail the fingerprint check).
  # In-process codec first, then a loaded export of the same model, both
  # with bfloat16 transforms (the export made with them).
  assert [(m["source"], m["direction"], m["weight_dtype"]) for m in codec] == [
      ("model", "encode", "float16"), ("model", "decode", "float16"),
      ("export", "encode", "float16"), ("export", "decode", "float16")]
  assert {m["transform_dtype"] for m in codec} == {"bfloat16"}
  assert all(m["load_seconds"] > 0 for m in codec if m["source"] == "export")
  assert all(m["first_call_seconds"] > 0 for m in codec)
  # The export computes the in-process codec's bitstream, bit for bit.
  assert report["export_bitstream_equals_model"] == {"float16/bfloat16": True}
  rows = [r for r in report["rows"] if "roofline_time_ratio" in r]
  assert len(rows) == 4
  for row, m in zip(rows, codec):
    # The ratio is the measured time over the roofline time of the FLOPs.
    ideal = row["gflop"] / row["roofline_gflops_per_s"]
    assert row["roofline_time_ratio"] == pytest.approx(m["seconds"] / ideal)
    assert row["time_target_met"] == (row["roofline_time_ratio"] <= 1.25)
    assert 100 < row["peak_rss_mib"] < 10_000
    assert row["transform_dtype"] == "bfloat16"
  assert "codec processes" in proc.stdout
  assert "g_a step by step" in proc.stdout and "g_s step by step" in proc.stdout
  steps = [r for r in report["rows"] if "excess_seconds" in r]
  assert [r["step"] for r in steps] == (TRANSFORM_STEPS["g_a"] +
                                        TRANSFORM_STEPS["g_s"])
  for row in steps:
    # Excess = the step's time beyond the roofline time of its FLOPs.
    assert row["excess_seconds"] == pytest.approx(
        row["seconds"] * (1 - row["roofline_fraction"]))
  assert "the export's bitstream equals the in-process codec's: True" in (
      proc.stdout)


def test_latency_bench_dtypes_are_the_librarys():
  """The bench names the weight and transform dtypes without importing TF in
  its parent process; they must stay the library's."""
  # pylint: disable=import-outside-toplevel
  import importlib.util
  from dcae_tf.codec import metadata
  spec = importlib.util.spec_from_file_location("latency_bench", BENCH)
  latency = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(latency)
  assert latency.WEIGHT_DTYPES == metadata.WEIGHT_DTYPES
  assert latency.TRANSFORM_DTYPES == metadata.TRANSFORM_DTYPES


def _bench_module(name):
  # pylint: disable=import-outside-toplevel
  import importlib.util
  path = os.path.join(os.path.dirname(BENCH), name + ".py")
  spec = importlib.util.spec_from_file_location(name + "_bench", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_train_throughput_bench_precisions_are_the_librarys():
  """bench/train_throughput.py names the training precisions without
  importing TF in its parent; they must stay bin/train.py's."""
  from dcae_tf import model  # pylint: disable=import-outside-toplevel
  bench = _bench_module("train_throughput")
  assert bench.KNOWN_PRECISIONS == model.PRECISIONS
  assert bench.BASELINE_PRECISION == model.FLOAT32


def test_train_throughput_bench_ratios_per_precision():
  bench = _bench_module("train_throughput")
  row = lambda precision, strategy, devices, ips: dict(  # noqa: E731
      preset="small", precision=precision, strategy=strategy,
      devices=devices, batch_size=8, images_per_second=ips,
      seconds_per_step=8 / ips, trace_seconds=30., peak_rss_mib=900.)
  results = bench.add_ratios([
      row("float32", "default", 1, 10.), row("float32", "mirrored", 2, 8.),
      row("mixed_bfloat16", "default", 1, 15.),
      row("mixed_bfloat16", "mirrored", 2, 6.)])
  assert [r["ratio_vs_float32"] for r in results] == [1., 1., 1.5, 0.75]
  assert [r["ratio_vs_1_device"] for r in results] == [1., 0.8, 1., 0.4]
  table = bench.format_table(results)
  assert "| small | mixed_bfloat16 | mirrored | 2 |" in table
  assert "1.50x" in table


def test_transform_dtype_accuracy_bench_summary():
  bench = _bench_module("transform_dtype_accuracy")
  row = lambda bpp, db, exact=True: dict(  # noqa: E731
      bpp_float32=0.2, bpp_bfloat16=0.2 * (1 + bpp / 100), psnr_float32=30.,
      psnr_bfloat16=30. + db, decode_is_reconstruction=exact,
      float32_decodes_same_latents=True)
  within = bench.summarise([row(0.4, -0.02), row(-0.2, 0.04)])
  assert within["mean_bpp_percent"] == pytest.approx(0.1)
  assert within["mean_db"] == pytest.approx(0.01)
  # The worst image by magnitude, whichever the sign.
  assert within["worst_bpp_percent"] == pytest.approx(0.4)
  assert within["worst_db"] == pytest.approx(0.04)
  assert within["within_targets"] and within["exact"]
  outside = bench.summarise([row(0.1, -0.01), row(0.1, -0.06, exact=False)])
  assert not outside["within_targets"] and not outside["exact"]


def test_transform_dtype_accuracy_bench_bad_input_is_one_line(tmp_path):
  path = os.path.join(os.path.dirname(BENCH), "transform_dtype_accuracy.py")
  proc = subprocess.run(
      [sys.executable, path, "--images", str(tmp_path)],
      capture_output=True, text=True, check=False, timeout=300)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: no images"), proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def test_cold_start_bench_reports_baseline_ratio():
  bench = _bench_module("cold_start")
  phases = dict(import_tf=1., import_loader=.1, load=.2, first_call=.5,
                second_call=.2, cache_state="hit", tfc_imported=False)
  mode = dict(compress=3., decompress=5.,
              phases={"compress": phases, "decompress": phases})
  report = bench.report(dict(
      date="d", cpu="c", cores=2, load_before=[0], load_after=[0], model="m",
      image="i", imports={"import tf": 2., "import tf+tfc": 2.5},
      uncached=mode, cached=mode, baselines={"official": 16.}))
  # (3 + 5) s against the official 16 s; compress 3 s against 2.5 s.
  assert "baseline official: 16.00 s" in report and "= 0.50x" in report
  assert "1.20x (met)" in report


@pytest.mark.parametrize("flags, message", [
    (["--baseline", "no-equals"], "--baseline takes NAME=COMMAND"),
    (["--baseline", "a=x", "--baseline", "a=y"],
     "each --baseline needs a NAME of its own"),
])
def test_cold_start_bench_bad_baseline_is_one_line(flags, message):
  path = os.path.join(os.path.dirname(BENCH), "cold_start.py")
  proc = subprocess.run([sys.executable, path] + flags,
                        capture_output=True, text=True, check=False,
                        timeout=60)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last == "cold_start: error: " + message
  assert "Traceback" not in proc.stderr


PIECES = os.path.join(os.path.dirname(BENCH), "exact_pieces.py")


def _pieces(*flags):
  return subprocess.run([sys.executable, PIECES, *flags], capture_output=True,
                        text=True, check=False, timeout=600)


@pytest.mark.slow
def test_exact_pieces_bench_times_every_piece_both_ways(tmp_path):
  from dcae_tf import config  # pylint: disable=import-outside-toplevel
  out = tmp_path / "pieces.json"
  proc = _pieces("--preset", "tiny", "--height", "64", "--width", "64",
                 "--repeats", "1", "--output", str(out))
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(out.read_text())
  assert [r["piece"] for r in report["pieces"]] == ["h_s"] + [
      f"slice {i} {piece}"
      for i in range(config.get_config("tiny").num_slices)
      for piece in ("cross-attention", "mean + scale", "LRP")]
  for numerics in ("exact", "float"):
    seconds = [r[numerics] for r in report["pieces"]]
    assert all(s > 0 for s in seconds)
    assert report["total"][numerics] == pytest.approx(sum(seconds))
  assert "entropy parameters" in proc.stdout.splitlines()[-1]


def test_exact_pieces_bench_bad_input_is_one_line():
  for flags, message in ((["--preset", "huge"], "unknown preset 'huge'"),
                         (["--repeats", "0"], "must be at least 1")):
    proc = _pieces(*flags)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert message in proc.stderr
