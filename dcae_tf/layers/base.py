"""PyTorch-compatible primitives and the official-weight naming scheme.

Every layer here knows the state_dict name of each of its weights in the
official PyTorch DCAE, and how a PyTorch array maps onto its Keras variable.
That keeps the converter (`dcae_tf.convert`) a generic tree walk instead of a
hand-written list of 1142 keys.

PyTorch layouts: conv OIHW, transposed conv IOHW, depthwise conv (C, 1, kh, kw),
Linear (out, in). Keras: HWIO, HWOI, HW C 1, (in, out).
"""
import numpy as np
import tensorflow as tf

from dcae_tf.layers import exact
from dcae_tf.layers import exact_functions

# How an official (PyTorch) array becomes a Keras variable value.
_FROM_OFFICIAL = {
    "conv": lambda a: np.transpose(a, (2, 3, 1, 0)),
    "deconv": lambda a: np.transpose(a, (2, 3, 1, 0)),
    "dwconv": lambda a: np.transpose(a, (2, 3, 0, 1)),
    "linear": lambda a: np.transpose(a, (1, 0)),
    "same": lambda a: a,
    # CompressAI's EntropyBottleneck.quantiles (C, 1, 3): the median column.
    "median": lambda a: a[:, 0, 1],
}


# The inverse maps, Keras variable value -> official array. The median
# becomes quantiles with placeholder lower/upper columns at -/+ 10 around it
# (CompressAI's initial spread), which only CompressAI's CDF tables read.
_TO_OFFICIAL = {
    "conv": lambda a: np.transpose(a, (3, 2, 0, 1)),
    "deconv": lambda a: np.transpose(a, (3, 2, 0, 1)),
    "dwconv": lambda a: np.transpose(a, (2, 3, 0, 1)),
    "linear": lambda a: np.transpose(a, (1, 0)),
    "same": lambda a: a,
    "median": lambda a: np.stack([a - 10., a, a + 10.], -1)[:, None, :],
}


def to_official_layout(kind, array):
  """Converts a Keras variable value (Keras layout) to the official
  PyTorch layout of a `kind` weight."""
  return _TO_OFFICIAL[kind](np.asarray(array))


def from_official_layout(kind, array):
  """Converts an official array (PyTorch layout) from that layout to the
  Keras variable layout of a `kind` weight."""
  return _FROM_OFFICIAL[kind](np.asarray(array))


class ReadsWeightsAfterInputs:
  """Mixin of a Keras layer: in a graph, its call waits for its inputs.

  Everything the call creates, its weight reads included, gets control
  dependencies on the call's input tensors. A weight read depends on
  nothing else, so without them the executor would read (and, for
  float16-stored weights, cast to float32: `codec.weights`) every weight of
  the model when the graph starts and hold all the copies until they are
  used (measured 2026-11-26: 310 MB more peak memory for the paper
  preset's encoder with float16-stored weights). Eagerly it changes
  nothing. Put it before the Keras base class.

  Under `exact.scope()` the call skips Keras's `__call__` (whose autocast
  would round the exact path's float64 tensors to the layer's dtype) and
  runs `call` directly: the layers are built by then.
  """

  def __call__(self, *args, **kwargs):
    if exact.active():
      return self.call(*args, **kwargs)
    inputs = [t for t in tf.nest.flatten((args, kwargs))
              if isinstance(t, tf.Tensor)]
    if not inputs or tf.executing_eagerly():
      return super().__call__(*args, **kwargs)
    with tf.control_dependencies(inputs):
      return super().__call__(*args, **kwargs)


class TorchNamed:
  """Mixin: enumerates (official key, variable, layout kind) triples.

  Subclasses list their own parameters in `_torch_params` and their
  sub-layers in `_torch_children`; `torch_variables` walks the tree.
  """

  def _torch_params(self):
    return []

  def _torch_children(self):
    return []

  def torch_variables(self, prefix=""):
    out = []
    for name, var, kind in self._torch_params():
      out.append((prefix + name, var, kind))
    for name, child in self._torch_children():
      out.extend(torch_variables(child, prefix + name + "."))
    return out


