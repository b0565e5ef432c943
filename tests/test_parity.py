"""Parity with the official PyTorch DCAE (fixtures in tests/data).

Every stage is fed the *reference* input of that stage and compared with the
reference output (max |diff| <= 1e-4 * max |ref|); the end-to-end forward is
judged by its rate and by the fraction of flipped quantised elements.
Seed, crop and shapes come from the fixture json, so another fixture pair can
be dropped in under tests/data.
"""
import numpy as np
import pytest
import tensorflow as tf

from dcae_tf import convert
from dcae_tf.model import DCAE
from tests import reference

RTOL = 1e-4          # of max |ref|, per stage
BITS_RTOL = 1e-3     # 0.1 % on y and z bits
MAX_FLIP_FRACTION = 1e-3


@pytest.fixture(scope="module")
def fixture():
  return reference.load_fixture()


@pytest.fixture(scope="module")
def model(fixture):
  meta, _ = fixture
  m = DCAE("paper").build_weights()
  convert.load_official_weights(m, reference.reference_state_dict(meta["seed"]))
  return m


def assert_close(name, got, ref):
  got, ref = np.asarray(got), np.asarray(ref)
  assert got.shape == ref.shape, (name, got.shape, ref.shape)
  err = np.abs(got - ref).max()
  bound = RTOL * np.abs(ref).max()
  assert err <= bound, f"{name}: max|diff| {err:.3g} > {bound:.3g}"


def test_fixture_shapes_match_json(fixture):
  meta, arrays = fixture
  for name, shape in meta["arrays"].items():
    assert list(arrays[name].shape) == shape, name


def test_transforms(model, fixture):
  _, ref = fixture
  assert_close("y", model.g_a(ref["x"]), ref["y"])
  assert_close("z", model.h_a(ref["y"]), ref["z"])
  scales, means = model.hyper_synthesis(ref["z_hat"])
  assert_close("latent_scales", scales, ref["latent_scales"])
  assert_close("latent_means", means, ref["latent_means"])
  assert_close("x_hat", model.g_s(ref["y_hat"]), ref["x_hat"])


def test_z_quantisation_and_likelihood(model, fixture):
  _, ref = fixture
  np.testing.assert_array_equal(model.hyperprior.offset.numpy(),
                                ref["z_medians"])
  z_hat = model.hyperprior.quantize(tf.constant(ref["z"]))
  assert_close("z_hat", z_hat, ref["z_hat"])
  assert_close("z_likelihoods", model.hyperprior.likelihood(ref["z_hat"]),
               ref["z_likelihoods"])


def test_slice_networks(model, fixture):
  _, ref = fixture
  c = model.config.slice_channels
  previous = []
  for i in range(model.config.num_slices):
    support, dict_info = model.slices.context(
        i, ref["latent_scales"], ref["latent_means"], previous)
    assert_close(f"dict_info_{i}", dict_info, ref[f"dict_info_{i}"])
    mu, scale = model.slices.gaussian_params(i, support)
    assert_close(f"mu_{i}", mu, ref[f"mu_{i}"])
    assert_close(f"scale_{i}", scale, ref[f"scale_{i}"])
    y_hat_i = ref["y_hat"][..., i * c:(i + 1) * c]
    lrp = model.slices.lrp(i, support, y_hat_i - ref[f"lrp_{i}"])
    assert_close(f"lrp_{i}", lrp, ref[f"lrp_{i}"])
    previous.append(tf.constant(y_hat_i))


def test_y_likelihoods(model, fixture):
  from dcae_tf import entropy  # pylint: disable=import-outside-toplevel
  _, ref = fixture
  c = model.config.slice_channels
  liks = []
  for i in range(model.config.num_slices):
    y_q = ref["y_hat"][..., i * c:(i + 1) * c] - ref[f"lrp_{i}"]
    liks.append(entropy.y_likelihood(model.config, y_q, ref[f"mu_{i}"],
                                      ref[f"scale_{i}"]))
  assert_close("y_likelihoods", tf.concat(liks, -1), ref["y_likelihoods"])


def test_end_to_end_forward(model, fixture):
  meta, ref = fixture
  out = model(ref["x"], training=False, return_intermediates=True)
  pixels = meta["height"] * meta["width"]
  for part in ("y", "z"):
    ref_bits = -np.log2(ref[f"{part}_likelihoods"].astype(np.float64)).sum()
    got = float(out[f"bits_{part}"][0])
    assert abs(got - ref_bits) <= BITS_RTOL * ref_bits, (part, got, ref_bits)
    assert abs(float(out[f"bpp_{part}"][0]) - meta[f"bpp_{part}_estimated"]) \
        <= BITS_RTOL * meta[f"bpp_{part}_estimated"]
  assert abs(float(out["bpp"][0]) * pixels - float(
      out["bits_y"][0] + out["bits_z"][0])) < 1.
  # Quantised symbols: round(y - mu) per slice, ours against the reference.
  c = model.config.slice_channels
  flips = 0
  for i in range(model.config.num_slices):
    sl = slice(i * c, (i + 1) * c)
    ours = np.round(out["y"].numpy()[..., sl] - out[f"mu_{i}"].numpy())
    theirs = np.round(ref["y"][..., sl] - ref[f"mu_{i}"])
    flips += int((ours != theirs).sum())
  assert flips <= MAX_FLIP_FRACTION * ref["y"].size, flips
  # Reconstruction of the whole forward.
  assert_close("x_hat (end to end)", out["x_hat"], ref["x_hat"])


def test_transposed_crop_gives_similar_rate(model, fixture):
  """Sanity (not parity): the 384x256 transpose costs about the same."""
  _, ref = fixture
  x = ref["x"]
  xt = np.transpose(x, (0, 2, 1, 3))
  bpp = float(model(x, training=False)["bpp"][0])
  bpp_t = float(model(xt, training=False)["bpp"][0])
  assert model(xt, training=False)["x_hat"].shape == xt.shape
  assert abs(bpp_t - bpp) <= .05 * bpp, (bpp, bpp_t)
