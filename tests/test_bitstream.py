"""Tests of the DCAE container (dcae_tf/bitstream.py).

Every decoding test runs four ways: eagerly, in a tf.function, in a
tf.function with input_signature TensorSpec([], tf.string), and through a
signature of a saved-and-loaded SavedModel (the TF Serving path).
"""
import importlib.util
import io
import os
import re
import struct
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcae_tf import bitstream

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "fuzz_bitstream", os.path.join(_ROOT, "bench", "fuzz_bitstream.py"))
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

NAME, FINGERPRINT, NUM_STRINGS = fuzz.CONTAINER_MODELS[1]
MAX_PIXELS = 1 << 20
MODES = ("eager", "function", "signature", "saved_model")
FUZZ_MUTATIONS = 3000
FUZZ_EAGER_MUTATIONS = 300
FUZZ_CASE_LIMIT_S = 1.0
FUZZ_TOTAL_LIMIT_S = 30.0


def make(strings=(b"z-string", b"", b"\x00\xffslice"), height=17, width=31,
         name=NAME, fingerprint=FINGERPRINT):
  return bitstream.pack([tf.constant(s) for s in strings], height, width,
                        name, fingerprint).numpy()


def reseal(data):
  return fuzz.reseal(data, tf)


def field_offset(data, field):
  return {f: o for f, o, _ in fuzz.header_fields(data)}[field]


def rewrite(data, field, value, seal=True):
  """Replaces a header field (bytes) and re-seals the checksum."""
  fields = {f: (o, s) for f, o, s in fuzz.header_fields(data)}
  offset, size = fields[field]
  assert len(value) == size
  data = data[:offset] + value + data[offset + size:]
  return reseal(data) if seal else data


@pytest.fixture(scope="module")
def saved_decoders(tmp_path_factory):
  return fuzz.container_decoders(
      tf, MAX_PIXELS, str(tmp_path_factory.mktemp("decoders")))


@pytest.fixture(scope="module")
def decoders(saved_decoders):
  """mode -> decode(bytes) -> (height, width, [bytes])."""

  def numpy(result):
    height, width, strings = result
    return int(height), int(width), [s.numpy() for s in strings]

  def eager(data):
    return numpy(bitstream.unpack(tf.constant(data), NAME, FINGERPRINT,
                                  NUM_STRINGS, MAX_PIXELS))

  @tf.function
  def traced(data):
    return bitstream.unpack(data, NAME, FINGERPRINT, NUM_STRINGS, MAX_PIXELS)

  @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
  def signature(data):
    return bitstream.unpack(data, NAME, FINGERPRINT, NUM_STRINGS, MAX_PIXELS)

  return {
      "eager": eager,
      "function": lambda d: numpy(traced(tf.constant(d))),
      "signature": lambda d: numpy(signature(tf.constant(d))),
      "saved_model": saved_decoders[NAME],
  }


def png_bytes():
  buf = io.BytesIO()
  Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(buf, "PNG")
  return buf.getvalue()


# --- round trips --------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_round_trip(decoders, mode):
  rng = np.random.default_rng(0)
  for _ in range(5):
    strings = [rng.integers(0, 256, int(rng.choice([0, 1, 100])),
                            np.uint8).tobytes() for _ in range(NUM_STRINGS)]
    height, width = (int(v) for v in rng.integers(1, 1000, 2))
    data = make(strings, height, width)
    assert decoders[mode](data) == (height, width, strings)


def test_round_trip_in_graph_pack():
  """pack inside a tf.function with tensor height / width."""

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def compress(image):
    shape = tf.shape(image)
    return bitstream.pack([tf.io.encode_png(image), tf.constant(b"")],
                          shape[0], shape[1], "png-model", FINGERPRINT)

  image = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
  data = compress(image)
  height, width, (png, empty) = bitstream.unpack(
      data, "png-model", FINGERPRINT, 2, MAX_PIXELS)
  assert (int(height), int(width), empty.numpy()) == (6, 7, b"")
  np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)


@pytest.mark.parametrize("num", [0, 1, 6, 40])
def test_round_trip_string_counts(num):
  strings = [bytes([i]) * i for i in range(num)]
  data = make(strings, 1, 1, name="m")
  height, width, out = bitstream.unpack(data, "m", FINGERPRINT, num, 1)
  assert (int(height), int(width)) == (1, 1)
  assert [s.numpy() for s in out] == strings