def torch_variables(layer, prefix=""):
  """(key, variable, kind) of `layer`, also for stock Keras layers."""
  if isinstance(layer, TorchNamed):
    return layer.torch_variables(prefix)
  if isinstance(layer, tf.keras.layers.LayerNormalization):
    return [(prefix + "weight", layer.gamma, "same"),
            (prefix + "bias", layer.beta, "same")]
  if isinstance(layer, tf.keras.layers.Dense):
    out = [(prefix + "weight", layer.kernel, "linear")]
    if layer.use_bias:
      out.append((prefix + "bias", layer.bias, "same"))
    return out
  raise TypeError(f"no official naming for layer {layer.name!r}")


class LayerNorm(ReadsWeightsAfterInputs, tf.keras.layers.LayerNormalization):
  """Keras's layer norm over the last axis; `exact.layer_norm` in the exact
  scope."""

  def call(self, x):
    if exact.active():
      return exact.layer_norm(x, self.gamma, self.beta, self.epsilon)
    return super().call(x)


class Dense(ReadsWeightsAfterInputs, tf.keras.layers.Dense):
  """Keras's dense layer; `exact.dense` in the exact scope."""

  def call(self, x):
    if exact.active():
      return exact.dense(x, self.kernel, self.bias if self.use_bias else None)
    return super().call(x)


def layer_norm(epsilon, name=None, dtype=None):
  # nn.LayerNorm's epsilon is 1e-5; Keras defaults to 1e-3.
  return LayerNorm(epsilon=epsilon, name=name, dtype=dtype)


def dense(units, name=None, use_bias=True, dtype=None):
  return Dense(units, use_bias=use_bias, name=name, dtype=dtype)


def residual_add(stream, branch):
  """stream + branch, in the stream's dtype.

  A bfloat16 transform (`codec.transform_dtype`) keeps its residual stream
  float32 and computes the branches (convolutions, attention, MLP) in
  bfloat16: each block then adds a rounded branch to an exact stream
  instead of rounding the stream itself to 8 significant bits. Where both
  have one dtype the cast is no op.
  """
  return stream + tf.cast(branch, stream.dtype)


def gelu(x):
  # nn.GELU is the exact erf form, not the tanh approximation.
  if exact.active():
    return exact_functions.gelu(x)
  return tf.nn.gelu(x, approximate=False)


def bias_add(x, bias):
  """tf.nn.bias_add; in the exact scope, a float64 add of the bias."""
  if exact.active():
    return x + exact.to_exact(bias)
  return tf.nn.bias_add(x, bias)


