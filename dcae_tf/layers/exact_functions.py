"""Exact elementary functions: exp, log, erfc, GELU, sigmoid, tanh,
softplus and the softmax-weighted sum, from float64 +, -, *, / only.

The part of the exact path (`layers.exact`) that a platform math library
would otherwise compute, with last bits that differ between CPUs, vector
widths and GPUs: range reduction with exact powers of two, polynomials,
and for GELU a table of its exact formula read by cubic Hermite
interpolation (docs/bitstream.md, "Exact entropy parameters", per op).
"""
import math
import weakref

import tensorflow as tf

from dcae_tf.layers import exact

# exp's input is clipped to this range (its output stays a normal float64).
_EXP_RANGE = 700.
# ln 2 split so that k * _LN2_HI is exact for |k| < 2**11 (fdlibm's split).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOG2_E = 1.4426950408889634
# 1 / n! for exp's Taylor polynomial on |r| <= ln(2) / 2: relative error
# below 1e-11, far below float32's (the precision of the float model), in
# 9 steps.
_EXP_TERMS = tuple(1. / math.factorial(n) for n in range(10))
# Numerical Recipes' erfc (Chebyshev fit, relative error < 1.2e-7).
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
         0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)
# The GELU table: [-GELU_RANGE, GELU_RANGE] in GELU_POINTS cells of
# GELU_STEP (|GELU(x)| < 1e-14 below it, GELU(x) = x above, in float64).
GELU_RANGE = 8.
GELU_STEP = 2. ** -5
GELU_POINTS = int(2 * GELU_RANGE / GELU_STEP)
# tanh(x) is 1 in float64 beyond this.
_TANH_RANGE = 20.


def softmax_matmul(logits, values):
  """softmax(logits, last axis) @ values, exactly.

  The exponentials (at most 1 after subtracting the row's maximum) are
  quantised to integers like the values, so both their sum and their
  product with the quantised values are integer sums; one division per
  output normalises.
  """
  terms = logits.shape[-1]
  bits = exact.operand_bits(terms)
  exact.check_bound(terms, exact.magnitude(bits), exact.magnitude(bits))
  logits = exact.to_exact(logits)
  e = exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
  eq = tf.round(e * float(exact.magnitude(bits)))
  total = tf.reduce_sum(eq, axis=-1, keepdims=True)
  vq, vstep = exact.quantize(values, bits)
  return tf.matmul(eq, vq) * vstep / total



def _horner(x, coefficients):
  """c[0] + c[1] x + c[2] x**2 + ...: one rounding per step, fixed order."""
  out = tf.fill(tf.shape(x), tf.constant(coefficients[-1], exact.DTYPE))
  for c in coefficients[-2::-1]:
    out = out * x + c
  return out


def exp(x):
  """e**x exactly (`_exp`)."""
  return exact.shared_function("exp", _exp, None, x)


def _exp(x):
  """e**x: x = k ln 2 + r, |r| <= ln(2) / 2, Taylor polynomial of r times
  the exact power 2**k."""
  x = tf.clip_by_value(exact.to_exact(x), -_EXP_RANGE, _EXP_RANGE)
  k = tf.floor(x * _LOG2_E + .5)
  r = (x - k * _LN2_HI) - k * _LN2_LO
  return _horner(r, _EXP_TERMS) * exact.pow2(tf.cast(k, tf.int64))


def log(x):
  """Natural log of positive x: x = m 2**e with m in [sqrt(1/2), sqrt(2)),
  log m = 2 atanh((m - 1) / (m + 1)) by its odd series."""
  x = exact.to_exact(x)
  e = exact.exponent(x)
  m = x * exact.pow2(-e)
  big = m > math.sqrt(2.)
  m = tf.where(big, m * .5, m)
  e = tf.cast(e + tf.cast(big, tf.int64), exact.DTYPE)
  f = (m - 1.) / (m + 1.)
  f2 = f * f
  # atanh(f) / f = sum f**(2n) / (2n + 1); |f| < 0.172, so 12 terms.
  series = _horner(f2, tuple(1. / (2 * n + 1) for n in range(12)))
  return e * _LN2_HI + (e * _LN2_LO + 2. * f * series)


