"""The per-token maps of the Swin+conv stages and the dictionary block: the
convolutional GLU (official `ConvolutionalGLU`), its layer norm folded into
fc1, and the linear map the attention shares with it. NHWC throughout.
"""
import tensorflow as tf

from dcae_tf.layers import base
from dcae_tf.layers import exact
from dcae_tf.layers import tiling


def normalize(x, epsilon):
  """Layer norm without its affine part: (x - mean) / sqrt(var + epsilon).

  The MLP's layer norm feeds fc1, which takes its gamma and beta
  (`fold_affine`). Applied to x instead, as Keras's LayerNormalization
  does, the affine part makes three more tensors of x's size
  (gamma * rsqrt(var), its product with the mean, beta minus that) on the
  widest feature maps of the model.
  """
  if exact.active():
    return exact.normalize(x, epsilon)
  mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
  # Correctly rounded operations only (sqrt, division), so each pixel's
  # result does not depend on the tensor's size and a band of rows
  # (`map_row_bands`) equals the same rows of the whole map. TF's rsqrt
  # differs in the last bit between its vectorised path and the scalar one
  # that handles a tensor's last few elements, and Grappler rewrites
  # 1 / sqrt(v) into rsqrt; it leaves divide_no_nan alone (v > 0 here).
  inv = tf.math.divide_no_nan(1., tf.sqrt(variance + epsilon))
  return x * inv - mean * inv


def fold_affine(norm, kernel, bias):
  """(kernel, bias) of `dense(norm(x))` for the input `normalize(x)`.

  (n * gamma + beta) @ W + b = n @ (gamma[:, None] * W) + (beta @ W + b):
  two small products per call instead of passes over the feature map.
  Called inside a layer's call, they wait for its input like its weight
  reads (`base.TorchNamed`), so no block's folded kernel is made early.
  """
  # Keras keeps a layer norm's gamma and beta float32 under mixed
  # precision; fc1's weights read in its compute dtype.
  kernel = tf.convert_to_tensor(kernel)
  gamma = tf.cast(norm.gamma, kernel.dtype)
  beta = tf.cast(norm.beta, kernel.dtype)
  return (gamma[:, None] * kernel,
          bias + tf.linalg.matvec(kernel, beta, transpose_a=True))


def linear(x, kernel, bias):
  """x @ kernel + bias over the last axis, as one MatMul with a fused bias."""
  if exact.active():
    return exact.dense(x, kernel, bias)
  shape = tf.shape(x)
  out = tf.nn.bias_add(tf.matmul(tf.reshape(x, (-1, x.shape[-1])), kernel),
                       bias)
  return tf.reshape(out, tf.concat([shape[:-1], [kernel.shape[-1]]], 0))


class ConvGLU(base.ReadsWeightsAfterInputs, base.TorchNamed,
              tf.keras.layers.Layer):
  """Convolutional GLU (official `ConvolutionalGLU`).

  fc1 makes 2 x (hidden / 2) channels split into (x, v) in that order; x goes
  through a depthwise 3x3 and GELU and gates v; fc2 projects back.

  Keras does not cast its input to its compute dtype: it takes the residual
  stream as it is and normalises it before rounding (`_rows`).
  """

  def __init__(self, dim, hidden, out_dim=None,
               chunk_bytes=tiling.MLP_CHUNK_BYTES, **kwargs):
    super().__init__(autocast=False, **kwargs)
    self.half = hidden // 2
    self.chunk_bytes = chunk_bytes
    # None: tiled at inference, whole-map in training (`tiling`).
    self.tiled = None
    self.fc1 = base.dense(2 * self.half, name="fc1", dtype=self.dtype_policy)
    self.dwconv = base.DepthwiseConv2D(3, name="dwconv",
                                       dtype=self.dtype_policy)
    self.fc2 = base.dense(out_dim or dim, name="fc2", dtype=self.dtype_policy)

  def build(self, input_shape):
    # The Dense layers are built, never called (see `linear`); under their
    # own scopes so their weights keep the names (`.../mlp/fc1/kernel`) a
    # call would give them. The depthwise conv is built here too: at
    # inference it is first called inside a loop, where no variable may be
    # created.
    for layer, shape in ((self.fc1, [None, input_shape[-1]]),
                         (self.dwconv, [None, None, None, self.half]),
                         (self.fc2, [None, self.half])):
      with tf.name_scope(layer.name):
        layer.build(tf.TensorShape(shape))
    super().build(input_shape)

  def _rows(self, x, norm, inside=None):
    """The GLU of x (B, rows, W, dim), whole rows.

    `inside`: (rows,) bool, False for padding rows beyond the image, which
    the depthwise conv must see as zeros (its own padding), not as fc1's
    output.
    """
    stream = x.dtype
    kernel, bias = self.fc1.kernel, self.fc1.bias
    if norm is not None and exact.active():
      # Folding sums products of weights in float: the exact path applies
      # the norm's gamma and beta itself.
      x = exact.layer_norm(x, norm.gamma, norm.beta, norm.epsilon)
    elif norm is not None:
      x = normalize(x, norm.epsilon)
      kernel, bias = fold_affine(norm, kernel, bias)
    # Normalised in the stream's dtype, computed in the layer's: a float32
    # stream (`codec.transform_dtype`) loses its mean before bfloat16
    # rounding, not after. Where the two agree the casts are no ops.
    if not exact.active():
      x = tf.cast(x, self.compute_dtype)
    # fc1's kernel is split instead of its output: the same two products
    # without copying the (large) activations into halves.
    kernel_x, kernel_v = tf.split(kernel, 2, axis=-1)
    bias_x, bias_v = tf.split(bias, 2)
    x, v = linear(x, kernel_x, bias_x), linear(x, kernel_v, bias_v)
    if inside is not None:
      x = tf.where(inside[:, None, None], x, tf.zeros((), x.dtype))
    x = base.gelu(self.dwconv(x)) * v
    return tf.cast(linear(x, self.fc2.kernel, self.fc2.bias), stream)

  def call(self, x, norm=None, training=None):
    """x: (B, H, W, dim) -> (B, H, W, out_dim).

    With `norm`, a layer norm (Keras `LayerNormalization`) comes first: x
    is `normalize`d and the norm's gamma and beta are applied through fc1
    (`fold_affine`). Tiled (by default at inference), the rows are
    processed in bands of at most `chunk_bytes` of hidden activations,
    each with one row of context above and below for the depthwise conv.
    """
    if not tiling.resolve_tiled(self.tiled, training):
      return self._rows(x, norm)
    height = tf.shape(x)[1]
    row_bytes = (tf.shape(x)[2] * 2 * self.half *
                 tf.as_dtype(self.compute_dtype).size)
    return tiling.map_row_bands(
        lambda band, rows: self._rows(
            band, norm, (rows >= 0) & (rows < height)),
        x, tf.maximum(self.chunk_bytes // row_bytes, 1),
        halo=self.dwconv.kernel_size // 2)

  def _torch_children(self):
    # The depthwise conv sits inside a `DWConv` wrapper: `dwconv.dwconv.*`.
    return [("fc1", self.fc1), ("dwconv.dwconv", self.dwconv),
            ("fc2", self.fc2)]
