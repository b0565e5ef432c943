"""Dictionary cross-attention (official `MutiScaleDictionaryCrossAttentionGLU`).

The entropy model's distinctive part: each slice's context queries a learned
dictionary shared by all slices, so typical structures of natural images
learned in training can inform the distribution of the current slice.

Each layer constructs its sub-layers in its own Keras dtype policy
(`dtype`), so the policy given to the outermost one is the whole tree's,
whatever Keras's global policy is.
"""
import tensorflow as tf

from dcae_tf.layers import base
from dcae_tf.layers import exact
from dcae_tf.layers import exact_functions
from dcae_tf.layers import mlp


class SpatialAttention(base.ReadsWeightsAfterInputs, base.TorchNamed,
                       tf.keras.layers.Layer):
  """Gate from channel mean and max -> 7x7 conv (no bias) -> sigmoid."""

  def __init__(self, kernel_size, **kwargs):
    super().__init__(**kwargs)
    self.conv1 = base.Conv2D(1, kernel_size, use_bias=False, name="conv1",
                             dtype=self.dtype_policy)

  def call(self, x):
    if exact.active():
      pooled = tf.concat([exact.reduce_mean(x, -1),
                          tf.reduce_max(x, -1, keepdims=True)], axis=-1)
      return exact_functions.sigmoid(self.conv1(pooled))
    pooled = tf.concat([tf.reduce_mean(x, -1, keepdims=True),
                        tf.reduce_max(x, -1, keepdims=True)], axis=-1)
    return tf.sigmoid(self.conv1(pooled))

  def _torch_children(self):
    return [("conv1", self.conv1)]


class ConvWithDW(base.ReadsWeightsAfterInputs, base.TorchNamed,
                 tf.keras.layers.Layer):
  """1x1 -> GELU -> depthwise 3x3 -> GELU -> 1x1."""

  def __init__(self, dim, **kwargs):
    super().__init__(**kwargs)
    policy = self.dtype_policy
    self.in_trans = base.Conv2D(dim, 1, name="in_trans", dtype=policy)
    self.dw_conv = base.DepthwiseConv2D(3, name="dw_conv", dtype=policy)
    self.out_trans = base.Conv2D(dim, 1, name="out_trans", dtype=policy)

  def call(self, x):
    x = base.gelu(self.in_trans(x))
    x = base.gelu(self.dw_conv(x))
    return self.out_trans(x)

  def _torch_children(self):
    return [("in_trans", self.in_trans), ("dw_conv", self.dw_conv),
            ("out_trans", self.out_trans)]


class DenseBlock(base.ReadsWeightsAfterInputs, base.TorchNamed,
                 tf.keras.layers.Layer):
  """Chained GELU -> ConvWithDW layers; input and every output are
  concatenated and projected back by a 1x1 conv (multi-scale receptive
  fields at the cost of a few depthwise convs)."""

  def __init__(self, dim, num_layers, **kwargs):
    super().__init__(**kwargs)
    # Official: `nn.Sequential(nn.GELU(), ConvWithDW)`, so the conv is `.1`.
    policy = self.dtype_policy
    self.convs = [ConvWithDW(dim, name=f"conv_layers_{i}", dtype=policy)
                  for i in range(num_layers)]
    self.proj = base.Conv2D(dim, 1, name="proj", dtype=policy)

  def call(self, x):
    outputs = [x]
    for conv in self.convs:
      outputs.append(conv(base.gelu(outputs[-1])))
    return self.proj(tf.concat(outputs, axis=-1))

  def _torch_children(self):
    return ([(f"conv_layers.{i}.1", c) for i, c in enumerate(self.convs)] +
            [("proj", self.proj)])


class MultiScaleAggregation(base.ReadsWeightsAfterInputs, base.TorchNamed,
                            tf.keras.layers.Layer):
  """1x1 conv, dense block, spatial attention gate."""

  def __init__(self, dim, dense_layers, kernel_size, **kwargs):
    super().__init__(**kwargs)
    policy = self.dtype_policy
    self.s = base.Conv2D(dim, 1, name="s", dtype=policy)
    self.dense = DenseBlock(dim, dense_layers, name="dense", dtype=policy)
    self.spatial_atte = SpatialAttention(kernel_size, name="spatial_atte",
                                         dtype=policy)

  def call(self, x):
    s = self.dense(self.s(x))
    return s * self.spatial_atte(s)

  def _torch_children(self):
    return [("s", self.s), ("spatial_atte", self.spatial_atte),
            ("dense", self.dense)]


