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
  exp, log, erfc, tanh and sigmoid are written out with those operations
  only (`layers.exact_functions`): nothing from a platform math library,
  whose last bits differ between CPUs, vector widths and GPUs.
* float64 keeps the path off oneDNN (float32 / bfloat16 only), TF32 and the
  remapper's float32 fusions; operands quantised to 20-24 bits (as many
  as the bound allows, `operand_bits`) keep float32-like precision, so the
  rates stay those of the float model
  (docs/bitstream.md, "Exact entropy parameters", per op).

Training and rate estimation keep the float path: outside `scope()` every
layer computes as before, bit for bit.
"""
import contextlib
import threading

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


def shared_function(name, body, key, x, static_last_axis=False):
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
  return shared_function("quantize", lambda t: _quantize(t, bits, axis), key, x)


def _quantize(x, bits, axis):
  """(q, step): x ~ q * step with integers |q| <= 2**(bits - 1).

  The step is a power of two, one per tensor (axis None) or per slice
  along `axis`'s complement (reduced over `axis`, kept as size 1), chosen
  from the largest magnitude, which is the same whatever order a kernel
  reads it in. x / step is exact (a power of two), and so is its rounding.
  """
  x = to_exact(x)
  # max |x| as two reductions: no pass that writes |x|.
  keep = axis is not None
  largest = tf.maximum(tf.reduce_max(x, axis=axis, keepdims=keep),
                       -tf.reduce_min(x, axis=axis, keepdims=keep))
  e = exponent(tf.maximum(largest, _SMALLEST_MAX))
  # largest < 2**(e + 1), so largest / step < 2**(bits - 1).
  inverse = pow2(bits - 2 - e)
  return tf.round(x * inverse), 1. / inverse


def operand_bits(terms):
  """Bits per operand for sums of `terms` products of two operands to stay
  below 2**53: 2 (bits - 1) + ceil(log2(terms)) <= 52."""
  spare = 52 - (int(terms) - 1).bit_length()
  return min(MAX_BITS, spare // 2 + 1)


def magnitude(bits):
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
  check_bound(terms, magnitude(bits), magnitude(bits))
  xq, xstep = quantize(x, bits)
  wq, wstep = _weight(kernel, out_axis, bits)
  return op(xq, wq) * (xstep * wstep)


def conv2d(x, kernel, strides, padding):
  """tf.nn.conv2d with an HWIO kernel, exactly."""
  k = kernel.shape
  return _linear_op(lambda a, w: tf.nn.conv2d(a, w, strides, padding),
                    x, kernel, -1, k[0] * k[1] * k[2])


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
  check_bound(terms, magnitude(bits), magnitude(bits))
  aq, astep = quantize(a, bits)
  bq, bstep = quantize(b, bits)
  return tf.matmul(aq, bq, transpose_b=transpose_b) * (astep * bstep)


def reduce_mean(x, axis):
  """Mean over `axis` (kept), exactly: a sum of integers, one division."""
  n = x.shape[axis]
  bits = MAX_BITS
  check_bound(n, magnitude(bits))
  xq, step = quantize(x, bits)
  return tf.reduce_sum(xq, axis=axis, keepdims=True) * step / float(n)


def normalize(x, epsilon):
  """(x - mean) / sqrt(var + epsilon) over the last axis, exactly; see
  `_normalize`."""
  return shared_function("normalize", lambda t: _normalize(t, epsilon),
                         epsilon, x, static_last_axis=True)


def _normalize(x, epsilon):
  """(x - mean) / sqrt(var + epsilon) over the last axis, exactly.

  Each position is quantised with its own step, so a quiet position keeps
  its precision beside a loud one; sums of the integers and their squares
  give the mean and variance.
  """
  n = x.shape[-1]
  bits = operand_bits(n)
  check_bound(n, magnitude(bits), magnitude(bits))
  xq, step = quantize(x, bits, axis=-1)
  s1 = tf.reduce_sum(xq, axis=-1, keepdims=True)
  s2 = tf.reduce_sum(xq * xq, axis=-1, keepdims=True)
  n = float(n)
  variance = (s2 / n - (s1 / n) * (s1 / n)) * (step * step)
  return (xq - s1 / n) * step / tf.sqrt(tf.maximum(variance, 0.) + epsilon)


def layer_norm(x, gamma, beta, epsilon):
  return normalize(x, epsilon) * to_exact(gamma) + to_exact(beta)