def test_layout_is_big_endian_as_documented():
  name = "model-\u00e9"
  data = make([b"abc", b"", b"de"], 0x01020304, 0x0A0B0C0D, name=name)
  encoded = name.encode()
  assert data[:4] == b"DCAE"
  assert data[4] == bitstream.FORMAT_VERSION
  assert data[5] == len(encoded)
  pos = 6 + len(encoded)
  assert data[6:pos] == encoded
  assert data[pos:pos + 8] == bytes.fromhex(FINGERPRINT)
  assert struct.unpack_from(">IIH3I", data, pos + 8) == (
      0x01020304, 0x0A0B0C0D, 3, 3, 0, 2)
  payload_start = bitstream.header_size(len(encoded), 3)
  assert data[payload_start:] == b"abcde"
  checksum = data[payload_start - 8:payload_start]
  covered = data[:payload_start - 8] + data[payload_start:]
  expected = tf.fingerprint(tf.constant([covered]), "farmhash64")[0]
  assert checksum == expected.numpy().tobytes()


def test_read_header_and_peek_model():
  data = make([b"abc", b"", b"de"], 5, 6)
  header = bitstream.read_header(data)
  assert header["model_name"] == NAME
  assert header["fingerprint"] == FINGERPRINT
  assert (header["height"], header["width"]) == (5, 6)
  assert header["num_strings"] == 3 and header["lengths"] == [3, 0, 2]
  assert header["format_version"] == bitstream.FORMAT_VERSION
  assert header["payload_size"] == 5
  assert header["header_size"] == len(data) - 5
  assert bitstream.peek_model(data) == (NAME, FINGERPRINT)


# --- errors -------------------------------------------------------------------

def _cases():
  good = make()
  name_offset = 6
  return {
      "empty": (b"", r"not a DCAE bitstream"),
      "one byte": (b"D", r"not a DCAE bitstream"),
      "magic only": (b"DCAE", r"truncated"),
      "random bytes": (np.random.default_rng(1).integers(
          0, 256, 300, np.uint8).tobytes(), r"not a DCAE bitstream"),
      "png file": (png_bytes(), r"not a DCAE bitstream"),
      "bad magic": (b"DCAF" + good[4:], r"not a DCAE bitstream"),
      "version 7": (good[:4] + b"\x07" + good[5:],
                    r"format version 7 not supported \(this is 1\)"),
      "truncated header": (good[:name_offset + 3], r"truncated"),
      "truncated lengths": (good[:field_offset(good, "checksum") - 1],
                            r"truncated"),
      "truncated payload": (good[:-1],
                            r"truncated DCAE bitstream: payload needs"),
      "trailing garbage": (good + b"xyz", r"3 bytes of trailing garbage"),
      "payload bit flip": (good[:-1] + bytes([good[-1] ^ 4]),
                           r"corrupted: checksum mismatch"),
      "height rewritten": (rewrite(good, "height", b"\0\0\0\x05", seal=False),
                           r"corrupted: checksum mismatch"),
      "name rewritten": (rewrite(good, "name", b"X" * len(NAME), seal=False),
                         r"corrupted: checksum mismatch"),
      "checksum rewritten": (rewrite(good, "checksum", bytes(8), seal=False),
                             r"corrupted: checksum mismatch"),
      "length moved": (rewrite(
          good, "length0", struct.pack(">I", 9), seal=True),
                       r"truncated|trailing"),
      "other model": (make(name="other-model"),
                      rf"made by model other-model \(fingerprint "
                      rf"{FINGERPRINT}\); this is model {NAME} "),
      "other weights": (make(fingerprint="00000000000000aa"),
                        rf"made by model {NAME} \(fingerprint "
                        rf"00000000000000aa\); this is model {NAME} "
                        rf"\(fingerprint {FINGERPRINT}\)"),
      "string count": (make([b"a", b"b"]),
                       rf"has 2 strings; model {NAME} expects 3"),
      "zero height": (rewrite(good, "height", bytes(4)),
                      r"invalid image size 0x31"),
      "zero width": (rewrite(good, "width", bytes(4)),
                     r"invalid image size 17x0"),
      "huge image": (make(height=100000, width=100000),
                     r"image 100000x100000 exceeds max_pixels 1048576"),
      "overflowing size": (
          rewrite(rewrite(good, "height", b"\xff" * 4), "width", b"\xff" * 4),
          r"image 4294967295x4294967295 exceeds max_pixels"),
      "one over max_pixels": (make(height=1025, width=1024),
                              r"image 1025x1024 exceeds max_pixels"),
  }


CASES = _cases()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_errors(decoders, mode, case):
  data, pattern = CASES[case]
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    decoders[mode](data)
  message = bitstream.error_message(info.value)
  assert re.search(pattern, message), message
  assert "\n" not in message and "Substr" not in message


