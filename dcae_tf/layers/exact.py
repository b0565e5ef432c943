"""Exact arithmetic: the entropy parameters bit for bit on every machine.

A decoder must pick the encoder's coding table for every symbol. Computed
in ordinary floating point, the entropy parameters depend on the order in
which kernels sum (vector width, threads, FMA, oneDNN or Eigen, GPU), so a
file made on one computer may be refused on another. Under `scope()` the
layers of the entropy-parameter path (h_s, the slice networks, the
dictionary cross-attention, LRP) compute with the functions of this module
instead, which are exact by construction:

* Every sum whose order a kernel may choose (convolutions, matrix
  products, reductions) adds integers: its inputs are quantised to
  integers (`quantize`, a power-of-two step per tensor, per position or per
  output channel, found from a maximum, which is order-free), held in
  float64, and `check_bound` proves at trace time that every product and
  partial sum stays below 2**53, where float64 represents integers exactly.
  The integer result is scaled back by a power of two (exact).
* Everything else is elementwise float64 +, -, *, / and sqrt, which IEEE
  754 rounds exactly: the same inputs give the same bits on any machine.
  exp, log, erfc, tanh and sigmoid are written out here with those
  operations only (range reduction with exact powers of two, polynomials):
  nothing from a platform math library, whose last bits differ between
  CPUs, vector widths and GPUs.
* float64 keeps the path off oneDNN (float32 / bfloat16 only), TF32 and the
  remapper's float32 fusions; operands quantised to 20-24 bits (as many
  as the bound allows, `operand_bits`) keep float32-like precision, so the
  rates stay those of the float model
  (docs/bitstream.md, "Exact entropy parameters", per op).

Training and rate estimation keep the float path: outside `scope()` every
layer computes as before, bit for bit.
"""
import contextlib
import math
import threading
import weakref

import numpy as np
import tensorflow as tf

DTYPE = tf.float64
# Integers below this are exact in float64, and so is every sum of them
# that stays below it, in any order.
EXACT_LIMIT = 2 ** 53
# Most bits (sign included) an operand is quantised to: float32's
# significand, the precision of the float model the weights come from.
# Fewer where a sum has so many terms that 2**53 needs it (`operand_bits`).
MAX_BITS = 24
# Maxima below this quantise as if they were this (no step below 2**-300).
_SMALLEST_MAX = 2. ** -280
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
# Stride-1 convolutions with at least this many input channels run as
# per-tap matrix products (`_shifted_products`): faster there, but nine
# products' ops in the graph instead of one convolution.
SHIFTED_PRODUCTS_MIN_CHANNELS = 128
# The GELU table: [-GELU_RANGE, GELU_RANGE] in GELU_POINTS cells of
# GELU_STEP (|GELU(x)| < 1e-14 below it, GELU(x) = x above, in float64).
GELU_RANGE = 8.
GELU_STEP = 2. ** -5
GELU_POINTS = int(2 * GELU_RANGE / GELU_STEP)
# tanh(x) is 1 in float64 beyond this.
_TANH_RANGE = 20.

_state = threading.local()


# The scope's bookkeeping is Python, never graph code: autograph must not
# convert it when a tf.function traces through it.
@tf.autograph.experimental.do_not_convert
@contextlib.contextmanager
def scope():
  """Layers traced inside compute with this module's exact arithmetic.

  Thread-local: the codec enters it around its entropy-parameter functions
  only; another thread tracing a training step is unaffected.
  """
  outer = getattr(_state, "active", False)
  _state.active = True
  try:
    yield
  finally:
    _state.active = outer


@tf.autograph.experimental.do_not_convert
def active():
  """Whether the calling thread is inside `scope()`."""
  return getattr(_state, "active", False)


def traced_exactly(fn):
  """`fn` wrapped so that it always runs inside `scope()`."""
  @tf.autograph.experimental.do_not_convert
  def wrapped(*args, **kwargs):
    with scope():
      return fn(*args, **kwargs)
  return wrapped


def to_exact(x):
  """x as float64 (a cast, exact from float16 / float32 / small ints)."""
  return tf.cast(tf.convert_to_tensor(x), DTYPE)