class DictionaryCrossAttention(base.ReadsWeightsAfterInputs, base.TorchNamed,
                               tf.keras.layers.Layer):
  """Queries from the slice context, keys from a linear map of the
  layer-normed dictionary, values that *are* the layer-normed dictionary;
  a learned per-head scale multiplies q.k (no 1/sqrt(d))."""

  def __init__(self, config, out_channels, **kwargs):
    super().__init__(**kwargs)
    c = config
    dim = c.dict_dim
    self.heads = c.dict_heads
    self.head_dim = c.dict_head_dim
    eps = c.layernorm_epsilon
    policy = self.dtype_policy
    self.x_trans = base.dense(dim, name="x_trans", dtype=policy)
    self.ln_scale = base.layer_norm(eps, name="ln_scale", dtype=policy)
    self.msa = MultiScaleAggregation(dim, c.dict_dense_layers,
                                     c.spatial_attention_kernel, name="msa",
                                     dtype=policy)
    self.lnx = base.layer_norm(eps, name="lnx", dtype=policy)
    self.q_trans = base.dense(dim, name="q_trans", dtype=policy)
    self.dict_ln = base.layer_norm(eps, name="dict_ln", dtype=policy)
    self.k = base.dense(dim, name="k", dtype=policy)
    self.linear = base.dense(dim, name="linear", dtype=policy)
    self.ln_mlp = base.layer_norm(eps, name="ln_mlp", dtype=policy)
    self.mlp = mlp.ConvGLU(dim, c.dict_mlp_ratio * dim, name="mlp",
                           dtype=policy)
    self.output_trans = base.dense(out_channels, name="output_trans",
                                   dtype=policy)
    self.res_scale_1 = base.Scale(name="res_scale_1", dtype=policy)
    self.res_scale_2 = base.Scale(name="res_scale_2", dtype=policy)
    self.res_scale_3 = base.Scale(name="res_scale_3", dtype=policy)

  def build(self, input_shape):
    self.scale = self.add_weight("scale", (self.heads, 1, 1),
                                 initializer="ones")
    super().build(input_shape)

  def call(self, x, dictionary):
    """x: (B, H, W, C) slice context; dictionary: (entries, dict_dim)."""
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    x = self.x_trans(x)
    x = self.msa(self.ln_scale(x)) + self.res_scale_1(x)
    shortcut = x
    q = self.q_trans(self.lnx(x))
    q = tf.reshape(q, (b, h * w, self.heads, self.head_dim))
    d = self.dict_ln(dictionary)
    k = tf.reshape(self.k(d), (-1, self.heads, self.head_dim))
    v = tf.reshape(d, (-1, self.heads, self.head_dim))
    if exact.active():
      # (b, heads, n, c) x (heads, c, d): the same products as the einsums.
      q = tf.transpose(q, (0, 2, 1, 3))
      sim = exact.matmul(q, tf.transpose(k, (1, 2, 0))[None])
      sim *= exact.to_exact(self.scale)[None]
      out = exact_functions.softmax_matmul(
          sim, tf.transpose(v, (1, 0, 2))[None])
      out = tf.transpose(out, (0, 2, 1, 3))
    else:
      sim = tf.einsum("bnec,dec->bend", q, k) * self.scale[None]
      probs = tf.nn.softmax(sim, axis=-1)
      out = tf.einsum("bend,dec->bnec", probs, v)
    out = tf.reshape(out, (b, h, w, self.heads * self.head_dim))
    out = self.linear(out) + self.res_scale_2(shortcut)
    out = self.mlp(self.ln_mlp(out)) + self.res_scale_3(out)
    return self.output_trans(out)

  def _torch_params(self):
    return [("scale", self.scale, "same")]

  def _torch_children(self):
    names = ("x_trans", "ln_scale", "msa", "lnx", "q_trans", "dict_ln", "k",
             "linear", "ln_mlp", "mlp", "res_scale_1", "res_scale_2",
             "res_scale_3")
    return ([(n, getattr(self, n)) for n in names] +
            [("output_trans.0", self.output_trans)])
