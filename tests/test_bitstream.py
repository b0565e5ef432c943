"""Tests of the DCAE container, format 3 (dcae_tf/codec/container*.py).

Every decoding test runs four ways: eagerly, in a tf.function, in a
tf.function with input_signature TensorSpec([], tf.string), and through a
signature of a saved-and-loaded SavedModel (the TF Serving path).
The bitstreams and error cases are built in `tests/bitstream_cases.py`.
"""
import re
import struct
import time

import numpy as np
import pytest
import tensorflow as tf

from dcae_tf.codec import container
from dcae_tf.codec import container_ops
from dcae_tf.codec import digest
from dcae_tf.codec import errors
from tests import bitstream_cases
from tests.bitstream_cases import (
    FINGERPRINT, MAX_PIXELS, NAME, OTHER_FINGERPRINT, farmhash, fuzz, make,
    png_bytes, reseal, version_1_bitstream)

MODES = ("eager", "function", "signature", "saved_model")
# The documented layout: magic(4) version(1) fingerprint(8) height(4)
# width(4) checksum(8), then the payload.
DOCUMENTED_HEADER_SIZE = 29
FUZZ_MUTATIONS = 3000
FUZZ_EAGER_MUTATIONS = 300
FUZZ_CASE_LIMIT_S = 1.0
FUZZ_TOTAL_LIMIT_S = 30.0


@pytest.fixture(scope="module")
def saved_decoders(tmp_path_factory):
  return fuzz.container_decoders(
      tf, MAX_PIXELS, str(tmp_path_factory.mktemp("decoders")))


@pytest.fixture(scope="module")
def decoders(saved_decoders):
  """mode -> decode(bytes) -> (height, width, payload bytes)."""

  def numpy(result):
    height, width, payload = result
    assert height.dtype == width.dtype == tf.int32
    return int(height), int(width), payload.numpy()

  def eager(data):
    return numpy(container_ops.unpack(tf.constant(data), FINGERPRINT,
                                      MAX_PIXELS, model_name=NAME))

  @tf.function
  def traced(data):
    return container_ops.unpack(data, FINGERPRINT, MAX_PIXELS,
                                model_name=NAME)

  @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
  def signature(data):
    return container_ops.unpack(data, FINGERPRINT, MAX_PIXELS,
                                model_name=NAME)

  return {
      "eager": eager,
      "function": lambda d: numpy(traced(tf.constant(d))),
      "signature": lambda d: numpy(signature(tf.constant(d))),
      "saved_model": saved_decoders[NAME],
  }


# --- round trips --------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_round_trip(decoders, mode):
  rng = np.random.default_rng(0)
  for size in (0, 1, 8, 100, 1000):
    payload = rng.integers(0, 256, size, np.uint8).tobytes()
    height, width = (int(v) for v in rng.integers(1, 1000, 2))
    data = make(payload, height, width)
    assert len(data) == container.HEADER_SIZE + size
    assert decoders[mode](data) == (height, width, payload)


def test_round_trip_in_graph_pack():
  """pack inside a tf.function with tensor height / width."""

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def compress(image):
    shape = tf.shape(image)
    return container_ops.pack(tf.io.encode_png(image), shape[0], shape[1],
                              FINGERPRINT)

  image = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
  data = compress(image)
  height, width, png = container_ops.unpack(data, FINGERPRINT, MAX_PIXELS)
  assert (int(height), int(width)) == (6, 7)
  np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)


def test_header_size_is_29_bytes():
  assert container.HEADER_SIZE == DOCUMENTED_HEADER_SIZE
  assert container.HEADER_SIZE == DOCUMENTED_HEADER_SIZE
  assert len(make(b"")) == DOCUMENTED_HEADER_SIZE
  assert len(make(b"x" * 5)) == DOCUMENTED_HEADER_SIZE + 5
  # The codec's payload ends with its digest: 37 bytes besides the symbols,
  # within the format's budget of 40.
  assert container.HEADER_SIZE + digest.DIGEST_SIZE <= 40


def test_layout_is_big_endian_as_documented():
  data = make(b"abcde", 0x01020304, 0x0A0B0C0D)
  assert data[:4] == b"DCAE"
  assert data[4] == container.FORMAT_VERSION == 3
  assert data[5:13] == bytes.fromhex(FINGERPRINT)
  assert struct.unpack_from(">II", data, 13) == (0x01020304, 0x0A0B0C0D)
  assert data[29:] == b"abcde"
  # The checksum covers every other byte: the header before it and the
  # payload.
  assert data[21:29] == farmhash(data[:21] + data[29:])


def test_largest_dimensions_are_stored():
  data = make(b"p", container.MAX_DIM, container.MAX_DIM)
  header = container.read_header(data)
  assert (header["height"], header["width"]) == (container.MAX_DIM,) * 2


def test_read_header_and_peek_fingerprint():
  data = make(b"abcde", 5, 6)
  assert container.read_header(data) == dict(
      format_version=container.FORMAT_VERSION, fingerprint=FINGERPRINT,
      height=5, width=6, checksum=data[21:29].hex(),
      header_size=container.HEADER_SIZE, payload_size=5)
  assert container.peek_fingerprint(data) == FINGERPRINT
  # read_header does not verify the checksum: the payload is whatever
  # follows the header.
  assert container.read_header(data + b"xyz")["payload_size"] == 8


