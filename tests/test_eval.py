"""Tests of dcae_tf.evaluation: metrics, anchors, BD-rate, tables, CLI."""
import csv
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcae_tf import losses
from dcae_tf.evaluation import anchors
from dcae_tf.evaluation import bd
from dcae_tf.evaluation import images as images_lib
from dcae_tf.evaluation import metrics
from dcae_tf.evaluation import models
from dcae_tf.evaluation import report
from dcae_tf.evaluation import runner
from tests import msssim_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = ((64, 96), (96, 64), (72, 80))
pytestmark = pytest.mark.filterwarnings(
    "ignore::dcae_tf.evaluation.metrics.SmallImageWarning")
QUALITIES = (20, 50, 80)


def synthetic_image(height, width, seed=0):
  """Smooth test image: colour gradients, a sine texture and a disc."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  img = np.stack([xx / width * 255, yy / height * 255,
                  (np.sin(xx / 7 + seed) + np.cos(yy / 5)) * 60 + 128], -1)
  radius = min(height, width) / 4
  disc = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < radius ** 2
  img[disc] = (200, 50, 30 + 40 * seed)
  return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(name="image_dir")
def fixture_image_dir(tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  for i, (h, w) in enumerate(SHAPES):
    Image.fromarray(synthetic_image(h, w, i)).save(folder / f"im{i}.png")
  return folder


class FakeCodec:
  """Stand-in for dcae_tf.export.ExportedCodec: JPEG at a fixed quality.

  Logs the bitstreams it produced so tests can check the reported rate.
  """

  def __init__(self, quality, path=None):
    self.quality = quality
    self.path = path
    self.metadata = {"name": f"fake-q{quality}", "preset": "fake",
                     "lmbda": quality / 1000, "metric": "mse",
                     "fingerprint": "0" * 16, "format_version": 1}
    self.bitstreams = []

  def compress(self, image):
    assert image.dtype == np.uint8 and image.shape[-1] == 3
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=self.quality,
                                subsampling=anchors.JPEG_SUBSAMPLING)
    self.bitstreams.append(buf.getvalue())
    return buf.getvalue()

  def decompress(self, data):
    with Image.open(io.BytesIO(data)) as img:
      return np.asarray(img.convert("RGB"))


def read_csv(path):
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


# --- metrics ---------------------------------------------------------------

def test_psnr_known_values():
  a = np.full((16, 16, 3), 100, np.uint8)
  assert metrics.psnr(a, a) == math.inf
  b = a + 1  # MSE = 1
  assert metrics.psnr(a, b) == pytest.approx(20 * math.log10(255))
  with pytest.raises(ValueError, match="shapes differ"):
    metrics.psnr(a, a[:8])
  with pytest.raises(ValueError, match="uint8"):
    metrics.psnr(a.astype(np.float32), a)


def test_msssim_scales_and_db():
  assert metrics.msssim_scales(512, 768) == 5
  assert metrics.msssim_scales(161, 161) == 5
  assert metrics.msssim_scales(160, 400) == 4
  for scales in range(1, 6):
    side = losses.min_side_for_scales(scales)
    assert metrics.msssim_scales(side, side) == scales
    assert metrics.msssim_scales(side - 1, side) == scales - 1
  assert metrics.msssim_scales(64, 96) == 3
  assert metrics.msssim_scales(10, 96) == 0
  assert metrics.msssim_db(0.99) == pytest.approx(20.0)
  assert metrics.msssim_db(1.0) == math.inf

  big = synthetic_image(161, 192)
  noisy = _noisy(big)
  assert metrics.msssim(big, big) == pytest.approx(1.0, abs=1e-5)
  with pytest.warns(metrics.SmallImageWarning, match="3 scales"):
    metrics.msssim_with_scales(big[:64, :98], noisy[:64, :98])
  with pytest.warns(metrics.SmallImageWarning, match="NaN"):
    assert math.isnan(metrics.msssim(big[:8, :9], noisy[:8, :9]))


def _noisy(image):
  return np.clip(image.astype(int) + np.random.default_rng(0).integers(
      -20, 21, image.shape), 0, 255).astype(np.uint8)


# One image size per number of scales (5 needs a side of 161: module doc).
MSSSIM_SIZES = ((161, 192, 5), (128, 150, 4), (64, 97, 3), (32, 40, 2),
                (16, 20, 1))


def _check_msssim_against_references():
  """metrics' MS-SSIM at 5, 4, 3, 2 and 1 scales equals
  tf.image.ssim_multiscale under the renormalised first weights of Wang et
  al. (written out in tests/msssim_reference.py) and the float64 MS-SSIM
  written from the paper."""
  big = synthetic_image(161, 192)
  noisy = _noisy(big)
  for height, width, scales in MSSSIM_SIZES:
    a, b = big[:height, :width], noisy[:height, :width]
    value, used = metrics.msssim_with_scales(a, b)
    assert used == scales, (height, width)
    weights = msssim_reference.reduced_weights(scales)
    expected = float(tf.image.ssim_multiscale(
        tf.constant(a, tf.float32), tf.constant(b, tf.float32), 255.0,
        power_factors=weights))
    assert value == pytest.approx(expected, rel=1e-6), (
        height, width, value, expected)
    # float32 against float64: 2e-6 measured.
    expected = msssim_reference.ms_ssim(a, b, weights, 255.0)
    assert value == pytest.approx(expected, rel=1e-5), (
        height, width, value, expected)


@pytest.mark.parametrize("wrong", [None, *msssim_reference.WRONG_WEIGHTS])
def test_msssim_matches_references_at_every_scale_count(wrong, monkeypatch):
  """The check passes for the library and fails for each wrong weighting."""
  if wrong is None:
    _check_msssim_against_references()
    return
  monkeypatch.setattr(losses, "ms_ssim_weights",
                      msssim_reference.WRONG_WEIGHTS[wrong])
  with pytest.raises(AssertionError):
    _check_msssim_against_references()


# --- BD-rate ---------------------------------------------------------------

RATES = [0.1, 0.2, 0.4, 0.8]
PSNRS = [28.0, 31.0, 34.0, 37.0]


@pytest.mark.parametrize("method", bd.BD_METHODS)
def test_bd_against_itself_is_zero(method):
  result = bd.bd(RATES, PSNRS, RATES, PSNRS, method=method)
  assert result.bd_rate == pytest.approx(0.0, abs=1e-9)
  assert result.bd_metric == pytest.approx(0.0, abs=1e-9)
  assert result.note == ""


@pytest.mark.parametrize("method", bd.BD_METHODS)
def test_bd_recovers_a_known_rate_scale(method):
  scaled = [0.8 * r for r in RATES]
  result = bd.bd(scaled, PSNRS, RATES, PSNRS, method=method)
  assert result.bd_rate == pytest.approx(-20.0, abs=1e-6)
  assert result.bd_metric > 0
  # The other way round: 1 / 0.8 = +25 %.
  assert bd.bd(RATES, PSNRS, scaled, PSNRS).bd_rate == pytest.approx(25.0)


def test_bd_undefined_cases_are_nan_with_note():
  far = bd.bd([1.0, 2.0], [40.0, 45.0], RATES, PSNRS)
  assert math.isnan(far.bd_rate) and math.isnan(far.bd_metric)
  assert "do not overlap" in far.note
  single = bd.bd([0.3], [33.0], RATES, PSNRS)
  assert math.isnan(single.bd_rate) and ">= 2" in single.note
  # Unsorted input with a non-monotone point and an infinite PSNR.
  messy = bd.bd([0.4, 0.1, 0.2, 0.3, 0.8], [34.0, 28.0, 31.0, 30.0, math.inf],
                RATES, PSNRS)
  assert messy.bd_rate == pytest.approx(0.0, abs=1e-9)
  assert "non-monotone" in messy.note and "non-finite" in messy.note


def test_paper_points():
  psnr_rates, psnr_values = report.paper_curve("psnr", "Kodak")
  assert (min(psnr_rates), max(psnr_rates)) == (0.109, 0.811)
  assert (min(psnr_values), max(psnr_values)) == (29.24, 37.87)
  assert report.paper_curve("msssim_db", "Kodak") is not None
  assert report.paper_curve("msssim_db", "CLIC") is None
  assert "LabShuHangGU/DCAE" in report.load_paper_points()["source"]


# --- images and anchors ----------------------------------------------------

def test_image_folder_checks(tmp_path, image_dir):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="no images"):
    images_lib.list_images(empty)
  with pytest.raises(ValueError, match="no images"):
    runner.run_evaluation(str(empty), str(tmp_path / "out"), anchors=["jpeg"])
  with pytest.raises(ValueError, match="does not exist"):
    images_lib.list_images(tmp_path / "missing")
  nested = tmp_path / "nested" / "sub"
  nested.mkdir(parents=True)
  Image.fromarray(synthetic_image(16, 16)).save(nested / "a.png")
  with pytest.raises(ValueError, match="--recursive"):
    images_lib.list_images(tmp_path / "nested")
  assert len(images_lib.list_images(tmp_path / "nested", recursive=True)) == 1
  (image_dir / "broken.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match="cannot read image"):
    images_lib.read_image(str(image_dir / "broken.png"))
  gray = np.zeros((8, 8), np.uint8)
  Image.fromarray(gray).save(tmp_path / "gray.png")
  assert images_lib.read_image(str(tmp_path / "gray.png")).shape == (8, 8, 3)


def test_anchor_round_trips_measure_real_bytes():
  image = synthetic_image(64, 96)
  codecs = anchors.anchor_codecs(anchors.ANCHOR_NAMES, qualities=[50])
  assert {c.curve for c in codecs} == {"JPEG", "WebP", "AVIF", "JPEG XL"}
  for codec in codecs:
    m = runner.measure(codec, image, "x")
    data = codec.compress(image)
    assert m.num_bytes == len(data)
    assert m.bpp == len(data) * 8 / (64 * 96)
    assert 20 < m.psnr < 60, codec.curve
  jpeg = anchors.jpeg(50).compress(image)
  with Image.open(io.BytesIO(jpeg)) as img:
    assert img.format == "JPEG"
    assert img.layer[0][1:3] == (2, 2)  # luma sampled 2x2: 4:2:0


def test_unavailable_anchor_is_skipped(monkeypatch):
  import imagecodecs  # pylint: disable=import-outside-toplevel
  monkeypatch.delattr(imagecodecs, "avif_encode")
  with pytest.warns(anchors.AnchorUnavailableWarning, match="avif"):
    codecs = anchors.anchor_codecs(["jpeg", "avif"], qualities=[50])
  assert [c.curve for c in codecs] == ["JPEG"]
  with pytest.raises(ValueError, match="unknown anchor"):
    anchors.anchor_codecs(["png"])


# --- end to end ------------------------------------------------------------

def test_evaluation_writes_tables_and_plots(image_dir, tmp_path):
  fakes = [FakeCodec(q) for q in QUALITIES]
  out = tmp_path / "results"
  results = runner.run_evaluation(
      str(image_dir), str(out), codecs=fakes, anchors=["jpeg", "webp"],
      qualities=QUALITIES, paper_points="Kodak", progress=False)

  for name in ("per_image.csv", "per_image.json", "summary.csv",
               "summary.json", "bd.csv", "bd.json"):
    assert (out / name).stat().st_size > 0, name
  for name in report.PLOT_FILES.values():
    with Image.open(out / name) as img:
      assert img.format == "PNG" and img.size[0] > 300

  columns, rows = read_csv(out / "per_image.csv")
  assert tuple(columns) == report.PER_IMAGE_COLUMNS
  assert len(rows) == len(SHAPES) * (len(fakes) + 2 * len(QUALITIES))
  per_image_json = json.loads((out / "per_image.json").read_text())
  assert len(per_image_json) == len(rows)

  # The rate is the size of the real bitstream: the fake codec logged them
  # (first one is the untimed warm-up on the first image).
  fake_rows = [r for r in rows if r["setting"] == "fake-q50"]
  streams = fakes[1].bitstreams[1:]
  assert len(fake_rows) == len(streams) == len(SHAPES)
  for row, stream in zip(fake_rows, streams):
    h, w = int(row["height"]), int(row["width"])
    assert int(row["num_bytes"]) == len(stream)
    assert float(row["bpp"]) == pytest.approx(len(stream) * 8 / (h * w))
    assert row["curve"] == "DCAE-fake-mse" and row["kind"] == "model"
    assert float(row["encode_seconds"]) >= 0 and float(row["decode_seconds"]) >= 0
  # Anchor rows: re-encode and compare with the file size and PSNR.
  row = next(r for r in rows if r["curve"] == "JPEG" and r["setting"] == "q=50"
             and r["image"] == "im0.png")
  original = images_lib.read_image(str(image_dir / "im0.png"))
  data = anchors.jpeg(50).compress(original)
  assert int(row["num_bytes"]) == len(data)
  assert float(row["bpp"]) == pytest.approx(len(data) * 8 / original[..., 0].size)
  decoded = anchors.jpeg(50).decompress(data)
  assert float(row["psnr"]) == pytest.approx(metrics.psnr(original, decoded))
  assert int(row["msssim_scales"]) == 3

  columns, summary = read_csv(out / "summary.csv")
  assert tuple(columns) == report.SUMMARY_COLUMNS
  assert len(summary) == len(fakes) + 2 * len(QUALITIES)
  mean_bpp = np.mean([float(r["bpp"]) for r in fake_rows])
  fake_summary = next(r for r in summary if r["setting"] == "fake-q50")
  assert float(fake_summary["bpp"]) == pytest.approx(mean_bpp)
  assert int(fake_summary["num_images"]) == len(SHAPES)

  # The fake model *is* JPEG at the anchor's qualities: BD-rate 0.
  columns, bd_rows = read_csv(out / "bd.csv")
  assert tuple(columns) == report.BD_COLUMNS
  same = [r for r in bd_rows if r["test"] == "DCAE-fake-mse"
          and r["anchor"] == "JPEG"]
  assert {r["metric"] for r in same} == {"psnr", "msssim_db"}
  for r in same:
    assert float(r["bd_rate"]) == pytest.approx(0.0, abs=1e-6)
    assert float(r["bd_metric"]) == pytest.approx(0.0, abs=1e-6)
  assert any(r["anchor"] == "DCAE paper (Kodak)" for r in bd_rows)
  summary_json = json.loads((out / "summary.json").read_text())
  assert summary_json["num_images"] == len(SHAPES)
  assert len(summary_json["bd"]) == len(bd_rows) == len(results["bd"])


def test_exported_model_paths_and_labels(image_dir, tmp_path, monkeypatch):
  """Models given as paths are loaded with the runtime's load_exported."""
  loaded = []

  def load_exported(path):
    loaded.append(path)
    return FakeCodec(40, path=path)

  monkeypatch.setattr(models.exported, "load_exported", load_exported)
  model_a = tmp_path / "saved_models" / "a"
  model_a.mkdir(parents=True)
  results = runner.run_evaluation(
      str(image_dir), str(tmp_path / "out"),
      models=[str(model_a), f"mine={model_a}"], anchors=[], progress=False,
      max_images=1)
  assert loaded == [str(model_a)] * 2
  assert [r["curve"] for r in results["summary"]] == ["DCAE-fake-mse", "mine"]
  with pytest.raises(ValueError, match="does not exist"):
    models.load_model_codec(str(tmp_path / "nope"))


