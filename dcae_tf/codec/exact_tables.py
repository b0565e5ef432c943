"""Coding tables that are the same integers on every machine, by construction.

TFC builds its quantised CDFs in float32 with the platform's exp, log and
erfc and sums them in kernel-chosen order, so two computers can build
tables that differ in a count, and a stream coded on one then decodes to
garbage on the other. Here every float comes from `dcae_tf.layers.exact`
(float64 +, -, *, / only) or from Python's exactly specified `decimal`,
no float is ever summed, and the CDF is made from the probabilities by
integer arithmetic alone (`quantized_cdf`). The ranges and the overflow
bin follow TFC's so that the rates stay TFC's (docstrings say where).

Table layout: that of `dcae_tf.rans.Tables` (row t: cdf_length[t] bounds
from 0 to 2**precision, padded with 2**precision; bin b codes value
cdf_offset[t] + b, the last bin is the overflow bin).
"""
import decimal
import math

import numpy as np
import tensorflow as tf

from dcae_tf.layers import exact
from dcae_tf.layers import exact_functions
from dcae_tf.rans import tables as rans_tables

# TFC's default: the probability left to the overflow bin (both tails).
TAIL_MASS = 2. ** -8
# Smallest tail mass accepted: its normal quantile lies inside the bracket.
MIN_TAIL_MASS = 2. ** -40
# Digits of the decimal arithmetic of the scalar constants.
DECIMAL_DIGITS = 60
# pi to 60 digits (decimal has no pi of its own).
_PI = decimal.Decimal(
    "3.14159265358979323846264338327950288419716939937510582097494")
# The normal quantile is searched by bisection in [-QUANTILE_BRACKET, 0].
QUANTILE_BRACKET = 10
QUANTILE_STEPS = 120
# erfc's argument is x / (scale * SQRT2); sqrt is correctly rounded.
SQRT2 = math.sqrt(2.)
# z's table of a channel covers at most |v| <= Z_RANGE (values coded are
# round(z - offset)); a tail reaching beyond is clipped there and its mass
# goes to the overflow bin, so those values stay codable, just dearer.
# TFC warns about tables wider than 2048 bins: the same bound.
Z_RANGE = 1024


def _check_tail_mass(tail_mass):
  if not MIN_TAIL_MASS <= tail_mass < 1.:
    raise ValueError(f"tail_mass must be in [{MIN_TAIL_MASS}, 1), "
                     f"got {tail_mass}")


def _normal_cdf(x):
  """Phi(x) in decimal (x <= 0): 1/2 - phi(|x|) * sum |x|**(2n+1) / (2n+1)!!
  (Marsaglia's series: positive terms only, so no cancellation in it)."""
  a = -x
  term = total = a
  n = 1
  while term > total * decimal.Decimal(10) ** -DECIMAL_DIGITS:
    term = term * a * a / (2 * n + 1)
    total += term
    n += 1
  density = (-a * a / 2).exp() / (2 * _PI).sqrt()
  return decimal.Decimal(.5) - density * total


def normal_quantile(p):
  """Phi^-1(p) for p in (0, 1/2], exactly as `decimal` computes it (the
  same float on every machine; TFC uses float32 ndtri)."""
  with decimal.localcontext() as ctx:
    ctx.prec = DECIMAL_DIGITS
    target = decimal.Decimal(p)
    low, high = decimal.Decimal(-QUANTILE_BRACKET), decimal.Decimal(0)
    for _ in range(QUANTILE_STEPS):
      mid = (low + high) / 2
      low, high = (mid, high) if _normal_cdf(mid) < target else (low, mid)
    return float((low + high) / 2)


