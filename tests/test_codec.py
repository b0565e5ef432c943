"""Real compression: exact round trips and rejection of foreign bitstreams."""
import concurrent.futures

import numpy as np
import pytest
import tensorflow as tf

from dcae_tf.codec import container
from dcae_tf.codec import digest
from dcae_tf.codec import errors
from dcae_tf.codec import numerics as codec_numerics
from dcae_tf import export
from dcae_tf.codec import DCAECodec
from dcae_tf.model import DCAE
from tests.images import smooth_image

SIZES = [(1, 1), (7, 13), (64, 64), (255, 257), (512, 768), (300, 200)]
FUZZ_CASES = 200
FUZZ_CASE_LIMIT_S = 5.0


@pytest.fixture(scope="module")
def codec():
  tf.random.set_seed(0)
  return DCAECodec(DCAE("tiny").build_weights(), name="test-tiny")


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_is_exact(codec, size):
  image = smooth_image(*size, seed=size[0])
  data, y_hat_enc, recon = codec.compress_with_reconstruction(image)
  y_hat_dec, decoded = codec.decompress_with_latents(data)
  # The decoder's latents are the encoder's, bit for bit.
  np.testing.assert_array_equal(y_hat_dec.numpy(), y_hat_enc.numpy())
  decoded = decoded.numpy()
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, recon.numpy())


def test_public_signatures_match_the_testing_entry_points(codec):
  image = smooth_image(70, 90, seed=5)
  data, _, recon = codec.compress_with_reconstruction(image)
  assert codec.compress(image).numpy() == data.numpy()
  np.testing.assert_array_equal(codec.decompress(data).numpy(), recon.numpy())


def test_reconstruct_is_the_decoders_image_and_the_models_estimate(codec):
  """One latent pass gives what the two-pass definitions give: the image
  decompress returns and the evaluation-mode forward pass's bits."""
  image = smooth_image(70, 90, seed=6)
  reconstruction, bits = codec.reconstruct(image)
  data, _, recon = codec.compress_with_reconstruction(image)
  np.testing.assert_array_equal(reconstruction.numpy(), recon.numpy())
  np.testing.assert_array_equal(codec.decompress(data).numpy(),
                                reconstruction.numpy())
  out = codec.model(tf.cast(image, tf.float32)[None] / 255., training=False)
  assert bits.dtype == tf.float32 and bits.shape == ()
  np.testing.assert_allclose(bits.numpy(),
                             (out["bits_y"] + out["bits_z"])[0].numpy(),
                             rtol=1e-6)
  assert codec.estimated_bits(image).numpy() == bits.numpy()


def test_compress_is_deterministic_across_calls_and_threads(codec):
  """The same image gives the same bitstream on every call: after calls on
  other sizes (reused, dirtied buffers) and from concurrent threads (how
  the server calls it). A decoder elsewhere recomputes the encoder's means
  and scales, so encoding must not depend on process state."""
  image = smooth_image(40, 56, seed=3)
  reference = codec.compress(image).numpy()
  codec.compress(smooth_image(90, 30, seed=4))
  assert codec.compress(image).numpy() == reference
  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    outputs = list(pool.map(lambda _: codec.compress(image).numpy(),
                            range(6)))
  assert outputs == [reference] * 6


def test_warm_up_traces_only_what_it_is_asked_to():
  """A decode-only process warms `decompress` up without tracing
  `compress` (its bitstream is made eagerly); names are checked."""
  codec = DCAECodec(DCAE("tiny").build_weights(), name="test-tiny")
  assert codec.warm_up([export.DECOMPRESS]) is codec
  assert codec.decompress.experimental_get_tracing_count() == 1
  assert codec.compress.experimental_get_tracing_count() == 0
  codec.warm_up()
  assert codec.compress.experimental_get_tracing_count() == 1
  assert codec.decompress.experimental_get_tracing_count() == 1
  # Real images of other sizes reuse the warmed-up graphs.
  image = smooth_image(30, 20, seed=9)
  assert codec.decompress(codec.compress(image)).shape == image.shape
  assert codec.compress.experimental_get_tracing_count() == 1
  assert codec.decompress.experimental_get_tracing_count() == 1
  with pytest.raises(ValueError, match="cannot warm up"):
    codec.warm_up(["estimated_bits"])


