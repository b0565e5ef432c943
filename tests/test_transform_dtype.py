"""bfloat16 transforms (codec.transform_dtype): g_a and g_s in bfloat16,
everything that decides the entropy parameters in float32."""
import contextlib
import math
import types

import numpy as np
import pytest
import tensorflow as tf
# What building views once replaced for the whole process.
from keras.src.mixed_precision import autocast_variable

from dcae_tf.codec import core
from dcae_tf.codec import metadata as metadata_lib
from dcae_tf.codec import transform_dtype
from dcae_tf.codec import weights
from dcae_tf.model import DCAE
from dcae_tf.model import pad_to_multiple
from tests import watched_threads

# The bfloat16 codec's pixels against the float32 codec's for the same
# latents: the PSNR between the two decodes. The tiny model's random g_s is
# far rougher than a trained one (72 % of its outputs clip; single pixels
# differ by 10-29 grey levels), so this is no place for the shipped models'
# accuracy (worst |dPSNR| to the original 0.032 dB, docs/performance.md).
# Measured 2026-12-07 on an AVX-512 CPU without AVX512_BF16: 42.7-46.3 dB
# over five random initialisations and four images; g_s with any one of its
# 59 kernels zeroed 6-26 dB, another initialisation's g_s 4.5 dB.
BFLOAT16_MIN_PSNR_DB = 36.0
IMAGE_SHAPE = (64, 96, 3)


@pytest.fixture(name="codecs", scope="module")
def fixture_codecs():
  """float32 and bfloat16 codecs of one tiny model, float16 storage."""
  model = weights.with_weight_dtype(DCAE("tiny").build_weights(),
                                    metadata_lib.FLOAT16)
  return (core.DCAECodec(model),
          core.DCAECodec(model, transform_dtype=metadata_lib.BFLOAT16))


def test_same_weights_once_same_fingerprint_dtype_in_metadata(codecs):
  f32, bf16 = codecs
  # The views hold the model's variables: nothing added, nothing copied
  # (each codec has its own coding-table variables besides).
  model_ids = {id(v) for v in f32.model.variables}
  assert bf16.model is f32.model
  assert len(bf16.variables) == len(f32.variables)
  assert sum(id(v) in model_ids for v in bf16.variables) == len(model_ids)
  assert bf16.fingerprint == f32.fingerprint
  assert f32.metadata["transform_dtype"] == "float32"
  assert bf16.metadata["transform_dtype"] == "bfloat16"
  views = bf16._transforms  # pylint: disable=protected-access
  g_a, g_s = views.g_a, views.g_s
  # Convolutions, attention and MLPs compute in bfloat16 ...
  block = g_s.steps[1].blocks[0]
  assert block.msa.compute_dtype == block.mlp.compute_dtype == "bfloat16"
  assert g_a.steps[2].conv.compute_dtype == "bfloat16"
  assert g_s.steps[-1].res[-1].conv2.compute_dtype == "bfloat16"
  assert g_s.steps[1].conv.compute_dtype == "bfloat16"
  # ... the residual stream between them stays float32: the containers,
  # residual scales and layer norms compute in float32 ...
  for layer in (g_a, g_s, g_s.steps[1], block, block.ln1, block.res_scale_1,
                g_s.steps[-1].res[-1]):
    assert layer.compute_dtype == "float32", layer.name
  # ... as do the convolutions reading the image or y_hat and writing y or
  # the image (before rounding either).
  assert g_a.steps[0].conv.compute_dtype == g_a.steps[-1].compute_dtype
  assert g_s.steps[0].compute_dtype == g_s.steps[-1].conv.compute_dtype
  assert g_a.steps[-1].compute_dtype == g_s.steps[0].compute_dtype == "float32"
  # g_a's first steps (at 1/2 resolution) compute wholly in float32.
  assert transform_dtype.FLOAT32_ANALYSIS_STEPS == 2
  first = g_a.steps[1].blocks[0]
  assert first.msa.compute_dtype == first.mlp.compute_dtype == "float32"
  assert g_a.steps[0].res[0].conv2.compute_dtype == "float32"
  y = g_a(tf.zeros((1, 64, 64, 3)))
  assert y.dtype == tf.float32 and g_s(y).dtype == tf.float32
  assert g_s.steps[1](g_s.steps[0](y)).dtype == tf.float32
  with pytest.raises(ValueError, match="transform dtype must be one of"):
    transform_dtype.check_transform_dtype("float16")


def _check_decodes_like_float32(bfloat16_pixels, float32_pixels):
  """bfloat16 pixels within `BFLOAT16_MIN_PSNR_DB` of the float32 ones of
  the same latents, and not all equal to them (else nothing computed in
  bfloat16)."""
  a = np.asarray(bfloat16_pixels, np.float64)
  b = np.asarray(float32_pixels, np.float64)
  assert a.shape == b.shape == IMAGE_SHAPE, (a.shape, b.shape)
  mse = np.mean(np.square(a - b))
  assert mse > 0, "the bfloat16 decode is the float32 one, bit for bit"
  psnr = 10 * math.log10(255 ** 2 / mse)
  assert psnr >= BFLOAT16_MIN_PSNR_DB, (
      f"bfloat16 vs float32 decode: {psnr:.2f} dB < {BFLOAT16_MIN_PSNR_DB} "
      f"dB (max |difference| {np.max(np.abs(a - b)):.0f})")


def _image():
  rng = np.random.default_rng(0)
  return tf.constant(rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8))


