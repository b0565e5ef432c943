"""The two directions of the slice loop: what each quantises and codes.

`SliceEntropyModel.run` calls back once per slice with the slice's exact
mean and scale (float64, `layers.exact`); the encoder's callback rounds
the slice around its mean and keeps the symbols and their coding tables,
the decoder's reads the symbols back from the stream with the same tables.
Each coder owns its state: the groups, the likelihoods, the decoder's
stream position; the codec reads it when the loop is done.
"""
import collections

import tensorflow as tf

from dcae_tf import entropy
from dcae_tf.layers import exact


class EncoderPass(collections.namedtuple(
    "EncoderPass", "groups y_hat height width bits")):
  """The encoder's latent pass of an image.

  groups: the (values, table index) int32 symbol groups to code, z first,
  then the slices; y_hat: the quantised latents (float64, what the decoder
  reproduces bit for bit); height, width: the image's; bits: the model's
  rate estimate of exactly these symbols (float32 scalar), or None.
  """


class DecoderPass(collections.namedtuple(
    "DecoderPass", "y_hat height width")):
  """The decoder's latents of a bitstream (after its checks) and the size
  of its image."""


def table_index(config, scale):
  """The flat coding-table index of each exactly computed scale."""
  return tf.reshape(entropy.exact_scale_index(config, scale), [-1])


class SliceEncoder:
  """Rounds each slice of y around its mean: symbols, tables, y_hat.

  With `with_bits`, also the likelihood of each quantised slice under the
  model (float32, as the forward pass estimates the rate).
  """

  def __init__(self, config, y, with_bits=False):
    self.config = config
    self.y_slices = tf.split(exact.to_exact(y), config.num_slices, axis=-1)
    self.groups = []
    self.likelihoods = [] if with_bits else None

  def __call__(self, index, mu, scale):
    values = tf.cast(tf.round(self.y_slices[index] - mu), tf.int32)
    self.groups.append((tf.reshape(values, [-1]),
                        table_index(self.config, scale)))
    y_q = tf.cast(values, exact.DTYPE) + mu
    if self.likelihoods is not None:
      self.likelihoods.append(entropy.y_likelihood(
          self.config, *(tf.cast(t, tf.float32) for t in (y_q, mu, scale))))
    return y_q

  def bits(self):
    """The y slices' estimated bits (per image), after the loop."""
    return entropy.bits_of(tf.concat(self.likelihoods, axis=-1))


class SliceDecoder:
  """Decodes each slice's symbols from the stream, resumed slice by slice.

  `decode_group(state, table_index) -> (values, state)` is the rANS group
  decoder over the y tables; `state` the stream's after the z group.
  """

  def __init__(self, config, state, decode_group):
    self.config = config
    self.decode_group = decode_group
    self.state = state
    self.symbols = []

  def __call__(self, index, mu, scale):
    del index  # The stream's next group is this slice.
    values, self.state = self.decode_group(
        self.state, table_index(self.config, scale))
    self.symbols.append(values)
    values = tf.cast(tf.reshape(values, tf.shape(mu)), exact.DTYPE)
    return tf.ensure_shape(values + mu, mu.shape)