# TensorFlow's function attribute that keeps a call a call when a graph is
# optimised. Inlined, every call site of a shared function became its own
# copy in one graph of 30-40 k nodes, which Grappler optimised as a whole:
# the first call took about twice as long and later calls were slower too
# (docs/performance.md, "Shared functions are called, not inlined"). Called,
# each body is optimised once, on its own; the arithmetic is the same.
NOT_INLINED = {"_noinline": True}

_functions = {}


def _shared(name, body, key, x, static_last_axis=False):
  """body(x) through one `tf.function` per (name, key): every graph calls
  it instead of holding its own copy of the ops, so an export stores each
  once and TF optimises each once (`NOT_INLINED`). x's rank is kept, and
  with `static_last_axis` its last size."""
  x = to_exact(x)
  rank = x.shape.rank
  shape = None if rank is None else [None] * rank
  if static_last_axis:
    shape[-1] = x.shape[-1]
  spec = tf.TensorSpec(shape, DTYPE)
  full_key = (name, key, None if shape is None else tuple(shape))
  if full_key not in _functions:
    _functions[full_key] = tf.function(
        body, input_signature=[spec], autograph=False,
        experimental_attributes=NOT_INLINED)
  return _functions[full_key](x)


# -- powers of two and quantisation ----------------------------------------

def pow2(k):
  """2.0 ** k as float64 for an int64 tensor k in [-1022, 1023]: built from
  its bits, exact."""
  k = tf.cast(k, tf.int64)
  return tf.bitcast(tf.bitwise.left_shift(k + 1023, 52), DTYPE)


def exponent(x):
  """floor(log2(x)) of positive normal float64 x, read from its bits."""
  # The sign bit of a positive float is 0: the shift leaves the exponent.
  return tf.bitwise.right_shift(tf.bitcast(to_exact(x), tf.int64), 52) - 1023


def quantize(x, bits, axis=None):
  """(q, step): x ~ q * step with integers |q| <= 2**(bits - 1); see
  `_quantize`."""
  key = (bits, None if axis is None else tuple(np.atleast_1d(axis)))
  return _shared("quantize", lambda t: _quantize(t, bits, axis), key, x)


def _quantize(x, bits, axis):
  """(q, step): x ~ q * step with integers |q| <= 2**(bits - 1).

  The step is a power of two, one per tensor (axis None) or per slice
  along `axis`'s complement (reduced over `axis`, kept as size 1), chosen
  from the largest magnitude, which is the same whatever order a kernel
  reads it in. x / step is exact (a power of two), and so is its rounding.
  """
  x = to_exact(x)
  largest = tf.reduce_max(tf.abs(x), axis=axis, keepdims=axis is not None)
  e = exponent(tf.maximum(largest, _SMALLEST_MAX))
  # largest < 2**(e + 1), so largest / step < 2**(bits - 1).
  inverse = pow2(bits - 2 - e)
  return tf.round(x * inverse), 1. / inverse


