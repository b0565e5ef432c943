"""MS-SSIM written out from its definition, independently of tf.image.

Wang, Simoncelli and Bovik, "Multi-scale structural similarity for image
quality assessment" (2003): at scales 0 .. M-1 (each a 2x2 average of the
one before) the contrast-structure term cs_j, and at the coarsest scale the
whole SSIM (luminance times cs); MS-SSIM = prod_j cs_j^w_j * ssim_M-1^w_M-1,
per channel, then averaged over channels. SSIM's statistics are taken under
an 11x11 Gaussian window (sigma 1.5) at every position where it fits
("valid"), with C1 = (0.01 L)^2 and C2 = (0.03 L)^2. An odd side is
extended by repeating its last row or column before halving (what
tf.image.ssim_multiscale does), and negative terms count as 0.

`reduced_weights(n)`: the paper's five weights, or for n < 5 the first n
of them rescaled to sum to one (this project's MS-SSIM for images too small for five scales,
docs: dcae_tf/evaluation/metrics.py); the weights are written out here
again, not imported, so a wrong table in the library shows up.

float64 numpy throughout: the library's float32 values agree to ~1e-6.
"""
import numpy as np

# Wang et al. 2003, Table/Sec. 3.2: beta_1..beta_5 (finest first).
WANG_2003_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _renormalised(weights):
  return tuple(w / sum(weights) for w in weights)


# Reduced-scale weightings that are not the documented one (the first
# weights of the standard five, renormalised), num_scales -> weights: the
# negative cases of the metric's and the loss's MS-SSIM tests, each of
# which must be caught.
WRONG_WEIGHTS = {
    "coarsest scales' weights": lambda n: _renormalised(
        WANG_2003_WEIGHTS[-n:]),
    "not renormalised": lambda n: WANG_2003_WEIGHTS[:n],
    "equal weights": lambda n: (1.0 / n,) * n,
}


def reduced_weights(num_scales):
  """The five weights as published (they sum to 1.0001, and every
  implementation uses them so), or the first `num_scales`, summing to one."""
  if num_scales == len(WANG_2003_WEIGHTS):
    return WANG_2003_WEIGHTS
  first = np.array(WANG_2003_WEIGHTS[:num_scales], np.float64)
  return tuple(first / first.sum())


def _gaussian():
  taps = np.arange(WINDOW, dtype=np.float64) - (WINDOW - 1) / 2
  g = np.exp(-taps ** 2 / (2 * SIGMA ** 2))
  return g / g.sum()


def _blur(x):
  """Gaussian-weighted local mean of a [H, W] array, valid positions only."""
  g = _gaussian()
  rows = sum(g[k] * x[k:x.shape[0] - WINDOW + 1 + k] for k in range(WINDOW))
  return sum(g[k] * rows[:, k:x.shape[1] - WINDOW + 1 + k]
             for k in range(WINDOW))


def ssim_and_cs(x, y, max_val):
  """(SSIM, mean contrast-structure) of two [H, W] float64 arrays."""
  c1, c2 = (K1 * max_val) ** 2, (K2 * max_val) ** 2
  mu_x, mu_y = _blur(x), _blur(y)
  var_x = _blur(x * x) - mu_x ** 2
  var_y = _blur(y * y) - mu_y ** 2
  cov = _blur(x * y) - mu_x * mu_y
  luminance = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
  cs = (2 * cov + c2) / (var_x + var_y + c2)
  return float(np.mean(luminance * cs)), float(np.mean(cs))


def _halve(x):
  """2x2 average of a [H, W] array, an odd side extended by its edge."""
  x = np.pad(x, [(0, x.shape[0] % 2), (0, x.shape[1] % 2)], mode="edge")
  return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4


def ms_ssim(x, y, weights, max_val):
  """MS-SSIM of two [H, W, C] images under `weights` (finest scale first)."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  per_channel = []
  for c in range(x.shape[-1]):
    a, b = x[..., c], y[..., c]
    value = 1.0
    for j, weight in enumerate(weights):
      if j:
        a, b = _halve(a), _halve(b)
      ssim, cs = ssim_and_cs(a, b, max_val)
      term = ssim if j == len(weights) - 1 else cs
      value *= max(term, 0.0) ** weight
    per_channel.append(value)
  return float(np.mean(per_channel))