# --- errors -------------------------------------------------------------------

CASES = bitstream_cases.error_cases()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_errors(decoders, mode, case):
  data, pattern = CASES[case]
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    decoders[mode](data)
  message = errors.error_message(info.value)
  assert re.search(pattern, message), message
  assert "\n" not in message and "Substr" not in message


@pytest.mark.parametrize("mode", MODES)
def test_resealed_resize_is_another_payload(decoders, mode):
  """Behind a re-sealed checksum the container returns whatever follows the
  header (only a codec's own decoder can refuse it: tests/test_rans_codec)."""
  good = make(b"0123456789")
  assert decoders[mode](reseal(good[:-3])) == (17, 31, b"0123456")
  assert decoders[mode](reseal(good + b"ab")) == (17, 31, b"0123456789ab")
  assert decoders[mode](reseal(good[:container.HEADER_SIZE])) == (17, 31, b"")


def test_max_pixels_boundary_accepted(decoders):
  data = make(height=1024, width=1024)
  assert decoders["saved_model"](data)[:2] == (1024, 1024)
  assert decoders["eager"](make(height=MAX_PIXELS, width=1))[:2] == (
      MAX_PIXELS, 1)


def test_max_pixels_as_a_tensor():
  """A signature may take the limit as an input: checked in the graph."""

  @tf.function(input_signature=[tf.TensorSpec([], tf.string),
                                tf.TensorSpec([], tf.int64)])
  def decode(data, max_pixels):
    return container_ops.unpack(data, FINGERPRINT, max_pixels)[:2]

  data = make(height=30, width=40)
  assert [int(v) for v in decode(data, 1200)] == [30, 40]
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    decode(data, 1199)
  assert errors.error_message(info.value) == (
      "image 30x40 exceeds max_pixels 1199")


def test_mismatch_message_without_a_model_name():
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    container_ops.unpack(make(fingerprint=OTHER_FINGERPRINT), FINGERPRINT,
                         MAX_PIXELS)
  assert info.value.message == (
      f"bitstream was made by the model with fingerprint {OTHER_FINGERPRINT}; "
      f"this is model (fingerprint {FINGERPRINT})")


def test_eager_messages_are_plain():
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    container_ops.unpack(tf.constant(version_1_bitstream()), FINGERPRINT,
                         MAX_PIXELS)
  assert info.value.message == (
      "DCAE bitstream format version 1 not supported (this is 3)")


def test_error_message_of_graph_error():
  graph_text = ("Graph execution error:\n\nDetected at node Assert/Assert "
                "defined at (most recent call last):\n<stack traces "
                "unavailable>\nassertion failed: [model \\'x\\' is \\\\ bad]"
                "\n\t [[{{node Assert/Assert}}]] [Op:__inference_f_1]")
  assert errors.error_message(graph_text) == "model 'x' is \\ bad"
  assert errors.error_message(
      "Graph execution error:\n\nassertion failed: [image exceeds the pixel "
      "limit of 100] [Condition x <= y did not hold element-wise:] [x "
      "(Cast:0) = ] [4096] [y (Const:0) = ] [100]\n\t [[{{node A}}]]"
  ) == "image exceeds the pixel limit of 100"
  assert errors.error_message("{{function_node f}} pos 4 out of range "
                              "[Op:Substr]") == "pos 4 out of range"


def test_error_message_of_a_rans_check():
  """The rANS decoder's checks read as a damaged DCAE bitstream, naming the
  check, on one line."""
  message = errors.error_message(
      "Graph execution error:\n\nDetected at node decode/Assert\n"
      "assertion failed: [rans: stream not fully consumed]\n\t "
      "[[{{node decode/Assert}}]] [Op:__inference_decompress_9]")
  assert message.startswith("DCAE bitstream"), message
  assert message.endswith("(stream not fully consumed)"), message
  assert "\n" not in message and "rans:" not in message


def _refused_by_read_header_and_unpack(data, pattern):
  with pytest.raises(ValueError, match=pattern):
    container.read_header(data)
  with pytest.raises(ValueError, match=pattern):
    container.peek_fingerprint(data)
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    container_ops.unpack(tf.constant(data), FINGERPRINT, MAX_PIXELS)
  assert re.search(pattern, info.value.message), info.value.message


def test_version_1_is_refused_naming_both_versions():
  message = re.escape("DCAE bitstream format version 1 not supported "
                      "(this is 3)")
  v1 = version_1_bitstream()
  _refused_by_read_header_and_unpack(v1, f"^{message}$")
  # However short, once the version byte is there.
  _refused_by_read_header_and_unpack(v1[:5], f"^{message}$")
  assert container.version_error(1) == (
      "DCAE bitstream format version 1 not supported (this is 3)")


