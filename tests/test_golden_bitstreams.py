"""Bitstreams that hold on any CPU: stored symbols, bytes and latents.

The entropy parameters and coding tables are exact (`layers.exact`,
`codec.exact_tables`), so what a decoder computes from a bitstream is the
same integers and latents on every machine. These files were written once
(`write_golden`) and must hold wherever CI runs, whatever its CPU:

* `tiny_seed0_symbols.npz`: the symbol groups (values and table indexes) a
  seeded `tiny` in-process codec coded for a 40x56 image; coding them must
  give `tiny_seed0.dcae` byte for byte (the rANS coder, the exact tables,
  the digest and the container), and decoding that file must give them
  back with the stored latents.
* `shipped_0067.dcae`: the same image through the zoo's default model's
  export (`dcae-tf compress`); decoding it, with the export or with a codec
  of the export's weights, must give the stored latents (and the pixels
  within g_s's float rounding: g_s is not on the exact path).

Only the encoder's g_a and h_a are float: compressing the image again may
round a latent the other way on another CPU, so no test here asks a fresh
`compress` for the stored bytes; the cross-machine matrix
(tests/test_cross_machine.py) decodes fresh files everywhere instead.
"""
import hashlib
import os

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "data", "golden")
SHIPPED = os.path.join(ROOT, "saved_models")
# A shipped model named, not DEFAULT: the zoo's default may change, this
# model's bitstreams may not.
SHIPPED_MODEL = "dcae-small-mse-0067"
SHIPPED_FILE = "shipped_0067.dcae"
# Its decoded pixels where the golden files were written.
SHIPPED_PIXELS = "shipped_0067.png"
TINY_FILE = "tiny_seed0.dcae"
TINY_SYMBOLS = "tiny_seed0_symbols.npz"
HEIGHT, WIDTH = 40, 56
SEED = 0
# sha256 of the decoded latents (float64), and the tiny fingerprint.
SHIPPED_LATENTS_SHA256 = (
    "8f4e15239fc8041925b2521a68eea85d31443d0325af1a93045f0fc0c77707ba")
TINY_FINGERPRINT = "893987a29ffee5c2"
TINY_LATENTS_SHA256 = (
    "03f0899eac589f699daa2cd11366964a1901c9b6e2e0860400e5ca9177091c84")
# g_s rounds differently on other CPUs: decoded pixels may move by a level
# or two from the stored ones.
MAX_PIXEL_DIFFERENCE = 4


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


def shipped_codec():
  """An in-process codec of the shipped export's weights (its fingerprint)."""
  from dcae_tf.codec import build  # pylint: disable=import-outside-toplevel
  from dcae_tf.runtime import weights_source  # pylint: disable=import-outside-toplevel
  model, meta = weights_source.load_model(os.path.join(SHIPPED,
                                                       SHIPPED_MODEL))
  assert meta["same_fingerprint"]
  return build.codec_from_model(model, meta,
                                weight_dtype=meta["weight_dtype"])


def _sha256(array):
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _read(name):
  with open(os.path.join(GOLDEN, name), "rb") as f:
    return f.read()


def _cli(*args):
  from dcae_tf import cli  # pylint: disable=import-outside-toplevel
  return cli.main(cli.parse_args(["dcae-tf", "--models_dir", SHIPPED,
                                  *args]))


def coded_groups(codec, image):
  """The (values, table index) groups `compress` codes for `image`: z,
  then the slices, from the codec's own encoder pass."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=protected-access
  groups = codec._quantise(tf.constant(image)).groups
  return [(v.numpy(), i.numpy()) for v, i in groups]


def _stored_groups():
  with np.load(os.path.join(GOLDEN, TINY_SYMBOLS)) as f:
    return [(f[f"values_{g}"], f[f"index_{g}"])
            for g in range(len(f.files) // 2)]


def write_golden():
  """Writes the golden files (run once, by hand, after a format change)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tiny = tiny_codec()
  image = golden_image()
  groups = coded_groups(tiny, image)
  np.savez_compressed(os.path.join(GOLDEN, TINY_SYMBOLS), **{
      f"{kind}_{g}": a for g, pair in enumerate(groups)
      for kind, a in zip(("values", "index"), pair)})
  data = tiny.compress(tf.constant(image)).numpy()
  with open(os.path.join(GOLDEN, TINY_FILE), "wb") as f:
    f.write(data)
  y_hat, _ = tiny.decompress_with_latents(tf.constant(data))
  print("TINY_FINGERPRINT", tiny.fingerprint)
  print("TINY_LATENTS_SHA256", _sha256(y_hat.numpy()))
  png = os.path.join(GOLDEN, "golden.png")
  Image.fromarray(image).save(png)
  try:
    assert _cli("--model", SHIPPED_MODEL, "compress", png,
                os.path.join(GOLDEN, SHIPPED_FILE)) == 0
  finally:
    os.remove(png)
  shipped = shipped_codec()
  y_hat, decoded = shipped.decompress_with_latents(
      tf.constant(_read(SHIPPED_FILE)))
  print("SHIPPED_LATENTS_SHA256", _sha256(y_hat.numpy()))
  Image.fromarray(decoded.numpy()).save(os.path.join(GOLDEN, SHIPPED_PIXELS))


@pytest.fixture(scope="module")
def tiny():
  return tiny_codec()


def test_stored_symbols_code_to_the_stored_bitstream(tiny):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  assert tiny.fingerprint == TINY_FINGERPRINT
  groups = [(tf.constant(v), tf.constant(i)) for v, i in _stored_groups()]
  # pylint: disable-next=protected-access
  data = tiny._bitstream(groups, HEIGHT, WIDTH).numpy()
  assert data == _read(TINY_FILE)


def test_stored_bitstream_decodes_to_the_stored_symbols_and_latents(tiny):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  # The decoder's symbols pass the stream's digest (or decoding fails)
  # and its latents are the stored ones, bit for bit.
  y_hat, _ = tiny.decompress_with_latents(tf.constant(_read(TINY_FILE)))
  assert _sha256(y_hat.numpy()) == TINY_LATENTS_SHA256


def test_shipped_bitstream_decodes_to_the_stored_latents():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  codec = shipped_codec()  # Held: its tf.functions keep only a weak ref.
  y_hat, decoded = codec.decompress_with_latents(
      tf.constant(_read(SHIPPED_FILE)))
  assert _sha256(y_hat.numpy()) == SHIPPED_LATENTS_SHA256
  # The same latents; the pixels are g_s's, within its rounding.
  assert np.max(np.abs(decoded.numpy().astype(int) - _stored_pixels())) <= (
      MAX_PIXEL_DIFFERENCE)


def _stored_pixels():
  return np.asarray(Image.open(os.path.join(GOLDEN, SHIPPED_PIXELS)), int)


def test_shipped_export_decodes_the_stored_bitstream(tmp_path):
  out = str(tmp_path / "decoded.png")
  src = str(tmp_path / "golden.dcae")
  with open(src, "wb") as f:
    f.write(_read(SHIPPED_FILE))
  assert _cli("decompress", src, out) == 0
  decoded = np.asarray(Image.open(out), int)
  assert np.max(np.abs(decoded - _stored_pixels())) <= MAX_PIXEL_DIFFERENCE