def erfc(x):
  x = exact.to_exact(x)
  z = tf.abs(x)
  t = 1. / (1. + .5 * z)
  ans = t * exp(-z * z + _horner(t, _ERFC))
  return tf.where(x >= 0., ans, 2. - ans)


def _gelu_table():
  """(GELU_POINTS, 4) rows [g(x_i), h g'(x_i), g(x_i+1), h g'(x_i+1)] on the
  grid x_i = -GELU_RANGE + i h of g(x) = x Phi(x), the exact (erf) GELU,
  and g'(x) = Phi(x) + x phi(x), as numpy: computed once, eagerly, with this
  module's exact functions, so the same numbers everywhere."""
  def rows():
    x = tf.range(GELU_POINTS + 1, dtype=exact.DTYPE) * GELU_STEP - GELU_RANGE
    phi = .5 * erfc(x * -math.sqrt(.5))
    density = exp(x * x * -.5) * (1. / math.sqrt(2. * math.pi))
    value, slope = x * phi, (phi + x * density) * GELU_STEP
    return tf.stack([value[:-1], slope[:-1], value[1:], slope[1:]], -1)

  with tf.init_scope():
    if tf.executing_eagerly():
      return rows().numpy()
  # First needed while a graph is being built outside any eager context
  # (e.g. saving): the same ops, run once in a graph of their own.
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    return session.run(rows())


_gelu_rows = []
_per_graph = weakref.WeakKeyDictionary()


def _gelu_constant():
  """The GELU table as a constant, one per graph (a graph's functions
  share it instead of holding a copy per GELU)."""
  if not _gelu_rows:
    _gelu_rows.append(_gelu_table())
  if tf.executing_eagerly():
    return tf.constant(_gelu_rows[0])
  graph = tf.compat.v1.get_default_graph()
  if graph not in _per_graph:
    with tf.control_dependencies(None):
      _per_graph[graph] = tf.constant(_gelu_rows[0])
  return _per_graph[graph]


def gelu(x):
  """The exact GELU (`_gelu`)."""
  return exact.shared_function("gelu", _gelu, None, x)


def _gelu(x):
  """The exact GELU: cubic Hermite interpolation of the tabulated
  formula and its slope (`_gelu_table`; error below 2e-8), in a quarter of the
  formula's operations; 0 below the table, x above it."""
  position = (tf.clip_by_value(x, -GELU_RANGE, GELU_RANGE) + GELU_RANGE) * (
      1. / GELU_STEP)
  cell = tf.minimum(tf.floor(position), GELU_POINTS - 1.)
  t = position - cell
  rows = tf.gather(_gelu_constant(), tf.cast(cell, tf.int32))
  g0, d0, g1, d1 = tf.unstack(rows, axis=-1)
  s = 1. - t
  # Hermite basis: (1 + 2t) s^2, t s^2, t^2 (3 - 2t), -t^2 s.
  inside = (s * s * ((1. + 2. * t) * g0 + t * d0) +
            t * t * ((3. - 2. * t) * g1 - s * d1))
  return tf.where(x > GELU_RANGE, x,
                  tf.where(x < -GELU_RANGE, tf.zeros_like(x), inside))


def sigmoid(x):
  x = exact.to_exact(x)
  return 1. / (1. + exp(-x))


def tanh(x):
  x = exact.to_exact(x)
  a = tf.minimum(tf.abs(x), _TANH_RANGE)
  t = 1. - 2. / (exp(2. * a) + 1.)
  return tf.where(x < 0., -t, t)


def softplus(x):
  x = exact.to_exact(x)
  return tf.maximum(x, 0.) + log(1. + exp(-tf.abs(x)))