def _decode(g_s, y_hat):
  """The image a codec whose g_s is `g_s` decodes `y_hat` to (its own
  `_to_image`, with `g_s` called directly instead of as a shared graph)."""
  codec = types.SimpleNamespace(_share=lambda name, fn: fn,
                                _transforms=types.SimpleNamespace(g_s=g_s))
  return core.DCAECodec._to_image(  # pylint: disable=protected-access
      codec, y_hat, IMAGE_SHAPE[0], IMAGE_SHAPE[1]).numpy()


@contextlib.contextmanager
def _zeroed(variable):
  """`variable` (the model's own, which a bfloat16 view reads) all zeros."""
  saved = variable.numpy()
  variable.assign(np.zeros_like(saved))
  try:
    yield
  finally:
    variable.assign(saved)


def _wrong_g_s(kind, model):
  """A bfloat16 g_s gone wrong."""
  g_s = transform_dtype.transform_views(model, metadata_lib.BFLOAT16).g_s
  if kind == "float32 g_s":
    return model.g_s
  if kind == "black image":
    return lambda y_hat: tf.zeros_like(g_s(y_hat))
  if kind == "another model's weights":
    other = weights.with_weight_dtype(DCAE("tiny").build_weights(),
                                      metadata_lib.FLOAT16)
    return transform_dtype.transform_views(other,
                                           metadata_lib.BFLOAT16).g_s
  # One weight not loaded: one MLP of the middle stage adds nothing (the
  # least harmful zeroed kernel measured, 24-26 dB).
  (kernel,) = [v for v in model.g_s.weights
               if "stage1/layers_1/mlp/fc2/kernel" in v.name]
  def g_s_with_a_zeroed_kernel(y_hat):
    with _zeroed(kernel):
      return g_s(y_hat)
  return g_s_with_a_zeroed_kernel


@pytest.mark.parametrize("wrong", [
    None, "float32 g_s", "black image", "another model's weights",
    "one MLP zeroed"])
def test_bfloat16_g_s_decodes_like_float32(codecs, wrong):
  """The bfloat16 codec's g_s, from the latents of an image, decodes to
  the float32 codec's pixels within the bound; each wrong g_s fails."""
  f32, bf16 = codecs
  x = tf.cast(_image(), tf.float32)[None] / 255.
  y_hat = tf.round(f32.model.g_a(pad_to_multiple(x, f32.config.pad_multiple)))
  float32_pixels = _decode(f32.model.g_s, y_hat)
  if wrong is None:
    g_s = bf16._transforms.g_s  # pylint: disable=protected-access
    _check_decodes_like_float32(_decode(g_s, y_hat), float32_pixels)
    return
  g_s = _wrong_g_s(wrong, f32.model)
  with pytest.raises(AssertionError,
                     match="bit for bit" if wrong == "float32 g_s" else "dB <"):
    _check_decodes_like_float32(_decode(g_s, y_hat), float32_pixels)


@pytest.mark.slow  # Traces both codecs' graphs: minutes on a loaded CPU.
def test_bfloat16_round_trip_is_exact_and_close_to_float32(codecs):
  f32, bf16 = codecs
  data, y_hat, reconstruction = bf16.compress_with_reconstruction(_image())
  # decode == the encoder's reconstruction: the decoder runs the same g_s.
  np.testing.assert_array_equal(bf16.decompress(data).numpy(),
                                reconstruction.numpy())
  # The entropy parameters are float32 arithmetic on both sides: a float32
  # codec of the same weights decodes the same latents ...
  decoded_y, float32_pixels = f32.decompress_with_latents(data)
  np.testing.assert_array_equal(decoded_y.numpy(), y_hat.numpy())
  # ... to pixels the bfloat16 ones are close to (what a wrong bfloat16 g_s
  # gives: test_bfloat16_g_s_decodes_like_float32).
  _check_decodes_like_float32(reconstruction.numpy(), float32_pixels.numpy())


def _process_wide_state():
  return (tf.keras.mixed_precision.global_policy().name,
          autocast_variable.create_autocast_variable)


def _views_in_threads(model, threads):
  """The bfloat16 views of `model` built by `threads` threads at once, and
  every global Keras policy and AutoCastVariable factory a watching thread
  saw meanwhile."""
  return watched_threads.run_watched(
      [lambda: transform_dtype.transform_views(model, metadata_lib.BFLOAT16)]
      * threads, _process_wide_state)


def test_views_change_nothing_process_wide_and_build_in_threads(codecs):
  """Building bfloat16 views sets no global Keras policy and replaces no
  Keras function, not even while they are built, so two threads build
  them at once into views that compute as one built alone."""
  f32, bf16 = codecs
  before = _process_wide_state()
  views, seen = _views_in_threads(f32.model, 2)
  assert seen == {before}
  assert _process_wide_state() == before
  x = pad_to_multiple(tf.cast(_image(), tf.float32)[None] / 255.,
                      f32.config.pad_multiple)
  alone = bf16._transforms  # pylint: disable=protected-access
  y_hat = tf.round(alone.g_a(x))
  for view in views:
    assert view.g_a.steps[2].conv.compute_dtype == "bfloat16"
    assert view.g_a.steps[0].conv.compute_dtype == "float32"
    np.testing.assert_array_equal(view.g_a(x).numpy(), alone.g_a(x).numpy())
    np.testing.assert_array_equal(view.g_s(y_hat).numpy(),
                                  alone.g_s(y_hat).numpy())
