"""The DCAE model: transforms, hyperprior and dictionary entropy model."""
import tensorflow as tf
import tensorflow_compression as tfc

from dcae_tf import config as config_lib
from dcae_tf import entropy
from dcae_tf import transforms
from dcae_tf.layers import base

# Keras mixed-precision policies a DCAE's transforms may compute in.
FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"
MIXED_FLOAT16 = "mixed_float16"
PRECISIONS = (FLOAT32, MIXED_BFLOAT16, MIXED_FLOAT16)


def check_precision(precision):
  """Raises a one-line ValueError for a precision that is not a policy."""
  if precision not in PRECISIONS:
    raise ValueError(f"precision must be one of {PRECISIONS}, "
                     f"not {precision!r}")


def pad_to_multiple(x, multiple):
  """Pads H and W up to a multiple by repeating the last row / column.

  Edge replication costs fewer bits than zeros and works for any size,
  including 1x1 (reflection would not).
  """
  shape = tf.shape(x)
  h, w = shape[1], shape[2]
  hp = config_lib.padded_size(h, multiple)
  wp = config_lib.padded_size(w, multiple)
  rows = tf.minimum(tf.range(hp), h - 1)
  cols = tf.minimum(tf.range(wp), w - 1)
  return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)


class DCAE(base.ReadsWeightsAfterInputs, base.TorchNamed, tf.keras.Model):
  """Learned image compression with a dictionary-based entropy model.

  Lu et al., "Learned Image Compression with Dictionary-based Entropy
  Model", CVPR 2025. Same computation as the official PyTorch `DCAE`, in NHWC,
  on TFC's distributions; any input size (padded inside, cropped back).

  `precision` is the Keras policy of the four transforms (g_a, g_s, h_a and
  both h_s branches), which hold nearly all of the computation: mixed
  policies keep their variables float32 and compute in bfloat16 / float16.
  Everything that decides the rate stays float32 whatever the policy: the
  model itself (padding, quantisation, likelihoods, rate terms), the slice
  entropy model with its dictionary, and the hyperprior; each transform's
  output is cast to float32 before any of them reads it. The variables are
  the same under every policy, so a checkpoint trained in one restores
  under another.

  Every layer is constructed with its policy given explicitly (`precision`
  or float32), never through Keras's global policy: constructing a DCAE
  changes nothing process-wide, so models may be built while other threads
  build layers, and a mixed global policy set by the caller reaches none of
  its layers.
  """

  def __init__(self, config="paper", precision=FLOAT32, **kwargs):
    config = config_lib.get_config(config)
    check_precision(precision)
    super().__init__(name=kwargs.pop("name", f"dcae_{config.name}"),
                     dtype=FLOAT32, **kwargs)
    self.config = config
    self.precision = precision
    whole = transforms.Policies(stream=precision)
    self.g_a = transforms.analysis_transform(config, whole)
    self.g_s = transforms.synthesis_transform(config, whole)
    self.h_a = transforms.hyper_analysis(config, precision)
    self.h_s_scales = transforms.hyper_synthesis(config, "h_z_s1", precision)
    self.h_s_means = transforms.hyper_synthesis(config, "h_z_s2", precision)
    self.slices = entropy.SliceEntropyModel(config, name="slices",
                                            dtype=FLOAT32)
    self.hyperprior = entropy.HyperpriorModel(config)

  def build_weights(self):
    """Creates every variable by running the smallest padded input once."""
    m = self.config.pad_multiple
    self(tf.zeros((1, m, m, 3)), training=False)
    return self

  def analysis(self, x):
    """Pads x (B, H, W, 3) and returns (y, z), float32."""
    y = _float32(self.g_a(pad_to_multiple(x, self.config.pad_multiple)))
    return y, _float32(self.h_a(y))

  def hyper_synthesis(self, z_hat):
    """(latent_scales, latent_means), float32."""
    return _float32(self.h_s_scales(z_hat)), _float32(self.h_s_means(z_hat))

  def synthesis(self, y_hat, height, width):
    """g_s, cropped back to the image size, float32."""
    return _float32(self.g_s(y_hat))[:, :height, :width, :]

  def rate_point(self, value, quantized, training):
    """Where the rate terms evaluate a latent's likelihood.

    Training: `value` plus uniform noise in [-0.5, 0.5), the differentiable
    stand-in for quantisation of the official training. Otherwise
    `quantized`, the value as the codec codes it. (The training tests that
    compare runs step for step override it to always return `quantized`,
    which leaves no randomness in a step.)
    """
    if training:
      return value + tf.random.uniform(tf.shape(value), -.5, .5)
    return quantized

  def call(self, x, training=False, return_intermediates=False):
    """Runs the model and estimates the rate.

    Args:
      x: float32 (B, H, W, 3) in [0, 1], any H, W >= 1.
      training: uniform noise stands in for quantisation in the rate terms
        (the reconstruction path always uses straight-through rounding, as
        the official forward). False: round around the means / medians.
      return_intermediates: also return the tensors under the names of the
        reference fixtures (`y`, `z`, `z_hat`, `latent_scales`,
        `latent_means`, `dict_info_i`, `mu_i`, `scale_i`, `lrp_i`, `y_hat`,
        `y_likelihoods`, `z_likelihoods`), on the padded latent grid.

    Returns:
      A dict with `x_hat` (not clamped), `bits_y`, `bits_z`, `bpp_y`,
      `bpp_z`, `bpp` (per image).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    shape = tf.shape(x)
    height, width = shape[1], shape[2]

    y, z = self.analysis(x)
    z_hat = self.hyperprior.quantize(z)
    z_likelihoods = self.hyperprior.likelihood(
        self.rate_point(z, z_hat, training))
    latent_scales, latent_means = self.hyper_synthesis(z_hat)

    y_slices = tf.split(y, self.config.num_slices, axis=-1)
    y_likelihoods = []

    def quantize(i, mu, scale):
      # Exact rounding with a straight-through gradient (official
      # `ste_round`), so the forward pass quantises exactly as the codec.
      y_q = tfc.round_st(y_slices[i] - mu) + mu
      y_likelihoods.append(entropy.y_likelihood(
          self.config, self.rate_point(y_slices[i], y_q, training), mu, scale))
      return y_q

    record = {} if return_intermediates else None
    y_hat = self.slices.run(latent_scales, latent_means, quantize, record,
                            training=training)
    y_likelihoods = tf.concat(y_likelihoods, axis=-1)
    x_hat = self.synthesis(y_hat, height, width)

    num_pixels = tf.cast(height * width, tf.float32)
    bits_y = entropy.bits_of(y_likelihoods)
    bits_z = entropy.bits_of(z_likelihoods)
    out = dict(x_hat=x_hat, bits_y=bits_y, bits_z=bits_z,
               bpp_y=bits_y / num_pixels, bpp_z=bits_z / num_pixels,
               bpp=(bits_y + bits_z) / num_pixels)
    if return_intermediates:
      out.update(record)
      out.update(y=y, z=z, z_hat=z_hat, latent_scales=latent_scales,
                 latent_means=latent_means, y_hat=y_hat,
                 y_likelihoods=y_likelihoods, z_likelihoods=z_likelihoods)
    return out

  def _torch_children(self):
    return [("g_a", self.g_a), ("g_s", self.g_s), ("h_a", self.h_a),
            ("h_z_s1", self.h_s_scales), ("h_z_s2", self.h_s_means),
            ("", self.slices), ("entropy_bottleneck", self.hyperprior)]

  def torch_variables(self, prefix=""):
    out = []
    for name, child in self._torch_children():
      out.extend(base.torch_variables(child, prefix + name + "." if name
                                      else prefix))
    return out


def _float32(x):
  # A no-op (the same tensor) under the float32 policy.
  return tf.cast(x, tf.float32)


def build_model(preset="paper"):
  """A DCAE with all its variables created."""
  return DCAE(preset).build_weights()