def quantized_cdf(pmf, overflow, precision):
  """The CDF (int64, 0 first, 2**precision last) of pmf + [overflow].

  Integer arithmetic only: each bin gets round(p * 2**precision) counts,
  at least 1 (a value must stay codable); then the total is made exactly
  2**precision by passes that move one count on each bin in order of
  decreasing count (stable sort: ties break by position) until none is
  left to move, never taking a bin below 1: the largest bins absorb the
  correction, at the least cost in rate.
  """
  total = 1 << precision
  p = np.append(np.asarray(pmf, np.float64), float(overflow))
  if p.size > total:
    raise ValueError(f"{p.size} bins do not fit precision {precision}")
  if not np.all(np.isfinite(p) & (p >= 0.)):
    raise ValueError("probabilities must be finite and non-negative (are "
                     "the prior's weights finite?)")
  # A product with a power of two and its rounding are exact.
  freq = np.maximum(np.round(p * float(total)), 1.).astype(np.int64)
  order = np.argsort(-freq, kind="stable")
  excess = int(freq.sum()) - total
  while excess:
    step = 1 if excess > 0 else -1
    movable = order[freq[order] > 1] if step > 0 else order
    moved = movable[:abs(excess)]
    freq[moved] -= step
    excess -= step * moved.size
  return np.concatenate([[0], np.cumsum(freq)])


def _tables(pmfs, overflows, offsets, precision):
  """`rans.Tables` of one pmf (and overflow mass) per table."""
  cdfs = [quantized_cdf(p, o, precision) for p, o in zip(pmfs, overflows)]
  lengths = np.array([c.size for c in cdfs], np.int64)
  padded = np.full((len(cdfs), lengths.max()), 1 << precision, np.int64)
  for row, cdf in zip(padded, cdfs):
    row[:cdf.size] = cdf
  return rans_tables.Tables(padded, np.asarray(offsets, np.int64), lengths,
                            precision)


def _check_scales(scales):
  scales = [float(s) for s in scales]
  if not scales:
    raise ValueError("gaussian_tables: the scale table is empty")
  bad = [s for s in scales if not (math.isfinite(s) and s > 0.)]
  if bad:
    raise ValueError(f"gaussian_tables: scales must be positive and finite, "
                     f"got {bad[0]}")
  return scales


def gaussian_tables(scales, precision, tail_mass=TAIL_MASS):
  """Tables of NoisyNormal(0, s) (normal * U(-.5, .5)), one per scale.

  Table k covers v in [-L, L], L = ceil(s_k * |Phi^-1(tail_mass / 2)|),
  TFC's `LocationScaleIndexedEntropyModel` range (floor / ceil of the
  prior's tail quantiles). pmf(v) = Phi((v + .5)/s) - Phi((v - .5)/s) is
  taken as 1/2 (erfc((|v| - .5) c) - erfc((|v| + .5) c)), c = 1 / (s
  sqrt 2): a difference of upper tails (no cancellation near 1), the
  same for v and -v. The overflow bin gets both tails, erfc((L + .5) c),
  in closed form instead of TFC's 1 - sum(pmf).
  """
  scales = _check_scales(scales)
  _check_tail_mass(tail_mass)
  quantile = -normal_quantile(tail_mass / 2)
  half = [math.ceil(s * quantile) for s in scales]
  # erfc at |v| - .5 for |v| = 0 .. max L + 1, every table at once.
  v = tf.constant(np.arange(max(half) + 2), exact.DTYPE)[None]
  s = tf.constant(scales, exact.DTYPE)[:, None]
  edges = exact_functions.erfc((v - .5) / (s * SQRT2)).numpy()
  upper = .5 * (edges[:, :-1] - edges[:, 1:])
  pmfs = [np.concatenate([u[n:0:-1], u[:n + 1]])
          for u, n in zip(upper, half)]
  overflows = [e[n + 1] for e, n in zip(edges, half)]
  return _tables(pmfs, overflows, [-n for n in half], precision)


def _weights(variable):
  """A variable's stored values as float64 (exact from float16/float32)."""
  return exact.to_exact(np.asarray(variable.numpy()))