def operand_bits(terms):
  """Bits per operand for sums of `terms` products of two operands to stay
  below 2**53: 2 (bits - 1) + ceil(log2(terms)) <= 52."""
  spare = 52 - (int(terms) - 1).bit_length()
  return min(MAX_BITS, spare // 2 + 1)


def _magnitude(bits):
  return 2 ** (bits - 1)


def check_bound(terms, *magnitudes):
  """Raises unless `terms` products of integers of the given largest
  magnitudes always sum exactly (below EXACT_LIMIT). Static: at trace time."""
  worst = int(terms)
  for m in magnitudes:
    worst *= int(m)
  if worst >= EXACT_LIMIT:
    raise ValueError(f"exact arithmetic: {terms} products of magnitude "
                     f"{magnitudes} can reach {worst} >= 2**53")


def _weight(kernel, out_axis, bits):
  """Per-output-channel quantised weights and their steps (shaped to
  multiply the op's output channels)."""
  kernel = to_exact(kernel)
  rank = kernel.shape.rank
  axes = [a for a in range(rank) if a != out_axis % rank]
  q, step = quantize(kernel, bits, axis=axes)
  return q, tf.reshape(step, [-1])


def _linear_op(op, x, kernel, out_axis, terms):
  """op(x, kernel) exactly: integers in, integers summed, scaled back."""
  bits = operand_bits(terms)
  check_bound(terms, _magnitude(bits), _magnitude(bits))
  xq, xstep = quantize(x, bits)
  wq, wstep = _weight(kernel, out_axis, bits)
  return op(xq, wq) * (xstep * wstep)


def _shifted_products(x, kernel):
  """A stride-1 "SAME" convolution as one matrix product per kernel tap,
  added in a fixed order: TF's float64 convolution runs at half the speed
  of these products on CPUs (measured 2026-12-07, 3x3, 380 -> 32 channels
  at 32x48: 36 vs 15 ms). Integer sums either way, so the same result."""
  kh, kw, cin, cout = kernel.shape
  shape = tf.shape(x)
  padded = tf.pad(x, [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]])
  out = None
  for dy in range(kh):
    for dx in range(kw):
      tap = tf.reshape(padded[:, dy:dy + shape[1], dx:dx + shape[2], :],
                       (-1, cin))
      part = tf.matmul(tap, kernel[dy, dx])
      out = part if out is None else out + part
  return tf.reshape(out, tf.concat([shape[:3], [cout]], 0))


def conv2d(x, kernel, strides, padding):
  """tf.nn.conv2d with an HWIO kernel, exactly."""
  k = kernel.shape

  def op(a, w):
    if (strides == 1 and padding == "SAME" and
        k[2] >= SHIFTED_PRODUCTS_MIN_CHANNELS):
      return _shifted_products(a, w)
    return tf.nn.conv2d(a, w, strides, padding)

  return _linear_op(op, x, kernel, -1, k[0] * k[1] * k[2])


def conv2d_transpose(x, kernel, output_shape, strides, padding):
  """tf.nn.conv2d_transpose with an HWOI kernel, exactly."""
  k = kernel.shape
  return _linear_op(
      lambda a, w: tf.nn.conv2d_transpose(a, w, output_shape, strides,
                                          padding),
      x, kernel, 2, k[0] * k[1] * k[3])


def depthwise_conv2d(x, kernel, strides, padding):
  """tf.nn.depthwise_conv2d with an (H, W, C, 1) kernel, exactly."""
  k = kernel.shape
  return _linear_op(
      lambda a, w: tf.nn.depthwise_conv2d(a, w, strides, padding),
      x, kernel, 2, k[0] * k[1])


def dense(x, kernel, bias=None):
  """x @ kernel (+ bias) over x's last axis, exactly."""
  shape = tf.shape(x)
  flat = tf.reshape(x, (-1, kernel.shape[0]))
  out = _linear_op(tf.matmul, flat, kernel, -1, kernel.shape[0])
  if bias is not None:
    out += to_exact(bias)
  return tf.reshape(out, tf.concat([shape[:-1], [kernel.shape[-1]]], 0))


def matmul(a, b, transpose_b=False):
  """tf.matmul of two activations, exactly (each quantised per tensor)."""
  terms = a.shape[-1]
  bits = operand_bits(terms)
  check_bound(terms, _magnitude(bits), _magnitude(bits))
  aq, astep = quantize(a, bits)
  bq, bstep = quantize(b, bits)
  return tf.matmul(aq, bq, transpose_b=transpose_b) * (astep * bstep)


def softmax_matmul(logits, values):
  """softmax(logits, last axis) @ values, exactly.

  The exponentials (at most 1 after subtracting the row's maximum) are
  quantised to integers like the values, so both their sum and their
  product with the quantised values are integer sums; one division per
  output normalises.
  """
  terms = logits.shape[-1]
  bits = operand_bits(terms)
  check_bound(terms, _magnitude(bits), _magnitude(bits))
  logits = to_exact(logits)
  e = exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
  eq = tf.round(e * float(_magnitude(bits)))
  total = tf.reduce_sum(eq, axis=-1, keepdims=True)
  vq, vstep = quantize(values, bits)
  return tf.matmul(eq, vq) * vstep / total


