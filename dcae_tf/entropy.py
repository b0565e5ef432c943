"""The entropy model: hyperprior on z, dictionary-conditioned slices for y.

The slice loop (`SliceEntropyModel.run`) is the heart of DCAE and the one
place where encoder and decoder must agree bit for bit, so it exists once: the
forward pass, `compress` and `decompress` all call it with a different
`quantize` callback (noise or rounding for training and rate estimation,
range *encoding* for compress, range *decoding* for decompress).
"""
import decimal
import functools
import math

import tensorflow as tf
import tensorflow_compression as tfc

from dcae_tf.layers import base
from dcae_tf.layers import dictionary
from dcae_tf.layers import exact
from dcae_tf.layers import exact_functions

SLICE_KERNEL = 3


def _log_table(config):
  """(log of the smallest scale, log step) of the scale table."""
  log_min = math.log(config.scale_min)
  return log_min, (math.log(config.scale_max) - log_min) / (
      config.scale_levels - 1)


def scale_table_fn(config):
  """index -> scale on the official log-spaced table (0.11 ... 256, 64)."""
  log_min, step = _log_table(config)

  def scale_fn(index):
    return tf.math.exp(log_min + step * tf.cast(index, tf.float32))

  return scale_fn


def scale_to_index(config, scale):
  """Nearest table index (float, integer-valued) of each lower-bounded scale.

  Used only for range coding; rate estimates use the real scale, like the
  official forward pass. Encoder and decoder compute this from identical
  inputs, so they agree exactly.
  """
  index = tf.round(scale_position(config, scale))
  return tf.clip_by_value(index, 0., config.scale_levels - 1.)


def scale_position(config, scale):
  """Where each lower-bounded scale lies on the table, in (fractional)
  indexes: `scale_to_index` rounds and clips it."""
  log_min, step = _log_table(config)
  return (tf.math.log(tf.maximum(scale, config.scale_min)) - log_min) / step


# Digits of the decimal arithmetic that computes the scale table exactly.
_TABLE_DIGITS = 40


def _log_spaced(config, offset):
  """exp(log(scale_min) + (k + offset) * step), k = 0 .. levels - 1, as
  correctly rounded Python floats: Python's `decimal` is exactly specified,
  so every machine gets the same numbers (unlike a platform's exp)."""
  with decimal.localcontext() as ctx:
    ctx.prec = _TABLE_DIGITS
    log_min = decimal.Decimal(repr(config.scale_min)).ln()
    log_max = decimal.Decimal(repr(config.scale_max)).ln()
    step = (log_max - log_min) / (config.scale_levels - 1)
    return [float((log_min + (k + decimal.Decimal(offset)) * step).exp())
            for k in range(config.scale_levels)]


def exact_scale_table(config):
  """The codec's scale table, the same floats on every machine."""
  return _log_spaced(config, 0)


def exact_scale_index(config, scale):
  """Table index of each scale, exactly: the number of midpoints (in log
  space) between table entries that the scale reaches. The same as
  `scale_to_index` but for scales on a midpoint, and a comparison, so the
  same integers on every machine for the same scales."""
  midpoints = tf.constant(_log_spaced(config, .5)[:-1], scale.dtype)
  flat = tf.reshape(scale, [1, -1])
  index = tf.searchsorted(midpoints[None], flat, side="right",
                          out_type=tf.int32)
  return tf.reshape(index, tf.shape(scale))


def y_likelihood(config, values, mu, scale):
  """Likelihood of `values` under N(mu, max(scale, 0.11)) * U(-.5, .5)."""
  scale = tfc.lower_bound(scale, config.scale_min)
  prob = tfc.NoisyNormal(loc=mu, scale=scale).prob(values)
  return tfc.lower_bound(prob, config.likelihood_bound)


def bits_of(likelihoods):
  """Information content in bits, summed per image (over H, W, C)."""
  return tf.reduce_sum(-tf.math.log(likelihoods), axis=(1, 2, 3)) / math.log(2.)


def _slice_network(config, out_channels, name, dtype=None):
  """conv3x3 -> GELU -> conv3x3 -> GELU -> conv3x3 (official cc_* / lrp),
  in the Keras dtype policy `dtype`."""
  h1, h2 = config.slice_hidden
  return base.Sequential([
      base.Conv2D(h1, SLICE_KERNEL, name="conv0", dtype=dtype), base.gelu,
      base.Conv2D(h2, SLICE_KERNEL, name="conv1", dtype=dtype), base.gelu,
      base.Conv2D(out_channels, SLICE_KERNEL, name="conv2", dtype=dtype),
  ], name=name, dtype=dtype)


