"""The measuring pieces of bench/entropy_coding.py: a codec of an export's
weights, its latents, both coders' tf.functions and the timing of one case.
"""
import math
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from dcae_tf import codec as codec_lib
from dcae_tf import config as config_lib
from dcae_tf import entropy
from dcae_tf import rans
from dcae_tf.codec import weights
from dcae_tf.runtime import layout


def load_codec(model_dir):
  """A `DCAECodec` of an export's weights.

  The export's variables are read into a codec of a fresh model; the codec
  is then built again from the restored model, so that its fingerprint and
  its coding tables (whose layout is fixed when they are built) are those
  of the export's weights, not of the fresh model's.
  """
  version_dir = layout.newest_version_dir(model_dir)
  meta = layout.read_metadata(version_dir)
  config = config_lib.get_config(meta["preset"])
  model = weights.new_model(config, meta.get("weight_dtype", "float32"))
  codec = codec_lib.DCAECodec(model, name=meta["name"])
  checkpoint = tf.train.Checkpoint(codec_variables=list(codec.variables))
  checkpoint.read(os.path.join(version_dir, layout.VARIABLES_PREFIX)
                  ).assert_existing_objects_matched()
  return codec_lib.DCAECodec(codec.model, name=meta["name"])


def tfc_models(codec, precision=codec_lib.RANGE_CODER_PRECISION):
  """TFC's entropy models of the codec's priors, with TFC's own (float)
  tables: what both coders are compared on (the codec itself codes with
  its exact tables)."""
  c = codec.config
  y_model = tfc.LocationScaleIndexedEntropyModel(
      tfc.NoisyNormal, c.scale_levels, entropy.scale_table_fn(c),
      coding_rank=3, compression=True, range_coder_precision=precision)
  return codec_lib.z_entropy_model(codec.model.hyperprior, precision), y_model


def latents_function(codec):
  """image -> (z, [y_i], [mu_i], [scale index_i]) as the codec computes them."""
  c = codec.config

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def latents(image):
    x = tf.cast(image, tf.float32)[None] / codec_lib.PIXEL_MAX
    y, z = codec.model.analysis(x)
    offset = codec.model.hyperprior.offset
    z_hat = tf.round(z - offset) + offset
    scales, means = codec.model.hyper_synthesis(z_hat)
    y_slices = tf.split(y, c.num_slices, axis=-1)
    ys, mus, idxs = [], [], []

    def quantize(i, mu, scale):
      ys.append(y_slices[i])
      mus.append(mu)
      idxs.append(entropy.scale_to_index(c, scale))
      return tf.round(y_slices[i] - mu) + mu

    codec.model.slices.run(scales, means, quantize)
    return [z], ys, mus, idxs

  return latents