class Conv2D(ReadsWeightsAfterInputs, TorchNamed, tf.keras.layers.Layer):
  """`nn.Conv2d(k, stride, padding=k // 2)`: symmetric padding.

  TF's "SAME" padding with stride 2 on even sizes pads 1 before and 2 after
  (k=5), where PyTorch pads 2 and 2, so strided convs pad explicitly.
  """

  def __init__(self, filters, kernel_size, strides=1, use_bias=True,
               **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides
    self.use_bias = use_bias

  def build(self, input_shape):
    k = self.kernel_size
    self.kernel = self.add_weight(
        "kernel", (k, k, int(input_shape[-1]), self.filters),
        initializer="glorot_uniform")
    if self.use_bias:
      self.bias = self.add_weight("bias", (self.filters,), initializer="zeros")
    super().build(input_shape)

  def call(self, x):
    k, s = self.kernel_size, self.strides
    conv2d = exact.conv2d if exact.active() else tf.nn.conv2d
    if s == 1:
      # Odd kernel, stride 1: "SAME" is the same symmetric k // 2 padding.
      y = conv2d(x, self.kernel, 1, "SAME")
    else:
      p = k // 2
      x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
      y = conv2d(x, self.kernel, s, "VALID")
    if self.use_bias:
      y = bias_add(y, self.bias)
    return y

  def _torch_params(self):
    out = [("weight", self.kernel, "conv")]
    if self.use_bias:
      out.append(("bias", self.bias, "same"))
    return out


class ConvTranspose2D(ReadsWeightsAfterInputs, TorchNamed,
                      tf.keras.layers.Layer):
  """`nn.ConvTranspose2d(k, stride, padding=k // 2, output_padding=stride-1)`.

  Computes the full ("VALID") transposed convolution and crops `k // 2` rows
  and columns at the start, keeping exactly `stride * input` outputs, which
  is what PyTorch's padding/output_padding pair means.
  """

  def __init__(self, filters, kernel_size, strides=2, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides

  def build(self, input_shape):
    k = self.kernel_size
    self.kernel = self.add_weight(
        "kernel", (k, k, self.filters, int(input_shape[-1])),
        initializer="glorot_uniform")
    self.bias = self.add_weight("bias", (self.filters,), initializer="zeros")
    super().build(input_shape)

  def call(self, x):
    k, s = self.kernel_size, self.strides
    shape = tf.shape(x)
    full_h = (shape[1] - 1) * s + k
    full_w = (shape[2] - 1) * s + k
    transpose = (exact.conv2d_transpose if exact.active()
                 else tf.nn.conv2d_transpose)
    y = transpose(
        x, self.kernel, tf.stack([shape[0], full_h, full_w, self.filters]),
        s, "VALID")
    p = k // 2
    y = y[:, p:p + s * shape[1], p:p + s * shape[2], :]
    return bias_add(y, self.bias)

  def _torch_params(self):
    return [("weight", self.kernel, "deconv"), ("bias", self.bias, "same")]


class DepthwiseConv2D(ReadsWeightsAfterInputs, TorchNamed,
                      tf.keras.layers.Layer):
  """`nn.Conv2d(C, C, 3, padding=1, groups=C)`."""

  def __init__(self, kernel_size=3, **kwargs):
    super().__init__(**kwargs)
    self.kernel_size = kernel_size

  def build(self, input_shape):
    k = self.kernel_size
    c = int(input_shape[-1])
    self.kernel = self.add_weight("kernel", (k, k, c, 1),
                                  initializer="glorot_uniform")
    self.bias = self.add_weight("bias", (c,), initializer="zeros")
    super().build(input_shape)

  def call(self, x):
    depthwise = (exact.depthwise_conv2d if exact.active()
                 else tf.nn.depthwise_conv2d)
    y = depthwise(x, self.kernel, [1, 1, 1, 1], "SAME")
    return bias_add(y, self.bias)

  def _torch_params(self):
    return [("weight", self.kernel, "dwconv"), ("bias", self.bias, "same")]


class Scale(ReadsWeightsAfterInputs, TorchNamed, tf.keras.layers.Layer):
  """Learned per-channel residual scale (official `Scale`, init 1)."""

  def build(self, input_shape):
    self.scale = self.add_weight("scale", (int(input_shape[-1]),),
                                 initializer="ones")
    super().build(input_shape)

  def call(self, x):
    return x * tf.cast(self.scale, x.dtype)

  def _torch_params(self):
    return [("scale", self.scale, "same")]


class Sequential(ReadsWeightsAfterInputs, TorchNamed, tf.keras.layers.Layer):
  """A list of layers named by their index, like `nn.Sequential`.

  `layers` may contain plain callables (activations), which take an index in
  the official numbering but hold no weights.
  """

  def __init__(self, layers, **kwargs):
    super().__init__(**kwargs)
    self.steps = list(layers)

  def call(self, x):
    for step in self.steps:
      x = step(x)
    return x

  def _torch_children(self):
    return [(str(i), s) for i, s in enumerate(self.steps)
            if isinstance(s, tf.keras.layers.Layer)]
