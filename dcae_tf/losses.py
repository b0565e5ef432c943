"""Rate-distortion loss of DCAE, scaled exactly as the official `train.py`.

The official loss (CompressAI's `RateDistortionLoss`, images in [0, 1]):
    mse:     loss = bpp + lmbda * 255**2 * MSE
    ms-ssim: loss = bpp + lmbda * (1 - MS-SSIM)
so the published lambdas (0.0018 ... 0.05 for MSE, 2.40 ... 60.5 for
MS-SSIM) mean the same thing here. Everything is returned *per example*
(shape [B]) so that the distributed training loop can average over the
global batch with `tf.nn.compute_average_loss`; the batch mean of each equals
the official batch-level value (equal-size crops).
"""
import math

from absl import logging
import tensorflow as tf

METRICS = ("mse", "ms-ssim")
# The official MSE loss multiplies by 255**2 (distortion in 8-bit units).
MSE_SCALE = 255.0 ** 2
# tf.image.ssim_multiscale defaults (Wang et al. 2003 weights, 11x11
# Gaussian window of sigma 1.5), for the loss and the evaluation metric.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_FILTER_SIZE = 11
MS_SSIM_FILTER_SIGMA = 1.5
# PSNR of images in [0, 1].
MAX_VAL = 1.0
# Keeps PSNR finite for a perfect reconstruction.
_MIN_MSE = 1e-10


def min_side_for_scales(num_scales, filter_size=MS_SSIM_FILTER_SIZE):
  """Smallest image side for which `num_scales` MS-SSIM scales fit.

  tf.image.ssim_multiscale pads to even size and halves between scales, so
  the side at the last scale is ceil(side / 2^(num_scales - 1)), which is
  >= filter_size exactly when side > (filter_size - 1) * 2^(num_scales - 1)
  (161 px for the default 5 scales).
  """
  return (filter_size - 1) * 2 ** (num_scales - 1) + 1


def ms_ssim_scales(size, filter_size=MS_SSIM_FILTER_SIZE):
  """How many MS-SSIM scales an image with shortest side `size` supports
  (0 if none)."""
  scales = 0
  while (scales < len(MS_SSIM_WEIGHTS) and
         size >= min_side_for_scales(scales + 1, filter_size)):
    scales += 1
  return scales


def ms_ssim_weights(num_scales):
  """The weights (`power_factors` of tf.image.ssim_multiscale) of
  `num_scales` scales: the standard five, or the first ones renormalised to
  sum to one."""
  if not 1 <= num_scales <= len(MS_SSIM_WEIGHTS):
    raise ValueError(f"num_scales must be in 1..{len(MS_SSIM_WEIGHTS)}"
                     f", got {num_scales}")
  factors = MS_SSIM_WEIGHTS[:num_scales]
  if num_scales < len(MS_SSIM_WEIGHTS):
    total = sum(factors)
    factors = tuple(f / total for f in factors)
  return factors


def ms_ssim_loss_scales(size):
  """How many MS-SSIM scales the loss uses on images with shortest side
  `size`: `ms_ssim_scales`, at least two.

  Raises:
    ValueError: if the image is too small for two scales.
  """
  scales = ms_ssim_scales(size)
  if scales < 2:
    raise ValueError(
        f"MS-SSIM needs images of at least {min_side_for_scales(2)} px per "
        f"side; got {size}")
  return scales


def ms_ssim(x, x_hat, max_val=MAX_VAL):
  """Per-example MS-SSIM; uses fewer scales (logged) for small images."""
  size = min(x.shape[1], x.shape[2])
  if size is None:
    raise ValueError("MS-SSIM needs a static image size (crop size)")
  scales = ms_ssim_loss_scales(size)
  if scales < len(MS_SSIM_WEIGHTS):
    logging.log_first_n(
        logging.WARNING,
        "MS-SSIM on %dpx images uses %d of %d scales (renormalized weights)",
        1, size, scales, len(MS_SSIM_WEIGHTS))
  return tf.image.ssim_multiscale(x, x_hat, max_val,
                                  power_factors=ms_ssim_weights(scales),
                                  filter_size=MS_SSIM_FILTER_SIZE,
                                  filter_sigma=MS_SSIM_FILTER_SIGMA)


def psnr_from_mse(mse, max_val=MAX_VAL):
  return 10.0 * tf.math.log(max_val ** 2 / tf.maximum(mse, _MIN_MSE)) / math.log(
      10.0)


class RateDistortionLoss:
  """bpp + lambda * distortion, per example.

  Call with the input batch and the model output dict; returns a dict of [B]
  tensors: loss, bpp, bpp_y, bpp_z, mse, psnr (+ ms_ssim for "ms-ssim").
  """

  def __init__(self, lmbda, metric="mse"):
    if metric not in METRICS:
      raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    lmbda = float(lmbda)
    if not lmbda > 0 or not math.isfinite(lmbda):
      raise ValueError(f"lmbda must be a positive number, not {lmbda}")
    self.lmbda = lmbda
    self.metric = metric

  def __call__(self, x, out):
    x_hat = tf.cast(out["x_hat"], tf.float32)
    x = tf.cast(x, tf.float32)
    bpp = tf.cast(out["bpp"], tf.float32)
    mse = tf.reduce_mean(tf.math.squared_difference(x, x_hat), axis=(1, 2, 3))
    metrics = {
        "bpp": bpp,
        "bpp_y": tf.cast(out["bpp_y"], tf.float32),
        "bpp_z": tf.cast(out["bpp_z"], tf.float32),
        "mse": mse,
        "psnr": psnr_from_mse(mse),
    }
    if self.metric == "mse":
      metrics["loss"] = bpp + self.lmbda * MSE_SCALE * mse
    else:
      metrics["ms_ssim"] = ms_ssim(x, x_hat)
      metrics["loss"] = bpp + self.lmbda * (1.0 - metrics["ms_ssim"])
    return metrics
