"""Damaged payloads behind a valid checksum, through the real codec.

The container's checksum is no MAC: whoever rewrites a payload can re-seal
it. Such a bitstream reaches the codec's rANS decoder and its symbols digest
(`dcae_tf.codec.digest`), which must turn it into one clean line of error
(or, if the damage changed nothing the decoder reads, the original image),
never a hang, a crash or a wrong image. The tiny preset's `decompress`
(a tf.function, traced once) decodes every case.
"""
import time

import numpy as np
import pytest
import tensorflow as tf

from dcae_tf.codec import DCAECodec
from dcae_tf.codec import container
from dcae_tf.codec import digest
from dcae_tf.codec import errors
from dcae_tf.model import DCAE
from tests.images import smooth_image
from tests.bitstream_cases import reseal

IMAGE_SIZE = (24, 40)
# Positions of single-byte flips: the payload's first and last bytes, the
# stream's last bytes (its bypass), the digest's first and last, and evenly
# spread ones in between, about this many in all.
NUM_FLIPS = 60
# Seconds per decode: far above a decode's time even on a loaded 2-core
# machine, so exceeding it means a loop that does not end with its symbols.
CASE_LIMIT_S = 20.0
MESSAGE_START = "DCAE bitstream"


@pytest.fixture(scope="module")
def codec():
  tf.random.set_seed(0)
  return DCAECodec(DCAE("tiny").build_weights(), name="test-tiny")


@pytest.fixture(scope="module")
def original(codec):
  """(bitstream, decoded image), with `decompress` traced.

  The bitstream is made eagerly, as `DCAECodec.warm_up` makes its own
  for a decode-only process: tracing `compress` instead took 46 s on a
  loaded 2-core machine, encoding eagerly 4 s (and gave the same bytes).
  """
  image = tf.constant(smooth_image(*IMAGE_SIZE, seed=11))
  data = codec._encode(image)[0].numpy()  # pylint: disable=protected-access
  image = codec.decompress(data).numpy()
  assert image.shape == IMAGE_SIZE + (3,)
  return data, image


def decode(codec, data):
  """'same', or the one-line message of a clean refusal; fails otherwise."""
  start = time.perf_counter()
  try:
    result = codec.decompress(data).numpy()
    outcome = None
  except tf.errors.InvalidArgumentError as e:
    result, outcome = None, errors.error_message(e)
  seconds = time.perf_counter() - start
  assert seconds < CASE_LIMIT_S, (seconds, outcome)
  assert codec.decompress.experimental_get_tracing_count() == 1
  if outcome is None:
    return result
  assert outcome and "\n" not in outcome, outcome
  return outcome


def flip_positions(size):
  """~NUM_FLIPS payload positions (offsets into the bitstream), including
  the payload's first two bytes, the stream's last two, and the digest's
  first and last."""
  payload_start = container.HEADER_SIZE
  stream_end = size - digest.DIGEST_SIZE
  ends = {payload_start, payload_start + 1, stream_end - 2, stream_end - 1,
          stream_end, size - 1}
  spread = np.linspace(payload_start, size - 1, NUM_FLIPS - len(ends))
  return sorted(ends | {int(p) for p in spread})


def test_payload_is_stream_and_digest(codec, original):
  data, _ = original
  header = container.read_header(data)
  assert header["fingerprint"] == codec.fingerprint
  assert header["payload_size"] == len(data) - container.HEADER_SIZE
  # Enough stream to flip bytes in the middle of.
  assert header["payload_size"] > 4 * digest.DIGEST_SIZE


def test_every_sampled_byte_flip_is_refused_or_harmless(codec, original):
  data, image = original
  positions = flip_positions(len(data))
  assert len(positions) >= NUM_FLIPS - 6
  refused = 0
  for i, pos in enumerate(positions):
    forged = bytearray(data)
    forged[pos] ^= 1 << (i % 8)
    forged = reseal(bytes(forged))
    assert container.read_header(forged)["checksum"] != (
        container.read_header(data)["checksum"])
    out = decode(codec, forged)
    if isinstance(out, str):
      assert out.startswith(MESSAGE_START), (pos, out)
      refused += 1
    else:
      np.testing.assert_array_equal(out, image, err_msg=f"flip at {pos}")
  # Each symbol sequence has exactly one valid stream: a changed byte is
  # refused (by a rANS check or the digest), save for a hash collision.
  assert refused == len(positions)


def test_flipped_digest_bits_are_refused_by_the_digest(codec, original):
  data, _ = original
  for bit in (0, 7):
    forged = bytearray(data)
    forged[-1] ^= 1 << bit
    out = decode(codec, reseal(bytes(forged)))
    assert out == errors.LATENTS_MISMATCH, out


@pytest.mark.parametrize("cut", [1, 2, digest.DIGEST_SIZE - 1,
                                 digest.DIGEST_SIZE, digest.DIGEST_SIZE + 1,
                                 "half", "all but the digest",
                                 "all but 7", "all"])
def test_truncated_payload_is_refused(codec, original, cut):
  data, _ = original
  size = len(data) - container.HEADER_SIZE
  cut = {"half": size // 2, "all but the digest": size - digest.DIGEST_SIZE,
         "all but 7": size - digest.DIGEST_SIZE + 1, "all": size}.get(cut, cut)
  out = decode(codec, reseal(data[:len(data) - cut]))
  assert isinstance(out, str) and MESSAGE_START in out, (cut, out)


@pytest.mark.parametrize("extra", [b"\x00", b"\xff", bytes(2),
                                   bytes(digest.DIGEST_SIZE), "random"])
def test_appended_bytes_are_refused(codec, original, extra):
  data, _ = original
  if extra == "random":
    extra = np.random.default_rng(3).integers(0, 256, 64,
                                              np.uint8).tobytes()
  out = decode(codec, reseal(data + extra))
  assert isinstance(out, str) and out.startswith(MESSAGE_START), out


def test_digest_moved_before_the_stream_is_refused(codec, original):
  data, _ = original
  payload = data[container.HEADER_SIZE:]
  moved = (data[:container.HEADER_SIZE] + payload[-digest.DIGEST_SIZE:] +
           payload[:-digest.DIGEST_SIZE])
  out = decode(codec, reseal(moved))
  assert isinstance(out, str) and out.startswith(MESSAGE_START), out