def test_max_pixels_boundary_accepted(decoders):
  data = make(height=1024, width=1024)
  assert decoders["saved_model"](data)[:2] == (1024, 1024)


def test_eager_messages_are_plain():
  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    bitstream.unpack(tf.constant(make(name="other-model")), NAME, FINGERPRINT,
                     NUM_STRINGS, MAX_PIXELS)
  assert info.value.message.startswith("bitstream was made by model "
                                       "other-model")


def test_error_message_of_graph_error():
  graph_text = ("Graph execution error:\n\nDetected at node Assert/Assert "
                "defined at (most recent call last):\n<stack traces "
                "unavailable>\nassertion failed: [model \\'x\\' is \\\\ bad]"
                "\n\t [[{{node Assert/Assert}}]] [Op:__inference_f_1]")
  assert bitstream.error_message(graph_text) == "model 'x' is \\ bad"
  assert bitstream.error_message(
      "Graph execution error:\n\nassertion failed: [image exceeds the pixel "
      "limit of 100] [Condition x <= y did not hold element-wise:] [x "
      "(Cast:0) = ] [4096] [y (Const:0) = ] [100]\n\t [[{{node A}}]]"
  ) == "image exceeds the pixel limit of 100"
  assert bitstream.error_message("{{function_node f}} pos 4 out of range "
                                 "[Op:Substr]") == "pos 4 out of range"


@pytest.mark.parametrize("data, pattern", [
    (b"", "not a DCAE bitstream"),
    (b"DCAE", "truncated"),
    (png_bytes(), "not a DCAE bitstream"),
    (make()[:-1], "truncated"),
    (make() + b"x", "trailing garbage"),
    (make()[:4] + b"\x02" + make()[5:], "format version 2 not supported"),
    (make()[:20], "truncated"),
])
def test_read_header_errors(data, pattern):
  with pytest.raises(ValueError, match=pattern):
    bitstream.read_header(data)
  with pytest.raises(ValueError, match=pattern):
    bitstream.peek_model(data)


def test_pack_argument_errors():
  with pytest.raises(ValueError, match="fingerprint must be 16 hex digits"):
    make(fingerprint="xyz")
  with pytest.raises(ValueError, match="fingerprint must be 16 hex digits"):
    make(fingerprint="0123456789abcdeg")
  with pytest.raises(ValueError, match="model name must have"):
    make(name="")
  with pytest.raises(ValueError, match="model name must have"):
    make(name="n" * 256)
  with pytest.raises(tf.errors.InvalidArgumentError, match="height 0"):
    make(height=0)
  with pytest.raises(ValueError, match="max_pixels"):
    bitstream.unpack(make(), NAME, FINGERPRINT, NUM_STRINGS, 0)


# --- fuzz ---------------------------------------------------------------------

def _fuzz(runs, entries, count, seed):
  mutator = fuzz.Mutator([e["data"] for e in entries], seed, tf=tf)
  counts = {}
  for _ in range(count):
    kind, index, mutated = mutator.mutate()
    entry = entries[index]
    expected = (entry["height"], entry["width"], entry["strings"])
    outcome, seconds, detail = fuzz.classify(
        runs[index], entry["data"], mutated, expected,
        lambda a, b: a == b, FUZZ_CASE_LIMIT_S)
    if outcome == fuzz.WRONG and kind in fuzz.SEALED:
      outcome = fuzz.VALID  # A forged stream; the checksum is no MAC.
    assert not outcome.startswith("FAIL"), (
        f"seed {seed}: {kind} mutation -> {outcome} in {seconds:.3f} s: "
        f"{detail} (input {mutated[:64].hex()})")
    if outcome == fuzz.ERROR:
      message = bitstream.error_message(detail)
      assert message and "\n" not in message, detail
    counts[outcome] = counts.get(outcome, 0) + 1
  return counts


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
  # Re-sealed mutations (2 of the 11 kinds) may decode; the rest must not.
  assert counts[fuzz.ERROR] > 0.75 * FUZZ_MUTATIONS, counts

  def eager_decoder(entry):
    def run(data):
      height, width, strings = bitstream.unpack(
          tf.constant(data), entry["name"], entry["fingerprint"],
          len(entry["strings"]), MAX_PIXELS)
      return int(height), int(width), [s.numpy() for s in strings]
    return run

  _fuzz([eager_decoder(e) for e in entries], entries, FUZZ_EAGER_MUTATIONS,
        seed + 1)
  assert time.perf_counter() - start < FUZZ_TOTAL_LIMIT_S