def reduce_mean(x, axis):
  """Mean over `axis` (kept), exactly: a sum of integers, one division."""
  n = x.shape[axis]
  bits = MAX_BITS
  check_bound(n, _magnitude(bits))
  xq, step = quantize(x, bits)
  return tf.reduce_sum(xq, axis=axis, keepdims=True) * step / float(n)


def normalize(x, epsilon):
  """(x - mean) / sqrt(var + epsilon) over the last axis, exactly; see
  `_normalize`."""
  return _shared("normalize", lambda t: _normalize(t, epsilon), epsilon, x,
                 static_last_axis=True)


def _normalize(x, epsilon):
  """(x - mean) / sqrt(var + epsilon) over the last axis, exactly.

  Each position is quantised with its own step, so a quiet position keeps
  its precision beside a loud one; sums of the integers and their squares
  give the mean and variance.
  """
  n = x.shape[-1]
  bits = operand_bits(n)
  check_bound(n, _magnitude(bits), _magnitude(bits))
  xq, step = quantize(x, bits, axis=-1)
  s1 = tf.reduce_sum(xq, axis=-1, keepdims=True)
  s2 = tf.reduce_sum(xq * xq, axis=-1, keepdims=True)
  n = float(n)
  variance = (s2 / n - (s1 / n) * (s1 / n)) * (step * step)
  return (xq - s1 / n) * step / tf.sqrt(tf.maximum(variance, 0.) + epsilon)


def layer_norm(x, gamma, beta, epsilon):
  return normalize(x, epsilon) * to_exact(gamma) + to_exact(beta)


# -- elementary functions from +, -, *, / ---------------------------------

def _horner(x, coefficients):
  """c[0] + c[1] x + c[2] x**2 + ...: one rounding per step, fixed order."""
  out = tf.fill(tf.shape(x), tf.constant(coefficients[-1], DTYPE))
  for c in coefficients[-2::-1]:
    out = out * x + c
  return out


def exp(x):
  """e**x exactly (`_exp`)."""
  return _shared("exp", _exp, None, x)


def _exp(x):
  """e**x: x = k ln 2 + r, |r| <= ln(2) / 2, Taylor polynomial of r times
  the exact power 2**k."""
  x = tf.clip_by_value(to_exact(x), -_EXP_RANGE, _EXP_RANGE)
  k = tf.floor(x * _LOG2_E + .5)
  r = (x - k * _LN2_HI) - k * _LN2_LO
  return _horner(r, _EXP_TERMS) * pow2(tf.cast(k, tf.int64))


def log(x):
  """Natural log of positive x: x = m 2**e with m in [sqrt(1/2), sqrt(2)),
  log m = 2 atanh((m - 1) / (m + 1)) by its odd series."""
  x = to_exact(x)
  e = exponent(x)
  m = x * pow2(-e)
  big = m > math.sqrt(2.)
  m = tf.where(big, m * .5, m)
  e = tf.cast(e + tf.cast(big, tf.int64), DTYPE)
  f = (m - 1.) / (m + 1.)
  f2 = f * f
  # atanh(f) / f = sum f**(2n) / (2n + 1); |f| < 0.172, so 12 terms.
  series = _horner(f2, tuple(1. / (2 * n + 1) for n in range(12)))
  return e * _LN2_HI + (e * _LN2_LO + 2. * f * series)


def erfc(x):
  x = to_exact(x)
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
    x = tf.range(GELU_POINTS + 1, dtype=DTYPE) * GELU_STEP - GELU_RANGE
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
  return _shared("gelu", _gelu, None, x)


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
  x = to_exact(x)
  return 1. / (1. + exp(-x))


def tanh(x):
  x = to_exact(x)
  a = tf.minimum(tf.abs(x), _TANH_RANGE)
  t = 1. - 2. / (exp(2. * a) + 1.)
  return tf.where(x < 0., -t, t)


def softplus(x):
  x = to_exact(x)
  return tf.maximum(x, 0.) + log(1. + exp(-tf.abs(x)))