def logits_cumulative(base, points):
  """TFC's `DeepFactorized._logits_cumulative` at points (C, P), exactly.

  Each layer: softplus(matrix) times the previous layer's filters, the
  (at most 3-term) products added in filter order; + bias; then + tanh(
  factor) * tanh(logits), as TFC. A list of per-filter (C, P) tensors
  stands for TFC's (C, filters, P) so that no kernel chooses an order.
  """
  logits = [exact.to_exact(points)]
  for i, matrix in enumerate(base._matrices):  # pylint: disable=protected-access
    weight = exact_functions.softplus(_weights(matrix))
    bias = _weights(base._biases[i])  # pylint: disable=protected-access
    factors = base._factors  # pylint: disable=protected-access
    out = []
    for o in range(weight.shape[1]):
      acc = weight[:, o, 0:1] * logits[0]
      for j in range(1, weight.shape[2]):
        acc = acc + weight[:, o, j:j + 1] * logits[j]
      acc = acc + bias[:, o]
      if i < len(factors):
        acc = acc + (exact_functions.tanh(_weights(factors[i]))[:, o] *
                     exact_functions.tanh(acc))
      out.append(acc)
    logits = out
  return logits[0]


def _logit(p):
  """log(p / (1 - p)) in decimal: TFC's tail target for the logits."""
  with decimal.localcontext() as ctx:
    ctx.prec = DECIMAL_DIGITS
    p = decimal.Decimal(p)
    return float((p / (1 - p)).ln())


def _z_range(at_int, tail_mass):
  """(first, last) value per channel: TFC's floor(lower_tail - offset) and
  ceil(upper_tail - offset), where the prior's CDF is tail_mass / 2 and 1 -
  tail_mass / 2: the last grid value whose logit is at or below the lower
  target and the first at or above the upper, clipped to the grid."""
  target = _logit(tail_mass / 2)
  v = np.arange(-Z_RANGE, Z_RANGE + 1)
  first = np.where(at_int <= target, v, -Z_RANGE).max(axis=1)
  last = np.where(at_int >= -target, v, Z_RANGE).min(axis=1)
  return first, np.maximum(last, first)


def _bin_mass(lower, upper):
  """sigmoid(upper) - sigmoid(lower) as CompressAI's EntropyBottleneck
  takes it: mirrored to the side where the sigmoids are small (no
  cancellation near 1); a bin centred on 0 is not mirrored."""
  sign = tf.where(lower + upper > 0., tf.constant(-1., exact.DTYPE),
                  tf.constant(1., exact.DTYPE))
  return tf.abs(exact_functions.sigmoid(sign * upper) -
                exact_functions.sigmoid(sign * lower))


def factorized_tables(hyperprior, precision, tail_mass=TAIL_MASS):
  """Tables of z's prior (`entropy.HyperpriorModel`), one per channel.

  Symbols are v = round(z - offset); pmf(v) = sigmoid(L(v + offset + .5))
  - sigmoid(L(v + offset - .5)), L the prior's cumulative logits, on the
  range TFC's `ContinuousBatchedEntropyModel` gives (`_z_range`, searched
  on the integers |v| <= Z_RANGE). The overflow bin gets both tails,
  sigmoid(L(first + offset - .5)) + sigmoid(-L(last + offset + .5)).
  """
  _check_tail_mass(tail_mass)
  offset = np.asarray(hyperprior.offset.numpy(), np.float64)
  # Half-integer steps from -Z_RANGE - .5 to Z_RANGE + .5 around the
  # offsets (exact in float64): odd columns are the integers, even ones
  # the bin edges.
  steps = np.arange(-2 * Z_RANGE - 1, 2 * Z_RANGE + 2) / 2.
  logits = logits_cumulative(hyperprior.prior.base,
                             offset[:, None] + steps[None])
  edges = logits[:, 0::2]
  first, last = _z_range(logits[:, 1::2].numpy(), tail_mass)
  mass = _bin_mass(edges[:, :-1], edges[:, 1:]).numpy()
  rows = np.arange(len(first))
  below = tf.gather_nd(edges, np.stack([rows, first + Z_RANGE], 1))
  above = tf.gather_nd(edges, np.stack([rows, last + Z_RANGE + 1], 1))
  overflows = (exact_functions.sigmoid(below) +
               exact_functions.sigmoid(-above)).numpy()
  pmfs = [m[lo:hi + 1] for m, lo, hi in zip(mass, first + Z_RANGE,
                                            last + Z_RANGE)]
  return _tables(pmfs, overflows, first, precision)
