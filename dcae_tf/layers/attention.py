"""Windowed self-attention with the convolutional GLU: the Swin+conv stages.

These follow the official `WMSA`, `ConvolutionalGLU`,
`ResScaleConvolutionGateBlock` and `SwinBlockWithConvMulti`. All tensors are
NHWC; feature maps must be a whole number of windows (the model pads its input
so that they are, see `DCAEConfig.pad_multiple`).
"""
import numpy as np
import tensorflow as tf

from dcae_tf.layers import base


def _relative_position_index(window):
  """Index into the flattened (2w-1, 2w-1) bias table for each (p, q) pair."""
  coords = np.array([[i, j] for i in range(window) for j in range(window)])
  rel = coords[:, None, :] - coords[None, :, :] + window - 1
  return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _shift_masks(window):
  """Pixel-pair masks of the last window row / column after the cyclic shift.

  In the last window row (column), pixels that came from the top (left) of
  the image by the roll must not attend to those that did not: the official
  `generate_mask` with `s = window - window // 2`.
  """
  s = window - window // 2
  first = np.arange(window) < s
  cross = first[:, None] != first[None, :]  # (window, window)
  p = np.arange(window * window)
  rows = cross[p[:, None] // window, p[None, :] // window]
  cols = cross[p[:, None] % window, p[None, :] % window]
  return rows, cols


def normalize(x, epsilon):
  """Layer norm without its affine part: (x - mean) / sqrt(var + epsilon).

  The MLP's layer norm feeds fc1, which takes its gamma and beta
  (`fold_affine`). Applied to x instead, as Keras's LayerNormalization
  does, the affine part makes three more tensors of x's size
  (gamma * rsqrt(var), its product with the mean, beta minus that) on the
  widest feature maps of the model.
  """
  mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
  inv = tf.math.rsqrt(variance + epsilon)
  return x * inv - mean * inv


def fold_affine(norm, kernel, bias):
  """(kernel, bias) of `dense(norm(x))` for the input `normalize(x)`.

  (n * gamma + beta) @ W + b = n @ (gamma[:, None] * W) + (beta @ W + b):
  two small products per call instead of passes over the feature map.
  Called inside a layer's call, they wait for its input like its weight
  reads (`base.TorchNamed`), so no block's folded kernel is made early.
  """
  return (norm.gamma[:, None] * kernel,
          bias + tf.linalg.matvec(kernel, norm.beta, transpose_a=True))


def linear(x, kernel, bias):
  """x @ kernel + bias over the last axis, as one MatMul with a fused bias."""
  shape = tf.shape(x)
  out = tf.nn.bias_add(tf.matmul(tf.reshape(x, (-1, x.shape[-1])), kernel),
                       bias)
  return tf.reshape(out, tf.concat([shape[:-1], [kernel.shape[-1]]], 0))


# Largest attention logits of one chunk of windows at inference, in bytes.
# The P x P logits of all windows of a block are the largest tensor of the
# codec (12 heads x 64 x 64 per window at half resolution: 300 MB for a
# 768 x 512 image, 6 GB for 4K); computed a chunk at a time, their memory
# is bounded by this for any image size and a chunk (with its softmax) stays
# in the last-level cache. Results are bit-identical to the single product.
ATTENTION_CHUNK_BYTES = 16 * 2 ** 20


def _chunk_windows(heads, pixels, dtype, budget):
  """Most windows per chunk whose logits fit `budget` (at least one)."""
  per_window = heads * pixels * pixels * tf.as_dtype(dtype).size
  return max(1, budget // per_window)


class WindowAttention(base.TorchNamed, tf.keras.layers.Layer):
  """(Shifted) window multi-head self-attention with relative position bias.

  Official `WMSA`: one linear layer makes q, k, v laid out as
  (3 * heads, head_dim) along channels; shifted windows roll the map by
  -window // 2 and mask pairs that wrapped around.

  At inference the attention itself runs over chunks of windows (see
  `ATTENTION_CHUNK_BYTES`). Training keeps one batched product: backprop
  keeps every chunk's activations anyway, and a single product is what XLA
  and GPUs want.
  """

  def __init__(self, dim, head_dim, window, shifted,
               chunk_bytes=ATTENTION_CHUNK_BYTES, **kwargs):
    super().__init__(**kwargs)
    if dim % head_dim:
      raise ValueError(f"dim {dim} not divisible by head_dim {head_dim}")
    self.dim = dim
    self.head_dim = head_dim
    self.heads = dim // head_dim
    self.window = window
    self.shifted = shifted
    self.chunk_bytes = chunk_bytes
    self.qkv = base.dense(3 * dim, name="embedding_layer")
    self.proj = base.dense(dim, name="linear")
    self._rel_index = tf.constant(_relative_position_index(window), tf.int32)
    rows, cols = _shift_masks(window)
    self._mask_rows = tf.constant(rows)
    self._mask_cols = tf.constant(cols)

  def build(self, input_shape):
    n = 2 * self.window - 1
    self.relative_position_params = self.add_weight(
        "relative_position_params", (self.heads, n, n),
        initializer=tf.keras.initializers.TruncatedNormal(stddev=.02))
    # The projections are built, never called (see `linear`), under their
    # own scopes so their weights keep the names a call would give them.
    for dense in (self.qkv, self.proj):
      with tf.name_scope(dense.name):
        dense.build(tf.TensorShape([None, self.dim]))
    super().build(input_shape)

  def _bias(self):
    table = tf.reshape(self.relative_position_params, (self.heads, -1))
    return tf.gather(table, self._rel_index, axis=1)  # (heads, P, P)

  def _attend(self, qkv, bias, first, nh, nw):
    """Attention of consecutive windows.

    Args:
      qkv: (windows, P, 3 * dim) projections of whole windows, numbered
        row-major over (batch, nh, nw) starting at window `first`.
      bias: (heads, P, P) relative position bias (`_bias()`).
      first: index of qkv's first window.
      nh, nw: windows per column / row of the map (for the shift mask).

    Returns:
      (windows, P, dim): the heads' outputs, concatenated per pixel.
    """
    windows, p = tf.shape(qkv)[0], self.window ** 2
    qkv = tf.reshape(qkv, (windows, p, 3, self.heads, self.head_dim))
    qkv = tf.transpose(qkv, (2, 0, 3, 1, 4))  # (3, windows, heads, P, c)
    # Scaling q, not the P x P logits: head_dim / P times fewer multiplies,
    # and one pass less over the largest tensor of the block.
    q, k, v = qkv[0] * (self.head_dim ** -.5), qkv[1], qkv[2]
    sim = tf.matmul(q, k, transpose_b=True) + bias
    if self.shifted:
      # Windows of the last row / column hold pixels the roll wrapped.
      index = (first + tf.range(windows)) % (nh * nw)
      last_row = tf.equal(index // nw, nh - 1)[:, None, None]
      last_col = tf.equal(index % nw, nw - 1)[:, None, None]
      mask = tf.logical_or(tf.logical_and(last_row, self._mask_rows),
                           tf.logical_and(last_col, self._mask_cols))
      sim = tf.where(mask[:, None], tf.constant(-np.inf, sim.dtype), sim)
    out = tf.matmul(tf.nn.softmax(sim, axis=-1), v)  # (windows, heads, P, c)
    return tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (windows, p, self.dim))

  def _attend_chunked(self, qkv, nh, nw):
    """`_attend` over chunks of windows, one after the other."""
    p = self.window ** 2
    most = _chunk_windows(self.heads, p, self.compute_dtype, self.chunk_bytes)
    windows = tf.shape(qkv)[0]
    # Equal chunks of at most `most` windows: the padding (zero windows,
    # cropped off below) is less than one window per chunk.
    num_chunks = (windows + most - 1) // most
    chunk = (windows + num_chunks - 1) // num_chunks
    qkv = tf.pad(qkv, [[0, num_chunks * chunk - windows], [0, 0], [0, 0]])
    bias = self._bias()

    def body(i, outputs):
      first = i * chunk
      part = tf.slice(qkv, tf.stack([first, 0, 0]),
                      tf.stack([chunk, p, 3 * self.dim]))
      return i + 1, outputs.write(i, self._attend(part, bias, first, nh, nw))

    outputs = tf.TensorArray(qkv.dtype, size=num_chunks,
                             element_shape=tf.TensorShape((None, p, self.dim)))
    # One chunk at a time: that is what bounds the memory.
    _, outputs = tf.while_loop(lambda i, _: i < num_chunks, body,
                               (tf.constant(0), outputs),
                               parallel_iterations=1)
    return outputs.concat()[:windows]

  def call(self, x, training=None):
    w = self.window
    shift = w // 2
    if self.shifted:
      x = tf.roll(x, shift=(-shift, -shift), axis=(1, 2))
    shape = tf.shape(x)
    b, h, wd = shape[0], shape[1], shape[2]
    nh, nw = h // w, wd // w
    # (B, nh, w, nw, w, C) -> (B * nh * nw, w * w, C)
    x = tf.reshape(x, (b, nh, w, nw, w, self.dim))
    x = tf.transpose(x, (0, 1, 3, 2, 4, 5))
    qkv = linear(tf.reshape(x, (-1, self.dim)), self.qkv.kernel,
                 self.qkv.bias)
    qkv = tf.reshape(qkv, (b * nh * nw, w * w, 3 * self.dim))
    if training:
      out = self._attend(qkv, self._bias(), 0, nh, nw)
    else:
      out = self._attend_chunked(qkv, nh, nw)
    out = linear(out, self.proj.kernel, self.proj.bias)
    out = tf.reshape(out, (b, nh, nw, w, w, self.dim))
    out = tf.transpose(out, (0, 1, 3, 2, 4, 5))
    out = tf.reshape(out, (b, h, wd, self.dim))
    if self.shifted:
      out = tf.roll(out, shift=(shift, shift), axis=(1, 2))
    return out

  def _torch_params(self):
    return [("relative_position_params", self.relative_position_params,
             "same")]

  def _torch_children(self):
    return [("embedding_layer", self.qkv), ("linear", self.proj)]


class ConvGLU(base.TorchNamed, tf.keras.layers.Layer):
  """Convolutional GLU (official `ConvolutionalGLU`).

  fc1 makes 2 x (hidden / 2) channels split into (x, v) in that order; x goes
  through a depthwise 3x3 and GELU and gates v; fc2 projects back.
  """

  def __init__(self, dim, hidden, out_dim=None, **kwargs):
    super().__init__(**kwargs)
    self.half = hidden // 2
    self.fc1 = base.dense(2 * self.half, name="fc1")
    self.dwconv = base.DepthwiseConv2D(3, name="dwconv")
    self.fc2 = base.dense(out_dim or dim, name="fc2")

  def build(self, input_shape):
    # Built, never called (see call); under their own scopes so their
    # weights keep the names (`.../mlp/fc1/kernel`) a call would give them.
    for dense, dim in ((self.fc1, input_shape[-1]), (self.fc2, self.half)):
      with tf.name_scope(dense.name):
        dense.build(tf.TensorShape([None, dim]))
    super().build(input_shape)

  def call(self, x, norm=None):
    """x: (B, H, W, dim) -> (B, H, W, out_dim).

    With `norm`, x is `normalize`d and the layer norm `norm`'s gamma and
    beta are applied through fc1 (`fold_affine`).
    """
    kernel, bias = self.fc1.kernel, self.fc1.bias
    if norm is not None:
      kernel, bias = fold_affine(norm, kernel, bias)
    # fc1's kernel is split instead of its output: the same two products
    # without copying the (large) activations into halves.
    kernel_x, kernel_v = tf.split(kernel, 2, axis=-1)
    bias_x, bias_v = tf.split(bias, 2)
    x, v = linear(x, kernel_x, bias_x), linear(x, kernel_v, bias_v)
    x = base.gelu(self.dwconv(x)) * v
    return linear(x, self.fc2.kernel, self.fc2.bias)

  def _torch_children(self):
    # The depthwise conv sits inside a `DWConv` wrapper: `dwconv.dwconv.*`.
    return [("fc1", self.fc1), ("dwconv.dwconv", self.dwconv),
            ("fc2", self.fc2)]


class SwinBlock(base.TorchNamed, tf.keras.layers.Layer):
  """Official `ResScaleConvolutionGateBlock`: attention + ConvGLU with
  learned residual scales instead of plain identity shortcuts."""

  def __init__(self, dim, head_dim, window, shifted, mlp_ratio, epsilon,
               **kwargs):
    super().__init__(**kwargs)
    self.ln1 = base.layer_norm(epsilon, name="ln1")
    self.msa = WindowAttention(dim, head_dim, window, shifted, name="msa")
    self.ln2 = base.layer_norm(epsilon, name="ln2")
    self.mlp = ConvGLU(dim, mlp_ratio * dim, name="mlp")
    self.res_scale_1 = base.Scale(name="res_scale_1")
    self.res_scale_2 = base.Scale(name="res_scale_2")

  def build(self, input_shape):
    # ln2 holds gamma and beta for fc1 (`fold_affine`): built, never
    # called, under its own scope. (Folding ln1 into the attention's qkv
    # projection the same way raised the peak memory of g_s by 150 MB,
    # measured 2026-11-26, cause not found; so ln1 stays a plain call.)
    with tf.name_scope(self.ln2.name):
      self.ln2.build(input_shape)
    super().build(input_shape)

  def call(self, x):
    x = self.res_scale_1(x) + self.msa(self.ln1(x))
    return self.res_scale_2(x) + self.mlp(normalize(x, self.ln2.epsilon),
                                          norm=self.ln2)

  def _torch_children(self):
    return [(n, getattr(self, n)) for n in
            ("ln1", "msa", "ln2", "mlp", "res_scale_1", "res_scale_2")]


class SwinStage(base.TorchNamed, tf.keras.layers.Layer):
  """Official `SwinBlockWithConvMulti`: alternating W / SW blocks, a 3x3
  conv, and a shortcut around the whole stage.

  The official code pads feature maps no larger than one window without
  cropping back, which only happens at sizes where it then crashes; the model
  here pads its input instead, so this never arises.
  """

  def __init__(self, dim, head_dim, window, depth, mlp_ratio, epsilon,
               **kwargs):
    super().__init__(**kwargs)
    self.blocks = [
        SwinBlock(dim, head_dim, window, shifted=bool(i % 2),
                  mlp_ratio=mlp_ratio, epsilon=epsilon, name=f"layers_{i}")
        for i in range(depth)]
    self.conv = base.Conv2D(dim, 3, name="conv")

  def call(self, x):
    y = x
    for block in self.blocks:
      y = block(y)
    return self.conv(y) + x

  def _torch_children(self):
    return ([(f"layers.{i}", b) for i, b in enumerate(self.blocks)] +
            [("conv", self.conv)])
