"""Bitstreams stay byte for byte what they were: the restructuring guard.

Two stored bitstreams of one small image in format version 2: one by the
shipped `dcae-small-mse-0035` (its SavedModel, through the `dcae-tf`
command line; every re-export of its weights must give them), one by an
in-process `DCAECodec` of a `tiny` model initialised from a fixed seed.

The tiny codec is checked in two halves, since bitstreams are exact only
on one kind of CPU (docs/bitstream.md): its random weights put thousands
of latents within 1e-4 of a rounding boundary, so another CPU's last-bit
arithmetic moves a symbol or two. The float half -- what the encoder
rounds (z minus its offset, y minus its mean, each scale's position on the
table), stored beside the bitstream -- must match within
`FLOAT_TOLERANCE`: any change of the model's numerics moves it by far
more. The integer half -- the rANS coder, the digest and the container --
must turn the stored values' symbols into the stored bytes exactly, on
any CPU. On a CPU whose arithmetic gives the stored values bit for bit,
`compress` gives the stored bytes and they decode to the stored pixels.
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
SHIPPED_MODEL = "dcae-small-mse-0035"
HEIGHT, WIDTH = 40, 56
SEED = 0
# sha256 of the decoded pixels, and the tiny model's fingerprint.
SHIPPED_DECODED_SHA256 = (
    "47954713bc0301d9ccfad86d30335589ab39283a99c4d1abdd1d2c7e5b67239f")
TINY_FINGERPRINT = "0e6fbba8108df25b"
TINY_DECODED_SHA256 = (
    "de766669c7973cdd1f3a8877b0e869d2421fe7c1e2a1cc63932ee12b7d7c0c6f")
# What the tiny codec's encoder rounds, as the stored bitstream's encoder
# computed it (`encoder_values`; written by `write_tiny_values`).
TINY_VALUES = "tiny_seed0_values.npz"
# Between CPUs and kernel libraries the values differ in their last bits
# (relative 1e-6 or so, more through Winograd convolutions); a change of
# the numerics moves them by orders of magnitude more.
FLOAT_TOLERANCE = 1e-3


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


def test_shipped_model_writes_the_stored_bitstream(tmp_path):
  png = str(tmp_path / "golden.png")
  Image.fromarray(golden_image()).save(png)
  out = str(tmp_path / "golden.dcae")
  assert _cli("--model", SHIPPED_MODEL, "compress", png, out) == 0
  with open(out, "rb") as f:
    assert f.read() == _read("shipped_0035.dcae")
  decoded = str(tmp_path / "golden.png.dcae.png")
  assert _cli("decompress", out, decoded) == 0
  assert _sha256(np.asarray(Image.open(decoded))) == SHIPPED_DECODED_SHA256


def encoder_values(codec, image):
  """What the encoder rounds, before it rounds, as float32 arrays.

  `z`: z minus the prior's quantisation offset, (1, zh, zw, N); `y_i`: y's
  slice i minus its mean, and `scale_i`: the slice's scales as positions on
  the scale table (rounded and clipped, the table index), (1, h, w, M/S).
  Computed from the codec's own pieces, in its slice loop.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dcae_tf import entropy  # pylint: disable=import-outside-toplevel
  config = codec.config
  x = tf.cast(tf.constant(image), tf.float32)[None] / 255.
  y, z = codec._analysis(x)  # pylint: disable=protected-access
  values = {"z": z - codec.z_model.quantization_offset}
  latent_scales, latent_means = codec.model.hyper_synthesis(
      codec.z_model.quantize(z))
  y_slices = tf.split(y, config.num_slices, axis=-1)

  def quantize(i, mu, scale):
    values[f"y_{i}"] = y_slices[i] - mu
    values[f"scale_{i}"] = entropy.scale_position(config, scale)
    return tf.round(y_slices[i] - mu) + mu

  codec.model.slices.run(latent_scales, latent_means, quantize)
  return {k: np.asarray(v, np.float32) for k, v in values.items()}


def bitstream_of_values(codec, values, height, width):
  """The container `compress` writes for the symbols of `values`.

  Integer work only (rounding the stored floats, table indexes, and the
  codec's own rANS coding, digest and container), so the same on every CPU.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dcae_tf import rans  # pylint: disable=import-outside-toplevel
  config = codec.config
  z = tf.constant(values["z"])
  groups = [(tf.reshape(tf.cast(tf.round(z), tf.int32), [-1]),
             rans.batched_index(codec.z_model, tf.shape(z)))]
  for i in range(config.num_slices):
    index = tf.clip_by_value(tf.round(values[f"scale_{i}"]), 0.,
                             config.scale_levels - 1.)
    groups.append((
        tf.reshape(tf.cast(tf.round(values[f"y_{i}"]), tf.int32), [-1]),
        rans.indexed_index(codec.y_model, index)))
  # pylint: disable-next=protected-access
  return codec._bitstream(groups, height, width).numpy()


def _stored_values():
  with np.load(os.path.join(GOLDEN, TINY_VALUES)) as stored:
    return dict(stored)


def write_tiny_values():
  """Stores `encoder_values` of the tiny codec (run on the bitstream's CPU)."""
  np.savez_compressed(os.path.join(GOLDEN, TINY_VALUES),
                      **encoder_values(tiny_codec(), golden_image()))


@pytest.fixture(scope="module")
def tiny():
  return tiny_codec()


def test_in_process_codec_computes_the_stored_values(tiny):
  assert tiny.fingerprint == TINY_FINGERPRINT
  stored = _stored_values()
  values = encoder_values(tiny, golden_image())
  assert sorted(values) == sorted(stored)
  for key, value in values.items():
    np.testing.assert_allclose(value, stored[key], rtol=FLOAT_TOLERANCE,
                               atol=FLOAT_TOLERANCE, err_msg=key)


def test_stored_values_code_to_the_stored_bitstream(tiny):
  data = bitstream_of_values(tiny, _stored_values(), HEIGHT, WIDTH)
  assert data == _read("tiny_seed0.dcae")


def test_in_process_codec_keeps_its_bitstream_on_the_writers_arithmetic(
    tiny):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  stored = _stored_values()
  values = encoder_values(tiny, golden_image())
  if any(not np.array_equal(values[k], stored[k]) for k in stored):
    pytest.skip("this CPU's float arithmetic differs from the stored "
                "bitstream's writer in the last bits (the two halves above "
                "still hold)")
  data = tiny.compress(tf.constant(golden_image())).numpy()
  assert data == _read("tiny_seed0.dcae")
  decoded = tiny.decompress(tf.constant(data)).numpy()
  assert _sha256(decoded) == TINY_DECODED_SHA256
