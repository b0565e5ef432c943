"""Test images shared by the test files."""
import numpy as np


def smooth_image(height=40, width=56, seed=0):
  """A photo-like uint8 RGB image: gradients, a sine and a little noise."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  img = np.stack([xx / max(width, 1), yy / max(height, 1),
                  .5 + .5 * np.sin((xx + yy) / 9.)], -1) * 200
  img += rng.normal(0, 8, img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)