def test_header_is_self_describing(codec):
  data = codec.compress(smooth_image(33, 47)).numpy()
  header = container.read_header(data)
  assert header["fingerprint"] == codec.fingerprint
  assert (header["height"], header["width"]) == (33, 47)
  assert header["format_version"] == container.FORMAT_VERSION
  # Besides the coded symbols: the container's header and the digest.
  assert header["header_size"] == container.HEADER_SIZE
  assert header["payload_size"] == len(data) - container.HEADER_SIZE
  assert container.HEADER_SIZE + digest.DIGEST_SIZE <= 40


def test_other_model_is_refused_by_fingerprint(codec):
  other = DCAECodec(DCAE("tiny").build_weights(), name="other-model")
  assert other.fingerprint != codec.fingerprint
  # This codec's bitstream under the other model's name, re-sealed (the
  # header is checked before anything else is read: another model's own
  # bitstream is refused at the same place, and tracing it costs ~20 s).
  from tests.bitstream_cases import rewrite  # pylint: disable=import-outside-toplevel
  data = rewrite(codec.compress(smooth_image(16, 16)).numpy(), "fingerprint",
                 container.fingerprint_bytes(other.fingerprint))
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    codec.decompress(data)
  assert errors.error_message(info.value) == (
      f"bitstream was made by the model with fingerprint {other.fingerprint}; "
      f"this is model test-tiny (fingerprint {codec.fingerprint})")


def test_fingerprint_tracks_weights():
  model = DCAE("tiny").build_weights()
  a = DCAECodec(model).fingerprint
  model.slices.dictionary.assign_add(tf.ones_like(model.slices.dictionary))
  assert DCAECodec(model).fingerprint != a


def test_fingerprint_tracks_the_numerics_version(monkeypatch):
  model = DCAE("tiny").build_weights()
  a = DCAECodec(model).fingerprint
  # The module that computes the fingerprint (dcae_tf.codec re-exports it).
  monkeypatch.setattr(codec_numerics, "NUMERICS_VERSION",
                      codec_numerics.NUMERICS_VERSION + 1)
  assert DCAECodec(model).fingerprint != a


def test_corrupted_payload_is_reported(codec):
  data = bytearray(codec.compress(smooth_image(40, 40)).numpy())
  data[-5] ^= 0x10
  with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt"):
    codec.decompress(bytes(data))


def test_decoder_with_other_scales_is_refused_not_wrong(codec):
  """A decoder whose arithmetic gives other scales (here: slightly changed
  scale-network weights under the same fingerprint, as another CPU or TF
  build could) decodes other symbols: the stored digest of the coded
  symbols (or, first, the rANS decoder's own checks) turns that into one
  clear error, never a wrong image. (The module's codec, its weights put
  back after: its graphs read the variables.)"""
  data = codec.compress(smooth_image(48, 64, seed=2)).numpy()
  codec.decompress(data)  # decodes before the change
  variables = codec.model.slices.scale_nets[0].trainable_variables
  saved = [v.numpy() for v in variables]
  try:
    for v in variables:
      v.assign(v * 1.2 + 0.05)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
      codec.decompress(data)
  finally:
    for v, value in zip(variables, saved):
      v.assign(value)
  assert errors.error_message(info.value).startswith(
      errors.LATENTS_MISMATCH)
  codec.decompress(data)


def test_decoder_with_shifted_table_indexes_is_refused(codec, monkeypatch):
  """A decoder that picks other coding tables (each slice's indexes moved
  by a shift, clipped to the table range, as a desynchronised decoder
  would) decodes other symbols from the same stream: every one of these
  ends in the one-line refusal, none in a TensorFlow message (a gather
  past a table, a slice past the stream)."""
  from dcae_tf.codec import slice_coding  # pylint: disable=import-outside-toplevel
  shift = tf.Variable(0, dtype=tf.int32)
  table_index = slice_coding.table_index

  def shifted(config, scale):
    return tf.clip_by_value(table_index(config, scale) + shift, 0,
                            config.scale_levels - 1)

  monkeypatch.setattr(slice_coding, "table_index", shifted)
  decoder = DCAECodec(codec.model, name="test-tiny")
  images = [smooth_image(48, 64, seed=3), smooth_image(97, 31, seed=4)]
  for image in images:
    data = codec.compress(image).numpy()
    np.testing.assert_array_equal(decoder.decompress(data),
                                  codec.decompress(data))
    for value in (-1, 1, 2, 7, 63):
      shift.assign(value)
      with pytest.raises(tf.errors.InvalidArgumentError) as info:
        decoder.decompress(data)
      message = errors.error_message(info.value)
      assert message.startswith(errors.LATENTS_MISMATCH), (value, message)
      assert "\n" not in message
    shift.assign(0)


