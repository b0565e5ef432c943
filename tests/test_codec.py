"""Real compression: exact round trips and rejection of foreign bitstreams."""
import numpy as np
import pytest
import tensorflow as tf

from dcae_tf import bitstream
from dcae_tf.codec import DCAECodec
from dcae_tf.model import DCAE

SIZES = [(1, 1), (7, 13), (64, 64), (255, 257), (512, 768), (300, 200)]


def smooth_image(h, w, seed=0):
  """A photo-like test image: gradients plus a few shapes plus noise."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  img = np.stack([xx / max(w, 1), yy / max(h, 1),
                  .5 + .5 * np.sin((xx + yy) / 9.)], -1) * 200
  img += rng.normal(0, 8, img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def codec():
  tf.random.set_seed(0)
  return DCAECodec(DCAE("tiny").build_weights(), name="test-tiny")


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_is_exact(codec, size):
  image = smooth_image(*size, seed=size[0])
  data, y_hat_enc, recon = codec.compress_with_reconstruction(image)
  y_hat_dec, decoded = codec.decompress_with_latents(data)
  # The decoder's latents are the encoder's, bit for bit.
  np.testing.assert_array_equal(y_hat_dec.numpy(), y_hat_enc.numpy())
  decoded = decoded.numpy()
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, recon.numpy())


def test_public_signatures_match_the_testing_entry_points(codec):
  image = smooth_image(70, 90, seed=5)
  data, _, recon = codec.compress_with_reconstruction(image)
  assert codec.compress(image).numpy() == data.numpy()
  np.testing.assert_array_equal(codec.decompress(data).numpy(), recon.numpy())


def test_header_is_self_describing(codec):
  data = codec.compress(smooth_image(33, 47)).numpy()
  header = bitstream.read_header(data)
  assert header["model_name"] == "test-tiny"
  assert header["fingerprint"] == codec.fingerprint
  assert (header["height"], header["width"]) == (33, 47)
  assert header["format_version"] == bitstream.FORMAT_VERSION


def test_other_model_is_refused_by_name(codec):
  other = DCAECodec(DCAE("tiny").build_weights(), name="other-model")
  data = other.compress(smooth_image(16, 16))
  with pytest.raises(tf.errors.InvalidArgumentError, match="other-model"):
    codec.decompress(data)


def test_fingerprint_tracks_weights():
  model = DCAE("tiny").build_weights()
  a = DCAECodec(model).fingerprint
  model.slices.dictionary.assign_add(tf.ones_like(model.slices.dictionary))
  assert DCAECodec(model).fingerprint != a


def test_corrupted_payload_is_reported(codec):
  data = bytearray(codec.compress(smooth_image(40, 40)).numpy())
  data[-5] ^= 0x10
  with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt"):
    codec.decompress(bytes(data))


def test_pixel_limit_is_enforced():
  small = DCAECodec(DCAE("tiny").build_weights(), max_pixels=100)
  with pytest.raises(tf.errors.InvalidArgumentError, match="pixel limit"):
    small.compress(np.zeros((11, 10, 3), np.uint8))


def test_empty_image_is_refused(codec):
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1"):
    codec.compress(np.zeros((0, 5, 3), np.uint8))
