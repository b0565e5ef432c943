"""A stand-in codec with the DCAECodec interface, for export/serving tests.

PNG is lossless and deterministic, so round trips are exact and every code
path (export, load in a fresh process, gRPC) can be checked bit for bit
without the real model. A corrupt "bitstream" makes decode_png raise
tf.errors.InvalidArgumentError, as a corrupt DCAE bitstream does.
"""
import numpy as np
import tensorflow as tf

FAKE_NAME = "fake-png"
FAKE_FINGERPRINT = "0123456789abcdef"


class FakePngCodec(tf.Module):
  """compress = PNG encode, decompress = PNG decode; metadata like DCAECodec."""

  def __init__(self, name=FAKE_NAME, fingerprint=FAKE_FINGERPRINT):
    super().__init__(name="fake_png_codec")
    self.metadata = {
        "name": name, "fingerprint": fingerprint, "preset": "fake",
        "lmbda": None, "metric": "mse", "format_version": 1,
    }

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def compress(self, image):
    return tf.io.encode_png(image)

  @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
  def decompress(self, bitstream):
    return tf.io.decode_png(bitstream, channels=3)


def make_image(height=24, width=40, seed=0):
  """A small deterministic uint8 image with structure (gradient + noise)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  base = np.stack([yy * 5, xx * 3, (yy + xx) * 2], axis=-1)
  noise = rng.integers(0, 32, size=(height, width, 3))
  return ((base + noise) % 256).astype(np.uint8)



def make_codec(kind, name=None):
  """"fake" -> FakePngCodec; "tiny" -> DCAECodec over a random tiny DCAE."""
  if kind == "fake":
    return FakePngCodec(name=name or FAKE_NAME)
  if kind == "tiny":
    # pylint: disable=import-outside-toplevel
    from dcae_tf.codec import DCAECodec
    from dcae_tf.model import DCAE
    return DCAECodec(DCAE("tiny").build_weights(), name=name or "tiny-random")
  raise ValueError(f"unknown codec kind {kind!r}")