def test_payload_damage_behind_a_valid_checksum_is_refused(codec):
  """The checksum is no MAC: a forged payload passes it. Flipping a bit
  of the digest or of the rANS stream, then re-sealing, is still refused."""
  from tests.bitstream_cases import reseal  # pylint: disable=import-outside-toplevel
  data = codec.compress(smooth_image(40, 40, seed=7)).numpy()
  # The digest; the stream's first word and its last byte (bypass bits).
  for pos in (len(data) - 1, container.HEADER_SIZE,
              len(data) - digest.DIGEST_SIZE - 1):
    forged = bytearray(data)
    forged[pos] ^= 0x01
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
      codec.decompress(reseal(bytes(forged)))
    assert errors.error_message(info.value).startswith(
        errors.LATENTS_MISMATCH), (pos, info.value)


def test_pixel_limit_is_enforced():
  small = DCAECodec(DCAE("tiny").build_weights(), max_pixels=100)
  with pytest.raises(tf.errors.InvalidArgumentError, match="pixel limit"):
    small.compress(np.zeros((11, 10, 3), np.uint8))


def test_empty_image_is_refused(codec):
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1"):
    codec.compress(np.zeros((0, 5, 3), np.uint8))


@pytest.mark.slow
def test_fuzzed_bitstreams_through_the_real_decoder(codec, tmp_path):
  """Mutations reach the range decoder: clean errors or declared-size images.

  Re-sealed payload damage passes the checksum (it is no MAC): it must be
  refused by the digest of the coded symbols or decode to the original
  image; a re-sealed header rewrite may decode to an image of the size the
  header declares; everything else must be refused with
  InvalidArgumentError, within the time limit.
  """
  from tests.bitstream_cases import fuzz  # pylint: disable=import-outside-toplevel
  seed = fuzz.fuzz_seed()
  rng = np.random.default_rng(seed)
  images = [smooth_image(int(rng.integers(1, 80)), int(rng.integers(1, 80)),
                         seed=i) for i in range(3)]
  # Through a loaded export, as served: its graph errors are raised fast
  # (a Python-traced tf.function serializes stack traces on every error).
  exported = export.load_exported(export.save_versioned(
      codec, str(tmp_path / "fuzz")))
  corpus = [exported.compress(image) for image in images]
  expected = [exported.decompress(data) for data in corpus]
  mutator = fuzz.Mutator(corpus, seed, tf=tf)
  counts = {}

  def run(data):
    return exported.decompress_tensor(tf.constant(data)).numpy()

  for i in range(FUZZ_CASES):
    kind = "payload_sealed" if i % 4 == 0 else None
    kind, index, mutated = mutator.mutate(kind)
    outcome, seconds, detail = fuzz.classify(
        run, corpus[index], mutated, expected[index],
        lambda a, b: a.shape == b.shape and np.array_equal(a, b),
        FUZZ_CASE_LIMIT_S)
    # Payload damage is refused by the symbols' digest or changed nothing
    # the range decoder reads; a rewritten header (e.g. a smaller height
    # of the same padded size) may still be a valid, different stream.
    if outcome == fuzz.WRONG and kind == "rewrite_sealed":
      header = container.read_header(mutated)
      assert run(mutated).shape == (header["height"], header["width"], 3)
      outcome = fuzz.VALID
    assert not outcome.startswith("FAIL"), (kind, outcome, seconds, detail)
    counts[outcome] = counts.get(outcome, 0) + 1
  assert counts.get(fuzz.ERROR, 0) > FUZZ_CASES // 2, counts
