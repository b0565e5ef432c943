"""Tests of the installed `dcae-tf` command, run in subprocesses.

The models are fakes exported with dcae_tf.export.save_versioned: their
codec quantizes the image, PNG-encodes it and packs it into a real DCAE
bitstream (container_ops.pack / unpack), so every path of the command line
(model discovery, header checks, graph errors, atomic writes) is the real
one, at a fraction of the cost of a real model.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcae_tf.codec import container
from dcae_tf.codec import container_ops
from dcae_tf import export
from dcae_tf import io as dcae_io
from tests.images import smooth_image

PROG = "dcae-tf"
MAX_PIXELS = 1 << 22
# name -> (quantization step, lambda): a coarser step means fewer bits.
FAKES = {"fake-hq": (1, 0.05), "fake-lq": (64, 0.001)}


class FakeCodec(tf.Module):
  """Quantize + PNG in a real DCAE container; the codec interface."""

  def __init__(self, name, step, lmbda):
    super().__init__(name=None)
    self.model_name = name
    self.step = step
    self.fingerprint = self.fingerprint_of(name)
    self.metadata = dict(name=name, fingerprint=self.fingerprint,
                         preset="fake", lmbda=lmbda, metric="mse",
                         format_version=container.FORMAT_VERSION)

  @staticmethod
  def fingerprint_of(name):
    return hashlib.sha256(name.encode()).hexdigest()[:16]

  def compress(self, image):
    step = tf.constant(self.step, tf.uint8)
    png = tf.io.encode_png(image // step * step)
    shape = tf.shape(image)
    return container_ops.pack(png, shape[0], shape[1], self.fingerprint)

  def decompress(self, data):
    height, width, png = container_ops.unpack(
        data, self.fingerprint, MAX_PIXELS, self.model_name)
    image = tf.io.decode_png(png, channels=3)
    with tf.control_dependencies([tf.debugging.assert_equal(
        tf.shape(image)[:2], tf.stack([height, width]),
        message="image size differs from the header")]):
      return tf.identity(image)


def make_fake_model(models_dir, name, step, lmbda, card=None):
  base = os.path.join(models_dir, name)
  export.save_versioned(FakeCodec(name, step, lmbda), base)
  if card is not None:
    with open(os.path.join(base, "model_card.json"), "w") as f:
      json.dump(card, f)
  return base


def dcae_tf_command():
  found = os.path.join(os.path.dirname(sys.executable), PROG)
  if os.path.exists(found):
    return found
  return shutil.which(PROG) or "/work/venv/bin/dcae-tf"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
  directory = tmp_path_factory.mktemp("saved_models")
  make_fake_model(str(directory), "fake-hq", *FAKES["fake-hq"],
                  card={"bpp_range": [10.0, 24.0]})
  make_fake_model(str(directory), "fake-lq", *FAKES["fake-lq"])
  return str(directory)


@pytest.fixture
def work(tmp_path, models_dir):
  """tmp_path with saved_models/ (the default --models_dir) inside."""
  os.symlink(models_dir, tmp_path / "saved_models")
  return tmp_path


@pytest.fixture(scope="module")
def codecs(models_dir):
  return {name: export.load_exported(os.path.join(models_dir, name))
          for name in FAKES}


def run(cwd, *args, expect=0):
  env = dict(os.environ)
  env.pop("DCAE_TF_DEBUG", None)
  proc = subprocess.run([dcae_tf_command(), *map(str, args)], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=300,
                        stdin=subprocess.DEVNULL)
  assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
  return proc


def assert_one_line_error(proc, *fragments):
  lines = proc.stderr.splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("dcae-tf: error: "), proc.stderr
  assert "Traceback" not in proc.stderr + proc.stdout
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def save(path, image, **kwargs):
  Image.fromarray(image).save(path, **kwargs)
  return path


def no_temp_files(directory):
  return not [n for n in os.listdir(directory) if n.endswith(".tmp")]


def test_round_trip_with_default_outputs(work):
  image = smooth_image()
  save(work / "a.png", image)
  proc = run(work, "--model", "fake-hq", "compress", "a.png")
  assert "a.png -> a.png.dcae" in proc.stdout and "bpp" in proc.stdout
  assert container.read_header((work / "a.png.dcae").read_bytes())[
      "fingerprint"] == FakeCodec("fake-hq", *FAKES["fake-hq"]).fingerprint
  # The model is found from the bitstream's fingerprint; no --model needed.
  proc = run(work, "decompress", "a.png.dcae")
  assert "a.png.dcae -> a.png.dcae.png" in proc.stdout
  np.testing.assert_array_equal(
      np.asarray(Image.open(work / "a.png.dcae.png")), image)
  assert proc.stderr == ""


def test_explicit_output_and_options_after_command(work, codecs):
  image = smooth_image(seed=1)
  save(work / "b.jpg", image, quality=95)
  proc = run(work, "compress", "--model", "fake-lq", "b.jpg", "out.bin")
  assert "b.jpg -> out.bin" in proc.stdout and "model fake-lq" in proc.stdout
  back = codecs["fake-lq"].decompress((work / "out.bin").read_bytes())
  # What the fake codec makes of b.jpg as the command reads it: its pixels
  # quantised, not merely some image of that size and those levels.
  step = FAKES["fake-lq"][0]
  np.testing.assert_array_equal(
      back, dcae_io.read_image(str(work / "b.jpg")) // step * step)


def test_python_dash_m_and_models_listing(work):
  proc = subprocess.run(
      [sys.executable, "-m", "dcae_tf", "models"], cwd=work,
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert lines[0].split() == ["NAME", "VERSION", "PRESET", "LAMBDA", "METRIC",
                              "BPP"]
  assert lines[1].split() == ["fake-lq", "1", "fake", "0.001", "mse", "-"]
  assert lines[2].split() == ["fake-hq", "1", "fake", "0.05", "mse",
                              "10.000-24.000"]


def test_folder_with_a_bad_file(work):
  folder = work / "photos"
  folder.mkdir()
  for i in range(3):
    save(folder / f"img{i}.png", smooth_image(seed=i))
  (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  (folder / "notes.txt").write_text("ignored: not an image extension")
  out = work / "out"
  proc = run(work, "--model", "fake-hq", "compress", "photos", "out",
             expect=1)
  errors = proc.stderr.splitlines()
  assert len(errors) == 1 and "broken.png" in errors[0], proc.stderr
  assert errors[0].startswith("dcae-tf: error: ")
  assert "compressed 3 of 4 files (1 failed)" in proc.stdout
  assert "mean" in proc.stdout and "bpp" in proc.stdout
  assert sorted(os.listdir(out)) == [f"img{i}.png.dcae" for i in range(3)]
  # A quoted glob works too, and decompresses every bitstream.
  proc = run(work, "decompress", "out/*.dcae", "back")
  assert "decompressed 3 of 3 files (0 failed)" in proc.stdout
  assert len(os.listdir(work / "back")) == 3


def test_target_bpp_picks_by_measured_rate(work, codecs):
  image = smooth_image(seed=3)
  save(work / "c.png", image)
  bpp = {name: 8 * len(codec.compress(image)) / image[..., 0].size
         for name, codec in codecs.items()}
  assert bpp["fake-lq"] < bpp["fake-hq"]
  middle = (bpp["fake-lq"] + bpp["fake-hq"]) / 2
  for target, strict, expected in [(middle + 0.01, False, "fake-hq"),
                                   (middle + 0.01, True, "fake-lq")]:
    args = ["--target_bpp", target] + (["--bpp_strict"] if strict else [])
    proc = run(work, *args, "compress", "c.png", "t.dcae")
    assert f"model {expected}" in proc.stdout, (target, proc.stdout)
    assert container.peek_fingerprint((work / "t.dcae").read_bytes()) == (
        _fingerprint(expected))
  proc = run(work, "--target_bpp", bpp["fake-lq"] / 2, "--bpp_strict",
             "compress", "c.png", "t2.dcae", expect=1)
  assert_one_line_error(proc, "no model reaches")
  assert not (work / "t2.dcae").exists()


_fingerprint = FakeCodec.fingerprint_of


# Failures found without loading TensorFlow or a model: fast.
QUICK_FAILURES = {
    "missing": (["decompress", "nope.dcae", "out.png"],
                ["nope.dcae: no such file"]),
    "foreign": (["decompress", "a.png", "out.png"],
                ["a.png: not a DCAE bitstream"]),
    "truncated": (["decompress", "t.dcae", "out.png"],
                  ["t.dcae: truncated DCAE bitstream"]),
    "old_format": (["decompress", "o.dcae", "out.png"],
                   ["o.dcae: DCAE bitstream format version 1 not supported "
                    f"(this is {container.FORMAT_VERSION})"]),
    "wrong_model": (["--model", "fake-lq", "decompress", "good.dcae",
                     "out.png"],
                    ["good.dcae was made by the model with fingerprint "
                     f"{_fingerprint('fake-hq')}",
                     "--model fake-lq is model fake-lq"]),
    "not_in_models_dir": (["--models_dir", "empty", "decompress",
                           "good.dcae", "out.png"],
                          ["made by the model with fingerprint "
                           f"{_fingerprint('fake-hq')}", "not in empty"]),
    "unknown_model": (["--model", "nope", "compress", "a.png", "out.dcae"],
                      ["unknown model nope", "fake-hq, fake-lq"]),
    "ambiguous_model": (["compress", "a.png", "out.dcae"],
                        ["choose one with --model"]),
    "too_large": (["--model", "fake-hq", "--max_pixels", "100", "compress",
                   "a.png", "out.dcae"], ["more than max_pixels 100"]),
    "gif": (["--model", "fake-hq", "compress", "g.gif", "out.dcae"],
            ["unsupported image format 'GIF'"]),
    "bad_png_output": (["decompress", "good.dcae", "out.jpg"],
                       ["must end with .png"]),
    "usage": (["--bogus", "compress", "a.png"], ["--bogus"]),
    "no_command": ([], ["missing command"]),
}


@pytest.fixture
def bad_inputs(work, codecs):
  image = smooth_image()
  save(work / "a.png", image)
  save(work / "g.gif", image)
  good = codecs["fake-hq"].compress(image)
  (work / "good.dcae").write_bytes(good)
  (work / "t.dcae").write_bytes(good[:container.HEADER_SIZE - 5])
  (work / "o.dcae").write_bytes(container.MAGIC + b"\x01" + good[5:])
  (work / "c.dcae").write_bytes(good[:-3] + bytes([good[-3] ^ 1]) +
                                good[-2:])
  (work / "empty").mkdir()
  return work


@pytest.mark.parametrize("case", sorted(QUICK_FAILURES))
def test_quick_failures(bad_inputs, case):
  args, fragments = QUICK_FAILURES[case]
  proc = run(bad_inputs, *args, expect=1)
  assert_one_line_error(proc, *fragments)
  assert not [n for n in os.listdir(bad_inputs) if n.startswith("out")]
  assert no_temp_files(bad_inputs)


def test_failures_inside_the_model(bad_inputs):
  """Errors raised by the SavedModel graph, or when writing the output."""
  proc = run(bad_inputs, "decompress", "c.dcae", "out.png", expect=1)
  assert_one_line_error(proc, "c.dcae: DCAE bitstream corrupted: checksum "
                        "mismatch")
  (bad_inputs / "d").mkdir()
  proc = run(bad_inputs, "--model", "fake-hq", "compress", "a.png", "d",
             expect=1)
  assert_one_line_error(proc, "d")
  assert os.listdir(bad_inputs / "d") == []
  assert not [n for n in os.listdir(bad_inputs) if n.startswith("out")]
  assert no_temp_files(bad_inputs)


def test_decompress_compare_to_reports_quality(work):
  image = smooth_image(seed=5)
  save(work / "q.png", image)
  run(work, "--model", "fake-lq", "compress", "q.png")
  proc = run(work, "decompress", "q.png.dcae", "q_out.png", "--compare_to",
             "q.png")
  line = proc.stdout.strip().splitlines()[-1]
  assert "bpp" in line and "PSNR" in line and "against q.png" in line, line
  decoded = np.asarray(Image.open(work / "q_out.png")).astype(np.float64)
  mse = np.mean((decoded - image) ** 2)
  assert f"PSNR {10 * np.log10(255 ** 2 / mse):.2f} dB" in line
  # A reference of another size is a clean error.
  save(work / "small.png", smooth_image(8, 8))
  proc = run(work, "decompress", "q.png.dcae", "q2.png", "--compare_to",
             "small.png", expect=1)
  assert_one_line_error(proc, "--compare_to small.png is 8x8")


def test_default_file_picks_the_model_among_several(work):
  save(work / "d.png", smooth_image(seed=6))
  # Two models and no choice: a clear error naming them.
  proc = run(work, "compress", "d.png", expect=1)
  assert_one_line_error(proc, "choose one with --model")
  models_dir = work / "models_copy"
  shutil.copytree(work / "saved_models", models_dir)
  (models_dir / "DEFAULT").write_text("fake-lq\n")
  proc = run(work, "--models_dir", models_dir, "compress", "d.png")
  assert "model fake-lq" in proc.stdout
  # $DCAE_TF_MODELS_DIR is the default --models_dir.
  env_proc = subprocess.run(
      [dcae_tf_command(), "models"], cwd=work / "models_copy",
      env=dict(os.environ, DCAE_TF_MODELS_DIR=str(models_dir)),
      capture_output=True, text=True, timeout=300)
  assert env_proc.returncode == 0 and "fake-lq" in env_proc.stdout


def test_evaluate_subcommand_writes_tables_and_cards(work):
  images = work / "eval_images"
  images.mkdir()
  for i in range(2):
    save(images / f"e{i}.png", smooth_image(64, 64, seed=10 + i))
  cards = {name: work / "saved_models" / name / "model_card.json"
           for name in FAKES}
  # The module's models are shared: put their cards back afterwards.
  saved = {name: path.read_bytes() for name, path in cards.items()
           if path.exists()}
  proc = run(work, "evaluate", "eval_images", "--anchors", "jpeg",
             "--output", "results", "--model_cards")
  for name in ("per_image.csv", "summary.json", "bd.csv", "rd_psnr.png"):
    assert (work / "results" / name).is_file(), proc.stdout
  with open(work / "results" / "per_image.json") as f:
    rows = json.load(f)
  settings = {r["setting"] for r in rows if r["kind"] == "model"}
  assert len(settings) == len(FAKES)
  for name in FAKES:
    card_path = work / "saved_models" / name / "model_card.json"
    with open(card_path) as f:
      card = json.load(f)
    assert card["name"] == name and card["evaluation"]["num_images"] == 2
    model_rows = [r for r in rows if r["setting"].endswith(name)]
    assert card["bpp_range"] == [min(r["bpp"] for r in model_rows),
                                 max(r["bpp"] for r in model_rows)]
    assert "evaluate" in card["evaluation"]["command"]
    # What the weights are stored in and the transforms compute in.
    assert card["weight_dtype"] == "float32"
    assert card["transform_dtype"] == "float32"
    markdown = (work / "saved_models" / name / "MODEL_CARD.md").read_text()
    assert "g_a and g_s compute in float32" in markdown
    os.remove(work / "saved_models" / name / "MODEL_CARD.md")
    if name in saved:
      card_path.write_bytes(saved[name])
    else:
      os.remove(card_path)
