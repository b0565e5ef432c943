"""Real compression: images to bitstreams and back, entirely in-graph.

`DCAECodec` wraps a trained `DCAE` with coding tables built once, at
construction, in exact arithmetic (`codec.exact_tables`: the same integers
on every machine, stored with a SavedModel), and exposes `compress` /
`decompress` as `tf.function`s with fixed signatures, so the same functions
serve in-process use, export and TF Serving.

Encoder and decoder run the same slice loop (`codec.slice_coding`); the
decoder's quantised latents are the encoder's bit for bit because every
mean, scale index and latent that picks a table is computed in exact
arithmetic (`layers.exact`, `numerics.EXACT`): integers that no kernel,
thread count or CPU can change. g_a and g_s stay float: they decide
quality, not whether a file opens. The symbols are coded by `dcae_tf.rans`,
an entropy coder made of stock TensorFlow ops: the graphs of `compress` and
`decompress` (and so the SavedModels) hold no custom op, and stock
TensorFlow Serving, `saved_model_cli` or any TF 2.14 runtime runs them. TFC
remains the source of the priors and the rate estimates.

The payload is one rANS stream (z, then the y slices in order; the decoder
resumes it slice after slice, since each slice's tables depend on the ones
before) followed by a digest of the coded symbols (`digest.symbols_digest`):
a decoder that computes other scales (a codec of other numerics) or reads
a payload damaged behind a valid checksum gets other symbols back and
fails with a clear error before it synthesises an image, instead of
returning a wrong one.
"""
import functools

import tensorflow as tf
import tensorflow_compression as tfc

from dcae_tf import entropy
from dcae_tf import model as model_lib
from dcae_tf import rans
from dcae_tf.codec import container
from dcae_tf.codec import container_ops
from dcae_tf.codec import digest
from dcae_tf.codec import errors
from dcae_tf.codec import exact_tables
from dcae_tf.codec import heap
from dcae_tf.codec import metadata as metadata_lib
from dcae_tf.codec import numerics as numerics_lib
from dcae_tf.codec import slice_coding
from dcae_tf.codec import transform_dtype as transform_dtype_lib
from dcae_tf.codec import warmup
from dcae_tf.codec import weights
from dcae_tf.layers import exact

# TFC's maximum; tighter tables make the bitstream closer to the estimate.
RANGE_CODER_PRECISION = 16
PIXEL_MAX = 255.


def z_entropy_model(hyperprior, precision):
  """TFC's batched entropy model for z with its tables built in graph mode.

  Not the codec's tables (`codec.exact_tables` builds those, the same on
  every machine): TFC's own, for comparisons with TFC's range coder
  (tests/test_rans.py, bench/entropy_coders.py).

  Building the tables of a `NoisyDeepFactorized` prior eagerly runs TFC's
  tail-estimation loop op by op (about 15 s); traced once it takes about
  2 s and yields the identical tables, which are then stored in variables
  (and so in SavedModels) like TFC's own eager path does.
  """
  offset = tf.convert_to_tensor(hyperprior.offset)

  @tf.function(autograph=False)
  def tables():
    model = tfc.ContinuousBatchedEntropyModel(
        hyperprior.prior, coding_rank=3, compression=True, stateless=True,
        quantization_offset=offset, range_coder_precision=precision)
    return model.cdf, model.cdf_offset

  cdf, cdf_offset = tables()
  return tfc.ContinuousBatchedEntropyModel(
      prior_shape=hyperprior.prior.batch_shape, coding_rank=3,
      compression=True, cdf=cdf, cdf_offset=cdf_offset,
      quantization_offset=offset, range_coder_precision=precision)