def _unshared(name, fn):
  del name
  return fn


class SliceEntropyModel(base.ReadsWeightsAfterInputs, base.TorchNamed,
                        tf.keras.layers.Layer):
  """Channel-conditional slices with dictionary cross-attention and LRP.

  Slice i's context is [latent_scales, latent_means, y_hat_0 .. y_hat_{i-1}]
  (at most `max_support_slices` previous slices), followed by what that
  context retrieves from the shared dictionary. Mean and scale networks read
  the context; the LRP network also reads the quantised slice and predicts
  the quantisation residual (bounded by `lrp_gain * tanh`).

  Its networks and their sub-layers are constructed in its own Keras dtype
  policy (`dtype`), not in the global one.
  """

  def __init__(self, config, **kwargs):
    super().__init__(**kwargs)
    c = config
    self.config = c
    n = c.num_slices
    policy = self.dtype_policy
    self.cross_attention = [
        dictionary.DictionaryCrossAttention(c, c.latent_channels,
                                            name=f"dt_cross_attention_{i}",
                                            dtype=policy)
        for i in range(n)]
    cs = c.slice_channels
    self.mean_nets = [_slice_network(c, cs, f"cc_mean_{i}", policy)
                      for i in range(n)]
    self.scale_nets = [_slice_network(c, cs, f"cc_scale_{i}", policy)
                       for i in range(n)]
    self.lrp_nets = [_slice_network(c, cs, f"lrp_{i}", policy)
                     for i in range(n)]
    # Created here, not in build(): `run` is called directly, not via Keras.
    self.dictionary = self.add_weight(
        "dictionary", (c.dict_size, c.dict_dim),
        initializer=tf.keras.initializers.RandomNormal(stddev=1.))

  def context(self, index, latent_scales, latent_means, previous,
              training=None):
    """Returns (support, dict_info) for slice `index`."""
    support = previous[:self.config.max_support_slices]
    query = tf.concat([latent_scales, latent_means] + list(support), axis=-1)
    # An explicit training=None would override the enclosing call's flag.
    flag = {} if training is None else {"training": training}
    dict_info = self.cross_attention[index](query, self.dictionary, **flag)
    return tf.concat([query, dict_info], axis=-1), dict_info

  def gaussian_params(self, index, support):
    """Returns (mu, scale); scale is not yet lower-bounded."""
    return self.mean_nets[index](support), self.scale_nets[index](support)

  def lrp(self, index, support, y_q):
    out = self.lrp_nets[index](tf.concat([support, y_q], axis=-1))
    tanh = exact_functions.tanh if exact.active() else tf.math.tanh
    return self.config.lrp_gain * tanh(out)

  def call(self, inputs):
    """Keras entry point used only to build the weights."""
    latent_scales, latent_means = inputs
    return self.run(latent_scales, latent_means, lambda i, mu, scale: mu)

  def run(self, latent_scales, latent_means, quantize, record=None,
          training=None, share=None):
    """The slice loop.

    Args:
      latent_scales, latent_means: outputs of the two hyper-synthesis
        branches, (B, h, w, M).
      quantize: callable (index, mu, scale) -> quantised slice (before LRP).
      record: optional dict filled with `dict_info_i`, `mu_i`, `scale_i`,
        `lrp_i` for inspection and parity tests.
      training: the Keras training flag for the dictionary attention
        (whole-map products, not inference's bands of rows); by default
        that of the enclosing Keras call, as `run` is not one.
      share: optional callable (name, fn) -> callable, applied to each
        slice's two network pieces (`fn` takes and returns tensors only):
        the codec makes each a `tf.function` traced once, so that all its
        signatures call one graph of a slice's networks instead of tracing
        a copy each.

    Returns:
      y_hat, (B, h, w, M).
    """
    share = share or _unshared
    y_hat_slices = []
    for i in range(self.config.num_slices):
      parameters = share(f"slice_parameters_{i}",
                         functools.partial(self._parameters, i, training))
      support, dict_info, mu, scale = parameters(
          latent_scales, latent_means,
          *y_hat_slices[:self.config.max_support_slices])
      y_q = quantize(i, mu, scale)
      lrp = share(f"slice_lrp_{i}", functools.partial(self.lrp, i))(
          support, y_q)
      y_hat_slices.append(y_q + lrp)
      if record is not None:
        record.update({f"dict_info_{i}": dict_info, f"mu_{i}": mu,
                       f"scale_{i}": scale, f"lrp_{i}": lrp})
    return tf.concat(y_hat_slices, axis=-1)

  def _parameters(self, index, training, latent_scales, latent_means,
                  *previous):
    """(support, dict_info, mu, scale) of slice `index`: its context and
    what the mean and scale networks read from it."""
    support, dict_info = self.context(index, latent_scales, latent_means,
                                      previous, training=training)
    mu, scale = self.gaussian_params(index, support)
    return support, dict_info, mu, scale

  def _torch_params(self):
    return [("dt", self.dictionary, "same")]

  def _torch_children(self):
    out = []
    for i in range(self.config.num_slices):
      out.append((f"dt_cross_attention.{i}", self.cross_attention[i]))
      # nn.Sequential(conv, GELU, conv, GELU, conv): convs at 0, 2, 4.
      for prefix, nets in (("cc_mean_transforms", self.mean_nets),
                           ("cc_scale_transforms", self.scale_nets),
                           ("lrp_transforms", self.lrp_nets)):
        convs = [s for s in nets[i].steps
                 if isinstance(s, tf.keras.layers.Layer)]
        out.extend((f"{prefix}.{i}.{2 * j}", conv)
                   for j, conv in enumerate(convs))
    return out


