"""Rate-distortion loss, learning-rate schedule and training config checks."""
import math

import numpy as np
import pytest
import tensorflow as tf

from dcae_tf import losses
from dcae_tf import training
from tests import msssim_reference
from tests.images import smooth_image


def _out(x_hat, bpp_y, bpp_z):
  b = x_hat.shape[0]
  return {"x_hat": x_hat, "bpp_y": tf.fill([b], bpp_y),
          "bpp_z": tf.fill([b], bpp_z), "bpp": tf.fill([b], bpp_y + bpp_z)}


def test_mse_loss_has_the_official_scaling():
  x = tf.random.stateless_uniform([2, 32, 32, 3], seed=[1, 2])
  x_hat = x + 0.1
  metrics = losses.RateDistortionLoss(0.0067, "mse")(x, _out(x_hat, 0.5, 0.1))
  for v in metrics.values():
    assert v.shape == (2,)
  np.testing.assert_allclose(metrics["mse"], 0.01, rtol=1e-4)
  np.testing.assert_allclose(metrics["bpp"], 0.6, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss"], 0.6 + 0.0067 * 255**2 * 0.01,
                             rtol=1e-4)
  np.testing.assert_allclose(metrics["psnr"], 20.0, rtol=1e-4)
  assert "ms_ssim" not in metrics


def test_ms_ssim_loss_full_scales_at_256():
  x = tf.random.stateless_uniform([2, 256, 256, 3], seed=[3, 4])
  x_hat = tf.clip_by_value(
      x + 0.05 * tf.random.stateless_normal(x.shape, seed=[5, 6]), 0, 1)
  metrics = losses.RateDistortionLoss(8.73, "ms-ssim")(x, _out(x_hat, .3, .0))
  expected = tf.image.ssim_multiscale(x, x_hat, 1.0)
  np.testing.assert_allclose(metrics["ms_ssim"], expected, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss"], 0.3 + 8.73 * (1 - expected),
                             rtol=1e-5)


def test_ms_ssim_small_crops_use_fewer_scales():
  assert losses.ms_ssim_scales(256) == 5
  assert losses.ms_ssim_scales(161) == 5
  assert losses.ms_ssim_scales(160) == 4
  assert losses.ms_ssim_scales(128) == 4
  assert losses.ms_ssim_scales(64) == 3
  assert losses.ms_ssim_loss_scales(128) == 4
  factors = losses.ms_ssim_weights(4)
  assert len(factors) == 4 and math.isclose(sum(factors), 1.0)
  x = tf.random.stateless_uniform([1, 128, 128, 3], seed=[7, 8])
  np.testing.assert_allclose(losses.ms_ssim(x, x), [1.0], rtol=1e-6)
  with pytest.raises(ValueError, match="at least 21 px"):
    losses.ms_ssim_loss_scales(16)


def _check_ms_ssim_loss_against_references():
  """The loss's per-example MS-SSIM on 256 (5 scales), 128, 64 and 32 px
  crops equals tf.image.ssim_multiscale under the renormalised first
  weights of Wang et al. (written out in tests/msssim_reference.py) and
  the float64 MS-SSIM written from the paper."""
  for size, scales in ((256, 5), (128, 4), (64, 3), (32, 2)):
    x = tf.constant(np.stack([smooth_image(size, size, seed=s)
                              for s in (1, 2)]), tf.float32) / 255.
    x_hat = tf.clip_by_value(
        x + 0.1 * tf.random.stateless_normal(x.shape, seed=[5, 6]), 0, 1)
    weights = msssim_reference.reduced_weights(scales)
    value = losses.ms_ssim(x, x_hat).numpy()
    expected = tf.image.ssim_multiscale(x, x_hat, 1.0,
                                        power_factors=weights).numpy()
    np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=size)
    expected = [msssim_reference.ms_ssim(a, b, weights, 1.0)
                for a, b in zip(x.numpy(), x_hat.numpy())]
    # float32 against float64: 3e-6 measured.
    np.testing.assert_allclose(value, expected, rtol=1e-5, err_msg=size)


@pytest.mark.parametrize("wrong", [None, *msssim_reference.WRONG_WEIGHTS])
def test_ms_ssim_loss_matches_references_at_every_scale_count(wrong,
                                                              monkeypatch):
  """The check passes for the loss and fails for each wrong weighting."""
  if wrong is None:
    _check_ms_ssim_loss_against_references()
    return
  monkeypatch.setattr(losses, "ms_ssim_weights",
                      msssim_reference.WRONG_WEIGHTS[wrong])
  with pytest.raises(AssertionError):
    _check_ms_ssim_loss_against_references()


def test_ms_ssim_is_differentiable():
  x = tf.random.stateless_uniform([1, 128, 128, 3], seed=[1, 1])
  x_hat = tf.Variable(x * 0.8)
  loss_fn = losses.RateDistortionLoss(1.0, "ms-ssim")
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(loss_fn(x, _out(x_hat, .1, .1))["loss"])
  grad = tape.gradient(loss, x_hat)
  assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).max() > 0


@pytest.mark.parametrize("lmbda,metric,message", [
    (0.01, "l1", "metric must be"), (0.0, "mse", "positive"),
    (float("nan"), "mse", "positive"), (-1.0, "ms-ssim", "positive")])
def test_bad_loss_arguments(lmbda, metric, message):
  with pytest.raises(ValueError, match=message):
    losses.RateDistortionLoss(lmbda, metric)


def test_step_decay_schedule():
  cfg = training.TrainConfig(model_path="x", lmbda=0.01, train_glob="x",
                             steps=1000)
  assert cfg.decay_step == 920  # epoch 46 of 50
  schedule = training.StepDecay(1e-4, cfg.decay_step)
  assert float(schedule(919)) == pytest.approx(1e-4)
  assert float(schedule(920)) == pytest.approx(1e-5)
  assert schedule.value(919) == pytest.approx(1e-4)
  assert schedule.value(5000) == pytest.approx(1e-5)
  cfg.lr_decay_step = 0
  assert cfg.decay_step is None
  assert float(training.StepDecay(1e-4, None)(10**9)) == pytest.approx(1e-4)


@pytest.mark.parametrize("changes,message", [
    ({"train_glob": None}, "exactly one of train_glob or tfds_dataset"),
    ({"tfds_dataset": "x"}, "exactly one"),
    ({"metric": "psnr"}, "metric must be"),
    ({"strategy": "tpu"}, "strategy must be"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"preset": "huge"}, "unknown preset"),
    ({"small_images": "crop"}, "small_images must be"),
    ({"metric": "ms-ssim", "crop_size": 16}, "MS-SSIM needs"),
    ({"clip_norm": -1.0}, "clip_norm"),
    ({"max_val_images": 0}, "max_val_images must be >= 1"),
    ({"val_batch_size": 0}, "val_batch_size must be >= 1"),
])
def test_bad_training_config(changes, message):
  cfg = training.TrainConfig(model_path="x", lmbda=0.01, train_glob="x")
  for k, v in changes.items():
    setattr(cfg, k, v)
  with pytest.raises(ValueError, match=message):
    cfg.validate()
