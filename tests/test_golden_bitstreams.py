"""Bitstreams stay byte for byte what they were: the restructuring guard.

Two stored bitstreams of one small image in format version 2: one by the
shipped default model (its SavedModel, through the `dcae-tf` command line),
one by an in-process `DCAECodec` of a `tiny` model initialised from a fixed
seed (the model code as it computes now: any change of its numerics, of
the rANS coder or of the container shows up as other bytes or another
fingerprint). The tiny codec's decoded pixels are older than the format:
the coder changed what is stored, not what is decoded. The shipped
model's were renewed with its re-export (format 2), whose graph computes
with this code's numerics (its format-1 export's graph was older; the
images differ by at most one level).
"""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "data", "golden")
SHIPPED = os.path.join(ROOT, "saved_models")
HEIGHT, WIDTH = 40, 56
SEED = 0
# sha256 of the decoded pixels, and the tiny model's fingerprint.
SHIPPED_DECODED_SHA256 = (
    "47954713bc0301d9ccfad86d30335589ab39283a99c4d1abdd1d2c7e5b67239f")
TINY_FINGERPRINT = "0e6fbba8108df25b"
TINY_DECODED_SHA256 = (
    "de766669c7973cdd1f3a8877b0e869d2421fe7c1e2a1cc63932ee12b7d7c0c6f")


def golden_image():
  """Gradients plus a sine and a fixed noise pattern: photo-like, 40x56."""
  rng = np.random.RandomState(SEED)
  yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
  img = np.stack([xx / WIDTH, yy / HEIGHT,
                  .5 + .5 * np.sin((xx + yy) / 9.)], -1) * 200
  img += rng.normal(0, 8, img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


def tiny_codec():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dcae_tf.codec import DCAECodec  # pylint: disable=import-outside-toplevel
  from dcae_tf.model import DCAE  # pylint: disable=import-outside-toplevel
  tf.keras.utils.set_random_seed(SEED)
  return DCAECodec(DCAE("tiny").build_weights(), name="golden-tiny")


def _sha256(array):
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _read(name):
  with open(os.path.join(GOLDEN, name), "rb") as f:
    return f.read()


def _cli(*args):
  from dcae_tf import cli  # pylint: disable=import-outside-toplevel
  return cli.main(cli.parse_args(["dcae-tf", "--models_dir", SHIPPED,
                                  *args]))


def test_shipped_default_model_writes_the_stored_bitstream(tmp_path):
  png = str(tmp_path / "golden.png")
  Image.fromarray(golden_image()).save(png)
  out = str(tmp_path / "golden.dcae")
  assert _cli("compress", png, out) == 0
  with open(out, "rb") as f:
    assert f.read() == _read("shipped_default.dcae")
  decoded = str(tmp_path / "golden.png.dcae.png")
  assert _cli("decompress", out, decoded) == 0
  assert _sha256(np.asarray(Image.open(decoded))) == SHIPPED_DECODED_SHA256


@pytest.fixture(scope="module")
def tiny():
  return tiny_codec()


def test_in_process_codec_keeps_its_fingerprint_and_bitstream(tiny):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  assert tiny.fingerprint == TINY_FINGERPRINT
  data = tiny.compress(tf.constant(golden_image())).numpy()
  assert data == _read("tiny_seed0.dcae")
  decoded = tiny.decompress(tf.constant(data)).numpy()
  assert _sha256(decoded) == TINY_DECODED_SHA256
