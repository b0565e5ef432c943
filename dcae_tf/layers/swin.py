"""Windowed self-attention with the convolutional GLU: the Swin+conv stages.

These follow the official `WMSA`, `ResScaleConvolutionGateBlock` and
`SwinBlockWithConvMulti`; the convolutional GLU is `mlp.ConvGLU`. All
tensors are NHWC; feature maps must be a whole number of windows (the model
pads its input so that they are, see `DCAEConfig.pad_multiple`).

A block's or stage's own Keras dtype policy (`dtype`) is its residual
stream's, its layer norms' and residual scales'; `branch_dtype` is its
attention's, MLPs' and convolution's (by default the block's own), so a
bfloat16 transform (`codec.transform_dtype`) can compute those in bfloat16
around a float32 stream. The attention and the MLP give their own policy
to the layers inside them.
"""
import numpy as np
import tensorflow as tf

from dcae_tf.layers import base
from dcae_tf.layers import exact
from dcae_tf.layers import exact_functions
from dcae_tf.layers import mlp
from dcae_tf.layers import tiling


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


class WindowAttention(base.ReadsWeightsAfterInputs, base.TorchNamed,
                      tf.keras.layers.Layer):
  """(Shifted) window multi-head self-attention with relative position bias.

  Official `WMSA`: one linear layer makes q, k, v laid out as
  (3 * heads, head_dim) along channels; shifted windows roll the map by
  -window // 2 and mask pairs that wrapped around.

  Tiled (by default at inference, see `tiling`), it runs over bands of
  window rows (`tiling.map_row_bands`), from the q, k, v projection to the
  output projection, with at most `chunk_bytes` of logits per band
  (`tiling.ATTENTION_CHUNK_BYTES`; a band of one window row too wide for
  that is split into chunks of windows). Untiled (by default in training)
  it is one batched product.
  """

  def __init__(self, dim, head_dim, window, shifted,
               chunk_bytes=tiling.ATTENTION_CHUNK_BYTES, **kwargs):
    super().__init__(**kwargs)
    if dim % head_dim:
      raise ValueError(f"dim {dim} not divisible by head_dim {head_dim}")
    self.dim = dim
    self.head_dim = head_dim
    self.heads = dim // head_dim
    self.window = window
    self.shifted = shifted
    self.chunk_bytes = chunk_bytes
    # None: tiled at inference, whole-map in training (`tiling`).
    self.tiled = None
    self.qkv = base.dense(3 * dim, name="embedding_layer",
                          dtype=self.dtype_policy)
    self.proj = base.dense(dim, name="linear", dtype=self.dtype_policy)
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
    if exact.active():
      table = exact.to_exact(table)
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
    matmul = exact.matmul if exact.active() else tf.matmul
    sim = matmul(q, k, transpose_b=True) + bias
    if self.shifted:
      # Windows of the last row / column hold pixels the roll wrapped.
      index = (first + tf.range(windows)) % (nh * nw)
      last_row = tf.equal(index // nw, nh - 1)[:, None, None]
      last_col = tf.equal(index % nw, nw - 1)[:, None, None]
      mask = tf.logical_or(tf.logical_and(last_row, self._mask_rows),
                           tf.logical_and(last_col, self._mask_cols))
      sim = tf.where(mask[:, None], tf.constant(-np.inf, sim.dtype), sim)
    if exact.active():
      out = exact_functions.softmax_matmul(sim, v)
    else:
      out = tf.matmul(tf.nn.softmax(sim, axis=-1), v)  # (windows, heads, P, c)
    return tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (windows, p, self.dim))

  def _attend_chunked(self, qkv, bias, first, nh, nw):
    """`_attend` over chunks of windows, one after the other."""
    p = self.window ** 2
    most = tiling.chunk_windows(self.heads, p, self.compute_dtype,
                                self.chunk_bytes)
    windows = tf.shape(qkv)[0]
    # The padding (zero windows, cropped off below) is less than one window
    # per chunk.
    num_chunks, chunk = tiling.equal_parts(windows, most)
    qkv = tf.pad(qkv, [[0, num_chunks * chunk - windows], [0, 0], [0, 0]])

    def attend(i):
      start = i * chunk
      part = tf.slice(qkv, tf.stack([start, 0, 0]),
                      tf.stack([chunk, p, 3 * self.dim]))
      return self._attend(part, bias, first + start, nh, nw)

    return tiling.sequential_concat(num_chunks, attend, qkv.dtype,
                             tf.TensorShape((None, p, self.dim)))[:windows]

  def _attend_rows(self, x, bias, first_row, nh, nw, chunked):
    """Attention output for x (B, rows, W, dim), whole rows of windows.

    `first_row` is x's first row in the (rolled) map, for the shift mask;
    with `chunked`, the windows are attended over chunks of at most
    `chunk_bytes` of logits.
    """
    w = self.window
    shape = tf.shape(x)
    b, h, wd = shape[0], shape[1], shape[2]
    rows, cols = h // w, wd // w
    # (B, rows, w, cols, w, C) -> (B * rows * cols * w * w, C)
    x = tf.reshape(x, (b, rows, w, cols, w, self.dim))
    x = tf.transpose(x, (0, 1, 3, 2, 4, 5))
    qkv = mlp.linear(tf.reshape(x, (-1, self.dim)), self.qkv.kernel,
                 self.qkv.bias)
    qkv = tf.reshape(qkv, (b * rows * cols, w * w, 3 * self.dim))
    first = first_row // w * nw
    if chunked:
      out = self._attend_chunked(qkv, bias, first, nh, nw)
    else:
      out = self._attend(qkv, bias, first, nh, nw)
    out = mlp.linear(out, self.proj.kernel, self.proj.bias)
    out = tf.reshape(out, (b, rows, cols, w, w, self.dim))
    out = tf.transpose(out, (0, 1, 3, 2, 4, 5))
    return tf.reshape(out, (b, h, wd, self.dim))

  def call(self, x, training=None):
    w = self.window
    shift = w // 2
    if self.shifted:
      x = tf.roll(x, shift=(-shift, -shift), axis=(1, 2))
    shape = tf.shape(x)
    nh, nw = shape[1] // w, shape[2] // w
    bias = self._bias()
    if not tiling.resolve_tiled(self.tiled, training):
      out = self._attend_rows(x, bias, 0, nh, nw, chunked=False)
    else:
      # A band of window rows at a time, as many as `chunk_bytes` of
      # logits allow (at least one; its windows are then chunked): the
      # q, k, v projections (3 x the map) stay per band too.
      most = tiling.chunk_windows(self.heads, w * w, self.compute_dtype,
                            self.chunk_bytes)
      out = tiling.map_row_bands(
          lambda band, rows: self._attend_rows(band, bias, rows[0], nh, nw,
                                               chunked=True),
          x, tf.maximum(most // nw, 1) * w, multiple=w)
    if self.shifted:
      out = tf.roll(out, shift=(shift, shift), axis=(1, 2))
    return out

  def _torch_params(self):
    return [("relative_position_params", self.relative_position_params,
             "same")]

  def _torch_children(self):
    return [("embedding_layer", self.qkv), ("linear", self.proj)]


class SwinBlock(base.ReadsWeightsAfterInputs, base.TorchNamed,
                tf.keras.layers.Layer):
  """Official `ResScaleConvolutionGateBlock`: attention + ConvGLU with
  learned residual scales instead of plain identity shortcuts."""

  def __init__(self, dim, head_dim, window, shifted, mlp_ratio, epsilon,
               branch_dtype=None, **kwargs):
    super().__init__(**kwargs)
    stream = self.dtype_policy
    branch_dtype = branch_dtype or stream
    self.ln1 = base.layer_norm(epsilon, name="ln1", dtype=stream)
    self.msa = WindowAttention(dim, head_dim, window, shifted, name="msa",
                               dtype=branch_dtype)
    self.ln2 = base.layer_norm(epsilon, name="ln2", dtype=stream)
    self.mlp = mlp.ConvGLU(dim, mlp_ratio * dim, name="mlp", dtype=branch_dtype)
    self.res_scale_1 = base.Scale(name="res_scale_1", dtype=stream)
    self.res_scale_2 = base.Scale(name="res_scale_2", dtype=stream)

  def build(self, input_shape):
    # ln2 holds gamma and beta for fc1 (`fold_affine`): built, never
    # called, under its own scope. (Folding ln1 into the attention's qkv
    # projection the same way raised the peak memory of g_s by 150 MB,
    # measured 2026-11-26, cause not found; so ln1 stays a plain call.)
    with tf.name_scope(self.ln2.name):
      self.ln2.build(input_shape)
    super().build(input_shape)

  def call(self, x):
    x = base.residual_add(self.res_scale_1(x), self.msa(self.ln1(x)))
    return base.residual_add(self.res_scale_2(x), self.mlp(x, norm=self.ln2))

  def _torch_children(self):
    return [(n, getattr(self, n)) for n in
            ("ln1", "msa", "ln2", "mlp", "res_scale_1", "res_scale_2")]


class SwinStage(base.ReadsWeightsAfterInputs, base.TorchNamed,
                tf.keras.layers.Layer):
  """Official `SwinBlockWithConvMulti`: alternating W / SW blocks, a 3x3
  conv, and a shortcut around the whole stage.

  The official code pads feature maps no larger than one window without
  cropping back, which only happens at sizes where it then crashes; the model
  here pads its input instead, so this never arises.
  """

  def __init__(self, dim, head_dim, window, depth, mlp_ratio, epsilon,
               branch_dtype=None, **kwargs):
    super().__init__(**kwargs)
    branch_dtype = branch_dtype or self.dtype_policy
    self.blocks = [
        SwinBlock(dim, head_dim, window, shifted=bool(i % 2),
                  mlp_ratio=mlp_ratio, epsilon=epsilon,
                  branch_dtype=branch_dtype, name=f"layers_{i}",
                  dtype=self.dtype_policy)
        for i in range(depth)]
    self.conv = base.Conv2D(dim, 3, name="conv", dtype=branch_dtype)

  def call(self, x):
    y = x
    for block in self.blocks:
      y = block(y)
    return base.residual_add(x, self.conv(y))

  def _torch_children(self):
    return ([(f"layers.{i}", b) for i, b in enumerate(self.blocks)] +
            [("conv", self.conv)])