class DCAECodec(tf.Module):
  """A DCAE model with range coding: uint8 image <-> bitstream.

  `transform_dtype` "bfloat16" computes g_a and g_s in bfloat16 and
  everything else in float32 (`codec.transform_dtype`): the same
  fingerprint, the same entropy parameters for given latents.
  """

  # The shared tf.functions are the signatures' pieces, not state: kept out
  # of the module's variable and submodule walks.
  _TF_MODULE_IGNORED_PROPERTIES = frozenset(("_shared_functions",)).union(
      tf.Module._TF_MODULE_IGNORED_PROPERTIES)

  def __init__(self, model, name=None,
               max_pixels=container.DEFAULT_MAX_PIXELS,
               lmbda=None, metric=None,
               range_coder_precision=RANGE_CODER_PRECISION,
               extra_metadata=None,
               transform_dtype=metadata_lib.DEFAULT_TRANSFORM_DTYPE,
               numerics=numerics_lib.EXACT):
    super().__init__(name="dcae_codec")
    if numerics not in numerics_lib.NUMERICS:
      raise ValueError(f"numerics must be one of {numerics_lib.NUMERICS}, "
                       f"not {numerics!r}")
    self.model = model
    self.numerics = numerics
    c = self.config = model.config
    self.max_pixels = int(max_pixels)
    self.model_name = name or f"dcae-{c.name}"
    self.fingerprint = numerics_lib.weights_fingerprint(model, numerics)
    self.metadata = dict(
        name=self.model_name, fingerprint=self.fingerprint, preset=c.name,
        lmbda=lmbda, metric=metric,
        format_version=container.FORMAT_VERSION, max_pixels=self.max_pixels,
        weight_dtype=weights.storage_dtype(model),
        transform_dtype=transform_dtype)
    # E.g. how the model was trained; never overrides the identity above.
    for key, value in (extra_metadata or {}).items():
      self.metadata.setdefault(key, value)
    self.transform_dtype = transform_dtype
    self._transforms = transform_dtype_lib.transform_views(model,
                                                           transform_dtype)
    # The coding tables: the same integers on every machine (computed in
    # exact arithmetic, `codec.exact_tables`), constants of the graphs.
    self.z_tables = exact_tables.factorized_tables(model.hyperprior,
                                                   range_coder_precision)
    self.y_tables = exact_tables.gaussian_tables(
        entropy.exact_scale_table(c), range_coder_precision)
    self._shared_functions = self._no_dependency({})

  # -- shared pieces -------------------------------------------------------

  def _share_exact(self, name, fn):
    """`_share` of a piece of the entropy-parameter path, traced in the
    exact scope (`layers.exact`): its tensors are float64 and its results
    the same bits on every machine. With "float" numerics it computes
    float32, as in training, from float32 casts of its inputs; its outputs
    are cast to float64, so the coding around it is the same."""
    if self.numerics == numerics_lib.EXACT:
      return self._share(name, exact.traced_exactly(fn))
    def in_float32(*args):
      args = [tf.cast(a, tf.float32) for a in args]
      return tf.nest.map_structure(exact.to_exact, fn(*args))
    return self._share(name, in_float32)

  def _share(self, name, fn):
    """`fn` (tensors in, tensors out) as one `tf.function` for every
    signature of this codec.

    Each signature traces its own graph; the pieces it calls through here
    (g_a, h_a, the hyper-synthesis, each slice's networks, g_s, the y
    groups' rANS decoder) are traced once and called by name, so an export
    stores each of them once instead of once per signature (the small
    preset's graph: 13.7 -> 6.3 MB). The calls stay calls when TF
    optimises a signature (`exact.NOT_INLINED`): each piece is optimised
    once, on its own, in a fraction of the time the inlined whole took.
    """
    if name not in self._shared_functions:
      self._shared_functions[name] = tf.function(
          fn, autograph=False, reduce_retracing=True,
          experimental_attributes=exact.NOT_INLINED)
    return self._shared_functions[name]

  def _check_image(self, image):
    """`image`, usable only after its size has been checked.

    The checks are control dependencies of what is returned: in a graph,
    nothing downstream (no convolution of an empty tensor, no allocation for
    a giant one) can run before them.
    """
    shape = tf.shape(image)
    pixels = tf.cast(shape[0], tf.int64) * tf.cast(shape[1], tf.int64)
    checks = [
        tf.debugging.assert_positive(
            shape[:2], message="image height and width must be at least 1"),
        tf.debugging.assert_less_equal(
            pixels, tf.constant(self.max_pixels, tf.int64),
            message=f"image exceeds the pixel limit of {self.max_pixels}"),
    ]
    with tf.control_dependencies(checks):
      return tf.identity(image)

  def _quantise(self, image, with_bits=False):
    """The encoder's latent pass of a uint8 (H, W, 3) image: an
    `EncoderPass` (its `bits` only `with_bits`, so that `compress`'s graph
    holds no likelihood)."""
    image = self._check_image(image)
    shape = tf.shape(image)
    x = tf.cast(image, tf.float32)[None] / PIXEL_MAX
    y, z = self._analysis(x)
    z_values = tf.cast(tf.round(z - self._z_offset()), tf.int32)
    z_hat = self._z_dequantize(z_values)
    latent_scales, latent_means = self._hyper_synthesis(z_hat)
    coder = slice_coding.SliceEncoder(self.config, y, with_bits)
    y_hat = self.model.slices.run(latent_scales, latent_means, coder,
                                  share=self._share_exact)
    bits = None
    if with_bits:
      # As the model's evaluation-mode forward pass (`DCAE.call`), of the
      # latents this codec codes (with its transform dtype's g_a).
      bits = (coder.bits() +
              entropy.bits_of(self.model.hyperprior.likelihood(z_hat)))[0]
    z_group = (tf.reshape(z_values, [-1]), self._z_index(tf.shape(z)))
    return slice_coding.EncoderPass([z_group] + coder.groups, y_hat,
                                    shape[0], shape[1], bits)

  def _encode(self, image):
    """(bitstream, the `EncoderPass`) of a uint8 (H, W, 3) image."""
    encoded = self._quantise(image)
    return self._bitstream(encoded.groups, encoded.height,
                           encoded.width), encoded

  def _bitstream(self, groups, height, width):
    """The container of coded symbol `groups` (z, then the slices)."""
    stream = rans.encode(
        groups, [self.z_tables] + [self.y_tables] * self.config.num_slices)
    # What the decoder must get back: every coded symbol.
    payload = tf.strings.join(
        [stream, digest.symbols_digest([v for v, _ in groups])])
    return container_ops.pack(payload, height, width, self.fingerprint)

  def _decode_latents(self, data):
    """The `DecoderPass` of a bitstream, after its checks."""
    height, width, payload = container_ops.unpack(
        data, self.fingerprint, self.max_pixels, self.model_name)
    stream, stored_digest = digest.split_payload(payload)
    _, (zh, zw) = self.config.latent_shapes(height, width)
    z_shape = tf.stack([1, zh, zw, self.config.z_channels])
    z_values, state = rans.decode_group(
        rans.start(stream), self._z_index(z_shape), self.z_tables)
    z_hat = self._z_dequantize(tf.reshape(z_values, z_shape))
    latent_scales, latent_means = self._hyper_synthesis(z_hat)
    # One graph of the y groups' decoder for the five slices.
    coder = slice_coding.SliceDecoder(
        self.config, state, self._share("decode_y_group", functools.partial(
            rans.decode_group, tables=self.y_tables)))
    y_hat = self.model.slices.run(latent_scales, latent_means, coder,
                                  share=self._share_exact)
    checks = [
        rans.finish(coder.state),
        tf.debugging.Assert(
            tf.equal(digest.symbols_digest([z_values] + coder.symbols),
                     stored_digest),
            [errors.LATENTS_MISMATCH], summarize=1),
    ]
    with tf.control_dependencies(checks):
      return slice_coding.DecoderPass(tf.identity(y_hat), height, width)

  def _z_offset(self):
    return tf.convert_to_tensor(self.model.hyperprior.offset, tf.float32)

  def _z_index(self, shape):
    """Table (channel) of each z symbol, row-major."""
    return tf.range(tf.reduce_prod(shape)) % self.config.z_channels

  def _z_dequantize(self, values):
    """z_hat of z's symbols: around the prior's quantisation offsets."""
    return tf.cast(values, tf.float32) + self._z_offset()

  def _hyper_synthesis(self, z_hat):
    """(latent_scales, latent_means) of z_hat, exactly (float64)."""
    def h_s(z_hat):
      z_hat = exact.to_exact(z_hat)
      return self.model.h_s_scales(z_hat), self.model.h_s_means(z_hat)
    return self._share_exact("h_s", h_s)(z_hat)

  def _analysis(self, x):
    """(y, z) of x, float32; g_a in the codec's transform dtype."""
    padded = model_lib.pad_to_multiple(x, self.config.pad_multiple)
    y = tf.cast(self._share("g_a", self._transforms.g_a)(padded), tf.float32)
    return y, tf.cast(self._share("h_a", self.model.h_a)(y), tf.float32)

  def _to_image(self, y_hat, height, width):
    # g_s in the codec's transform dtype: decompress and the encoder-side
    # reconstruction both come through here.
    y_hat = tf.cast(y_hat, tf.float32)
    x_hat = tf.cast(self._share("g_s", self._transforms.g_s)(y_hat),
                    tf.float32)[:, :height, :width, :][0]
    return tf.saturate_cast(tf.round(tf.clip_by_value(x_hat, 0., 1.) *
                                     PIXEL_MAX), tf.uint8)

  def warm_up(self, names=warmup.WARMUP_SIGNATURES):
    """Runs `compress` and/or `decompress` once on a small image, then gives
    the heap they freed back to the OS (`codec.heap`). Returns self.

    A function's first call traces it and optimises its graph (Grappler),
    which for the paper preset leaves a few hundred MB of freed C heap
    resident; doing that on the 64x64 `warmup.warmup_image()` and trimming
    before the first real image lowers the process's peak (paper preset,
    float16 weights, 768x512 encode: 1572 -> 1445 MiB, 2026-11-26).
    `ExportedCodec` does this by itself. The decompress warm-up decodes the
    compress warm-up's bitstream, or, without one, a bitstream made eagerly
    (about 2 s for the paper preset), so that a decode-only process does not
    trace `compress`.
    """
    unknown = sorted(set(names) - set(warmup.WARMUP_SIGNATURES))
    if unknown:
      raise ValueError(f"cannot warm up {unknown}; choose from "
                       f"{list(warmup.WARMUP_SIGNATURES)}")
    image = tf.constant(warmup.warmup_image())
    data = self.compress(image) if warmup.COMPRESS in names else None
    if warmup.DECOMPRESS in names:
      if data is None:
        data = self._encode(image)[0]
      self.decompress(data)
    heap.release_free_memory()
    return self

  # -- public signatures ---------------------------------------------------

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def compress(self, image):
    """uint8 (H, W, 3) -> bitstream (string scalar)."""
    return self._encode(image)[0]

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([], tf.string, name="bitstream")])
  def decompress(self, data):
    """bitstream (string scalar) -> uint8 (H, W, 3)."""
    decoded = self._decode_latents(data)
    return self._to_image(decoded.y_hat, decoded.height, decoded.width)

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def compress_with_reconstruction(self, image):
    """(bitstream, encoder-side y_hat, encoder-side uint8 reconstruction).

    What the decoder must reproduce exactly; for tests and evaluation.
    """
    data, encoded = self._encode(image)
    return data, encoded.y_hat, self._to_image(
        encoded.y_hat, encoded.height, encoded.width)

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def reconstruct(self, image):
    """(encoder-side uint8 reconstruction, estimated bits), in one pass.

    The export's `reconstruct` signature: what evaluation needs without a
    decoder, from a single g_a, slice loop and g_s (the reconstruction is
    the decoder's image exactly; the estimate is `estimated_bits`).
    """
    encoded = self._quantise(image, with_bits=True)
    return self._to_image(encoded.y_hat, encoded.height,
                          encoded.width), encoded.bits

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
  def estimated_bits(self, image):
    """The model's own rate estimate (y + z) for an image, as float32.

    What the bitstream payload should cost: the likelihoods of the coded
    symbols under the model's priors (evaluation mode, as in the official
    forward pass). The container's header comes on top.
    """
    return self._quantise(image, with_bits=True).bits

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([], tf.string, name="bitstream")])
  def decompress_with_latents(self, data):
    """(decoder-side y_hat, uint8 image): to compare with the encoder's."""
    decoded = self._decode_latents(data)
    return decoded.y_hat, self._to_image(decoded.y_hat, decoded.height,
                                         decoded.width)