class HyperpriorModel(base.TorchNamed, tf.Module):
  """The factorized prior on z (official `entropy_bottleneck`).

  The density is TFC's `NoisyDeepFactorized`, whose parameters have the same
  layout as CompressAI's `EntropyBottleneck`. z is quantised around
  per-channel offsets (the official model's learned medians), which are
  carried in a non-trainable variable.
  """

  def __init__(self, config, name="entropy_bottleneck"):
    super().__init__(name=name)
    self.config = config
    with self.name_scope:
      self.prior = tfc.NoisyDeepFactorized(
          batch_shape=(config.z_channels,), num_filters=config.z_filters)
      self.offset = tf.Variable(tf.zeros((config.z_channels,)),
                                trainable=False, name="offset")

  def refresh_offset(self):
    """Sets the quantisation offsets to the prior's medians.

    The official model learns its medians with an auxiliary loss; TFC finds
    them from the density itself, which needs no extra loss. Training calls
    this at every checkpoint and at the end; the codec builds its tables
    around the stored offsets.
    """
    self.offset.assign(self._median_offset())

  @tf.function(autograph=False)
  def _median_offset(self):
    # TFC's median search is an iterative loop: much faster traced.
    return tfc.quantization_offset(self.prior.base)

  def quantize(self, z):
    offset = tf.stop_gradient(self.offset)
    return tfc.round_st(z - offset) + offset

  def likelihood(self, values):
    """P(values) under the prior convolved with U(-.5, .5), as the official.

    The official `EntropyBottleneck` (CompressAI >= 1.2) takes the plain
    difference of two sigmoids of the cumulative logits. In the upper tail
    float32 cancels that to 0 and the 1e-9 floor applies, where TFC's
    log-space `prior.prob` gives the true, larger value (0.8 % fewer z bits on
    the reference crop); the same formula keeps rate estimates and the
    training objective identical to the official model. Range coding uses
    TFC's tables from the same prior.
    """
    logits = self.prior.base._logits_cumulative  # pylint: disable=protected-access

    def sigmoid(t):
      # Written out as PyTorch evaluates it: tf.sigmoid rounds differently
      # near 1, which decides whether the far tail is 2**-24 or the floor.
      return 1. / (1. + tf.math.exp(-t))

    prob = sigmoid(logits(values + .5)) - sigmoid(logits(values - .5))
    return tfc.lower_bound(prob, self.config.likelihood_bound)

  def torch_variables(self, prefix=""):
    # TFC's DeepFactorized has CompressAI's parameter layout:
    # (channels, filters_out, filters_in) matrices, (channels, filters, 1)
    # biases and factors, softplus / tanh applied the same way.
    base_dist = self.prior.base
    out = []
    for group in ("matrices", "biases", "factors"):
      for i, var in enumerate(getattr(base_dist, "_" + group)):
        out.append((f"{prefix}{group}.{i}", var, "same"))
    # quantiles[:, 0, 1] are the medians; the lower/upper quantiles only
    # bound CompressAI's CDF tables (TFC derives its own from the prior).
    out.append((f"{prefix}quantiles", self.offset, "median"))
    return out