def test_bad_codec_output_is_refused(image_dir, tmp_path):
  class Cropping(FakeCodec):
    def decompress(self, data):
      return super().decompress(data)[1:]

  with pytest.raises(ValueError, match="expected uint8"):
    runner.run_evaluation(str(image_dir), str(tmp_path / "out"),
                          codecs=[Cropping(50)], anchors=[], progress=False)
  with pytest.raises(ValueError, match="nothing to evaluate"):
    runner.run_evaluation(str(image_dir), str(tmp_path / "out"), anchors=[])


def test_cli(image_dir, tmp_path):
  script = os.path.join(REPO, "bin", "evaluate.py")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  empty = tmp_path / "empty"
  empty.mkdir()
  failed = subprocess.run(
      [sys.executable, script, "--images", str(empty), "--output",
       str(tmp_path / "o1")], capture_output=True, text=True, env=env,
      timeout=120, check=False)
  assert failed.returncode == 1
  errors = [l for l in failed.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "no images" in errors[0]
  assert "Traceback" not in failed.stderr

  out = tmp_path / "o2"
  ok = subprocess.run(
      [sys.executable, script, "--images", str(image_dir), "--output",
       str(out), "--anchors", "jpeg", "--qualities", "30,70", "--noprogress",
       "--max_images", "1"],
      capture_output=True, text=True, env=env, timeout=120, check=False)
  assert ok.returncode == 0, ok.stderr
  assert "JPEG" in ok.stdout and (out / "summary.csv").exists()