@pytest.mark.parametrize("data, pattern", [
    (b"", "^not a DCAE bitstream$"),
    (b"DCAE", "^truncated DCAE bitstream"),
    (png_bytes(), "^not a DCAE bitstream$"),
    (make()[:container.HEADER_SIZE - 1], "^truncated DCAE bitstream"),
    (make()[:4] + b"\x02" + make()[5:],
     r"^DCAE bitstream format version 2 not supported \(this is 3\)$"),
    (make()[:4] + b"\x00" + make()[5:],
     r"^DCAE bitstream format version 0 not supported \(this is 3\)$"),
])
def test_read_header_errors(data, pattern):
  with pytest.raises(ValueError, match=pattern):
    container.read_header(data)
  with pytest.raises(ValueError, match=pattern):
    container.peek_fingerprint(data)


def test_pack_argument_errors():
  with pytest.raises(ValueError, match="fingerprint must be 16 hex digits"):
    make(fingerprint="xyz")
  with pytest.raises(ValueError, match="fingerprint must be 16 hex digits"):
    make(fingerprint="0123456789abcdeg")
  with pytest.raises(ValueError, match="fingerprint must be 16 hex digits"):
    make(fingerprint="0123456789abcdef00")
  with pytest.raises(TypeError, match="fingerprint must be a str"):
    make(fingerprint=bytes(8))
  with pytest.raises(tf.errors.InvalidArgumentError, match="height 0"):
    make(height=0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="width 0"):
    make(width=0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="height 4294967296"):
    make(height=container.MAX_DIM + 1)
  with pytest.raises(ValueError, match="payload must be a scalar"):
    container_ops.pack(tf.constant([b"a", b"b"]), 1, 1, FINGERPRINT)


def test_unpack_argument_errors():
  for max_pixels in (0, container.MAX_MAX_PIXELS + 1):
    with pytest.raises(ValueError, match="max_pixels"):
      container_ops.unpack(make(), FINGERPRINT, max_pixels)
  with pytest.raises(ValueError, match="fingerprint must be 16 hex digits"):
    container_ops.unpack(make(), "abc", MAX_PIXELS)
  with pytest.raises(ValueError, match="bitstream must be a scalar"):
    container_ops.unpack(tf.constant([make()]), FINGERPRINT, MAX_PIXELS)


# --- fuzz ---------------------------------------------------------------------

def _fuzz(runs, entries, count, seed):
  mutator = fuzz.Mutator([e["data"] for e in entries], seed, tf=tf)
  counts = {}
  for _ in range(count):
    kind, index, mutated = mutator.mutate()
    entry = entries[index]
    expected = (entry["height"], entry["width"], entry["payload"])
    outcome, seconds, detail = fuzz.classify(
        runs[index], entry["data"], mutated, expected,
        lambda a, b: a == b, FUZZ_CASE_LIMIT_S)
    if outcome == fuzz.WRONG and kind in fuzz.SEALED:
      outcome = fuzz.VALID  # A forged stream; the checksum is no MAC.
    assert not outcome.startswith("FAIL"), (
        f"seed {seed}: {kind} mutation -> {outcome} in {seconds:.3f} s: "
        f"{detail} (input {mutated[:64].hex()})")
    if outcome == fuzz.ERROR:
      message = errors.error_message(detail)
      assert message and "\n" not in message, detail
    counts[outcome] = counts.get(outcome, 0) + 1
  return counts


def test_mutator_makes_every_kind():
  corpus = [make(b"abc"), make(b"", 3, 4)]
  mutator = fuzz.Mutator(corpus, 0, tf=tf)
  for kind in fuzz.MUTATIONS:
    assert mutator.mutate(kind)[0] == kind
  # A re-sealed resize keeps the header and a valid checksum.
  for _ in range(20):
    _, index, out = mutator.mutate("resize_sealed")
    assert out[:container.CHECKSUM_OFFSET] == corpus[index][
        :container.CHECKSUM_OFFSET]
    assert reseal(out) == out and out != corpus[index]


def test_fuzz_container(saved_decoders):
  """>= 1000 mutations through a served decoder, some more eagerly.

  Rerun with another corpus: DCAE_FUZZ_SEED=123 pytest tests/test_bitstream.py
  """
  start = time.perf_counter()
  seed = fuzz.fuzz_seed()
  rng = np.random.default_rng(seed)
  entries = fuzz.container_corpus(tf, rng, 9)
  runs = [saved_decoders[e["name"]] for e in entries]
  counts = _fuzz(runs, entries, FUZZ_MUTATIONS, seed)
  # Re-sealed mutations (3 of the 12 kinds) may decode; the rest must not.
  assert counts[fuzz.ERROR] > 0.7 * FUZZ_MUTATIONS, counts

  def eager_decoder(entry):
    def run(data):
      height, width, payload = container_ops.unpack(
          tf.constant(data), entry["fingerprint"], MAX_PIXELS,
          model_name=entry["name"])
      return int(height), int(width), payload.numpy()
    return run

  _fuzz([eager_decoder(e) for e in entries], entries, FUZZ_EAGER_MUTATIONS,
        seed + 1)
  assert time.perf_counter() - start < FUZZ_TOTAL_LIMIT_S