class Coders:
  """Encode / decode functions of both coders for one codec's entropy models.

  All take unknown-size latents (None spatial dims), like the codec's own
  signatures.
  """

  def __init__(self, codec, num_slices, lanes=None, z_groups=1):
    zm, ym = tfc_models(codec)
    z_tables, y_tables = rans.batched_tables(zm), rans.indexed_tables(ym)
    self.z_tables, self.y_tables = z_tables, y_tables
    zc = int(zm.prior_shape[0])
    zspec = [tf.TensorSpec([1, None, None, zc], tf.float32)] * z_groups
    tables = [z_tables] * z_groups + [y_tables] * num_slices
    yspec = [tf.TensorSpec([1, None, None, None], tf.float32)] * num_slices

    def groups_of(zs, ys, mus, idxs):
      return [rans.batched_symbols(zm, z) for z in zs] + [
          rans.indexed_symbols(ym, y, i, mu) for y, mu, i in zip(ys, mus, idxs)]

    @tf.function(input_signature=[zspec, yspec, yspec, yspec])
    def ours_encode(zs, ys, mus, idxs):
      return rans.encode(groups_of(zs, ys, mus, idxs), tables, lanes)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string),
                                  tf.TensorSpec([4], tf.int32), yspec, yspec])
    def ours_decode(stream, z_shape, mus, idxs):
      state = rans.start(stream)
      z_hat = []
      for _ in range(z_groups):
        values, state = rans.decode_group(
            state, rans.batched_index(zm, z_shape), z_tables)
        z_hat.append(rans.batched_dequantize(zm, values, z_shape))
      y_hat = []
      for mu, idx in zip(mus, idxs):
        values, state = rans.decode_group(state, rans.indexed_index(ym, idx),
                                          y_tables)
        y_hat.append(rans.indexed_dequantize(ym, values, mu))
      with tf.control_dependencies([rans.finish(state)]):
        return [tf.identity(z) for z in z_hat], [tf.identity(y) for y in y_hat]

    @tf.function(input_signature=[zspec, yspec, yspec, yspec])
    def tfc_encode(zs, ys, mus, idxs):
      return [zm.compress(z)[0] for z in zs] + [
          ym.compress(y, i, mu)[0] for y, mu, i in zip(ys, mus, idxs)]

    @tf.function(input_signature=[
        [tf.TensorSpec([], tf.string)] * (z_groups + num_slices),
        tf.TensorSpec([4], tf.int32), yspec, yspec])
    def tfc_decode(strings, z_shape, mus, idxs):
      z_hat = [zm.decompress(s[None], z_shape[1:3])
               for s in strings[:z_groups]]
      return z_hat, [ym.decompress(s[None], i, mu)
                     for s, mu, i in zip(strings[z_groups:], mus, idxs)]

    self.ours_encode, self.ours_decode = ours_encode, ours_decode
    self.tfc_encode, self.tfc_decode = tfc_encode, tfc_decode


def once_ms(fn):
  t = time.perf_counter()
  fn()
  return 1000 * (time.perf_counter() - t)


def best_ms(fn, repeats):
  fn()
  return min(once_ms(fn) for _ in range(repeats))


def lane_count(stream):
  """K, the stream's first bypass field (Elias gamma of K + 1)."""
  return int(rans.start(tf.constant(stream)).x.shape[0])


def run_case(coders, latents, pixels, repeats, check=True, time_ours=True):
  """Codes `latents` with both coders; returns a dict of the figures.

  Without `time_ours`, our coder's times are left to the caller (NaN).
  """
  zs, ys, mus, idxs = latents
  z_shape = tf.shape(zs[0])
  strings = coders.tfc_encode(zs, ys, mus, idxs)
  stream = coders.ours_encode(zs, ys, mus, idxs)
  tfc_bytes = sum(len(s.numpy()) for s in strings)
  our_bytes = len(stream.numpy())
  if check:
    ref_z, ref_y = coders.tfc_decode(strings, z_shape, mus, idxs)
    got_z, got_y = coders.ours_decode(stream, z_shape, mus, idxs)
    for a, b in zip(ref_z + ref_y, got_z + got_y):
      if not np.array_equal(a.numpy(), b.numpy()):
        raise AssertionError("decoded latents differ from TFC's decompress")
  r = dict(
      tfc_bytes=tfc_bytes, our_bytes=our_bytes,
      bpp=8 * our_bytes / pixels, lanes=lane_count(stream.numpy()),
      tfc_enc=best_ms(lambda: coders.tfc_encode(zs, ys, mus, idxs), repeats),
      tfc_dec=best_ms(lambda: coders.tfc_decode(strings, z_shape, mus, idxs),
                      repeats),
      our_enc=math.nan, our_dec=math.nan)
  if time_ours:
    r.update(
        our_enc=best_ms(lambda: coders.ours_encode(zs, ys, mus, idxs),
                        repeats),
        our_dec=best_ms(lambda: coders.ours_decode(stream, z_shape, mus,
                                                   idxs), repeats))
  return r
