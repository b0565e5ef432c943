"""Image quality metrics as the learned-compression literature reports them.

Both metrics take two uint8 RGB images of the same shape [H, W, 3] (values
0..255) and compare all three channels, as DCAE's official `eval.py` does:

* PSNR = 10 log10(255^2 / MSE), MSE over every pixel and channel.
  Identical images give +inf.
* MS-SSIM with `tf.image.ssim_multiscale(max_val=255)` and the training
  loss's window and weights (`losses`: Gaussian window 11, sigma 1.5, the
  five weights of Wang et al. 2003), and its dB form -10 log10(1 - MS-SSIM),
  which is what DCAE's paper plots.

Small images. Every MS-SSIM scale halves the image (rounding up) and the
Gaussian window needs at least `losses.MS_SSIM_FILTER_SIZE` pixels in both
directions, so the standard five scales need a shortest side of
10 * 2^4 + 1 = 161 pixels (`losses.min_side_for_scales(5)`; the same limit
as pytorch_msssim, which the official DCAE evaluation uses). For a smaller
image we use the largest number of scales that fits (for a 64 x 96 image:
three) and the first weights of the standard set, renormalised to sum to
one (`losses.ms_ssim_weights`, as training does). That keeps MS-SSIM in
[0, 1] and keeps the coarsest-scale structure term, instead of
failing; the number of scales used is reported next to the value
(`msssim_scales`) and a `SmallImageWarning` is raised once per image size.
An image with a side below 11 pixels has no MS-SSIM: NaN (and a warning).
"""
import math
import warnings

import numpy as np
import tensorflow as tf

from dcae_tf import losses

# Dynamic range of 8-bit images.
MAX_VALUE = 255.0


class SmallImageWarning(UserWarning):
  """An image is too small for the standard five-scale MS-SSIM."""


_warned_shapes = set()


def _check_pair(original, reconstruction):
  original = np.asarray(original)
  reconstruction = np.asarray(reconstruction)
  if original.shape != reconstruction.shape:
    raise ValueError(f"image shapes differ: {original.shape} vs "
                     f"{reconstruction.shape}")
  if original.ndim != 3 or original.shape[-1] != 3:
    raise ValueError(f"expected an RGB image [H, W, 3], got shape "
                     f"{original.shape}")
  for name, img in (("original", original), ("reconstruction", reconstruction)):
    if img.dtype != np.uint8:
      raise ValueError(f"{name} must be uint8 (0..255), got {img.dtype}")
  return original, reconstruction


def mse(original, reconstruction):
  """Mean squared error over all pixels and channels, in 8-bit units."""
  original, reconstruction = _check_pair(original, reconstruction)
  diff = original.astype(np.float64) - reconstruction.astype(np.float64)
  return float(np.mean(np.square(diff)))


def psnr(original, reconstruction):
  """PSNR in dB over RGB of two uint8 images; +inf if they are identical."""
  err = mse(original, reconstruction)
  if err == 0.0:
    return math.inf
  return 10.0 * math.log10(MAX_VALUE ** 2 / err)


def msssim_scales(height, width):
  """Number of MS-SSIM scales an image of this size allows (0 if none)."""
  return losses.ms_ssim_scales(min(height, width))


def msssim_with_scales(original, reconstruction):
  """(MS-SSIM in [0, 1], number of scales used); see module doc for sizes."""
  original, reconstruction = _check_pair(original, reconstruction)
  height, width = original.shape[:2]
  scales = msssim_scales(height, width)
  if (scales < len(losses.MS_SSIM_WEIGHTS)
      and (height, width) not in _warned_shapes):
    _warned_shapes.add((height, width))
    if scales == 0:
      detail = "MS-SSIM is NaN"
    else:
      detail = (f"using {scales} scales with renormalised weights "
                f"(five need a side >= {losses.min_side_for_scales(5)})")
    warnings.warn(f"image {height}x{width} is too small for 5-scale MS-SSIM; "
                  f"{detail}", SmallImageWarning, stacklevel=2)
  if scales == 0:
    return math.nan, 0
  value = tf.image.ssim_multiscale(
      tf.constant(original, tf.float32), tf.constant(reconstruction, tf.float32),
      max_val=MAX_VALUE, power_factors=losses.ms_ssim_weights(scales),
      filter_size=losses.MS_SSIM_FILTER_SIZE,
      filter_sigma=losses.MS_SSIM_FILTER_SIGMA)
  return float(value.numpy()), scales


def msssim(original, reconstruction):
  """MS-SSIM of two uint8 RGB images (NaN if smaller than 11 pixels)."""
  return msssim_with_scales(original, reconstruction)[0]


def msssim_db(value):
  """-10 log10(1 - MS-SSIM): the dB form plotted by DCAE; +inf at 1."""
  if math.isnan(value):
    return math.nan
  if value >= 1.0:
    return math.inf
  return -10.0 * math.log10(1.0 - value)


def bits_per_pixel(num_bytes, height, width):
  """Rate of an encoded image: its real size in bits over its pixel count."""
  if height <= 0 or width <= 0:
    raise ValueError(f"image size must be positive, got {height}x{width}")
  return num_bytes * 8.0 / (height * width)
