"""The container tests' shared pieces: bitstreams built, resealed and
rewritten field by field, a format-1 bitstream, and the error cases every
decoder must refuse with its one-line message (tests/test_bitstream.py;
`tests/test_codec.py` and `tests/test_rans_codec.py` use `fuzz` and
`reseal`)."""
import importlib.util
import io
import os
import struct

import numpy as np
import tensorflow as tf
from PIL import Image

from dcae_tf.codec import container
from dcae_tf.codec import container_ops

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "fuzz_bitstream", os.path.join(_ROOT, "bench", "fuzz_bitstream.py"))
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

NAME, FINGERPRINT = fuzz.CONTAINER_MODELS[1]
OTHER_FINGERPRINT = "00000000000000aa"
MAX_PIXELS = 1 << 20
PAYLOAD = b"\x00\xffsome payload\x00"


def make(payload=PAYLOAD, height=17, width=31, fingerprint=FINGERPRINT):
  return container_ops.pack(tf.constant(payload), height, width,
                            fingerprint).numpy()


def reseal(data):
  return fuzz.reseal(data, tf)


def farmhash(data):
  return tf.fingerprint(tf.constant([data]), "farmhash64")[0].numpy().tobytes()


def rewrite(data, field, value, seal=True):
  """Replaces a header field (bytes) and, by default, re-seals the checksum."""
  fields = {f: (o, s) for f, o, s in fuzz.header_fields(data)}
  offset, size = fields[field]
  assert len(value) == size
  data = data[:offset] + value + data[offset + size:]
  return reseal(data) if seal else data


def version_1_bitstream():
  """A format-1 bitstream as its writer laid it out: magic, version, name
  length and name, fingerprint, height, width, string count, string lengths,
  checksum (farmhash64 of all else), strings."""
  name = NAME.encode()
  strings = [b"z-string", b"", b"slice"]
  header = (container.MAGIC + b"\x01" + bytes([len(name)]) + name +
            bytes.fromhex(FINGERPRINT) + struct.pack(">IIH", 17, 31,
                                                     len(strings)) +
            b"".join(struct.pack(">I", len(s)) for s in strings))
  payload = b"".join(strings)
  return header + farmhash(header + payload) + payload



def png_bytes():
  buf = io.BytesIO()
  Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(buf, "PNG")
  return buf.getvalue()


def error_cases():
  """name -> (bitstream, pattern of its one-line refusal)."""
  good = make()
  v1 = version_1_bitstream()
  return {
      "empty": (b"", r"^not a DCAE bitstream \(0 bytes"),
      "one byte": (b"D", r"^not a DCAE bitstream"),
      "magic only": (b"DCAE", r"^truncated DCAE bitstream: 4 bytes$"),
      "random bytes": (np.random.default_rng(1).integers(
          0, 256, 300, np.uint8).tobytes(), r"^not a DCAE bitstream"),
      "png file": (png_bytes(), r"^not a DCAE bitstream"),
      "bad magic": (b"DCAF" + good[4:], r"^not a DCAE bitstream"),
      "version 1": (v1, r"^DCAE bitstream format version 1 not supported "
                        r"\(this is 3\)$"),
      "version 1 header only": (v1[:5], r"^DCAE bitstream format version 1 "
                                        r"not supported \(this is 3\)$"),
      "version 7": (good[:4] + b"\x07" + good[5:],
                    r"^DCAE bitstream format version 7 not supported "
                    r"\(this is 3\)$"),
      "truncated header": (good[:container.HEADER_SIZE - 1],
                           r"^truncated DCAE bitstream: header needs 29 "
                           r"bytes, got 28$"),
      "truncated in fingerprint": (good[:8], r"^truncated DCAE bitstream"),
      # No length field: a shorter or longer payload is another payload,
      # which the checksum (covering the payload) refuses.
      "truncated payload": (good[:-1], r"^DCAE bitstream corrupted: checksum "
                                       r"mismatch$"),
      "payload removed": (good[:container.HEADER_SIZE],
                          r"^DCAE bitstream corrupted: checksum mismatch$"),
      "trailing garbage": (good + b"xyz", r"^DCAE bitstream corrupted: "
                                          r"checksum mismatch$"),
      "payload bit flip": (good[:-1] + bytes([good[-1] ^ 4]),
                           r"^DCAE bitstream corrupted: checksum mismatch$"),
      "height rewritten": (rewrite(good, "height", b"\0\0\0\x05", seal=False),
                           r"^DCAE bitstream corrupted: checksum mismatch$"),
      # The checksum is checked before the fingerprint: damage never reads
      # as another model.
      "fingerprint rewritten": (
          rewrite(good, "fingerprint", bytes(8), seal=False),
          r"^DCAE bitstream corrupted: checksum mismatch$"),
      "checksum rewritten": (rewrite(good, "checksum", bytes(8), seal=False),
                             r"^DCAE bitstream corrupted: checksum mismatch$"),
      "other weights": (make(fingerprint=OTHER_FINGERPRINT),
                        rf"^bitstream was made by the model with fingerprint "
                        rf"{OTHER_FINGERPRINT}; this is model {NAME} "
                        rf"\(fingerprint {FINGERPRINT}\)$"),
      "other weights, resealed": (
          rewrite(good, "fingerprint", bytes.fromhex(OTHER_FINGERPRINT)),
          rf"^bitstream was made by the model with fingerprint "
          rf"{OTHER_FINGERPRINT}; this is model {NAME} "),
      "zero height": (rewrite(good, "height", bytes(4)),
                      r"^invalid image size 0x31 in DCAE bitstream$"),
      "zero width": (rewrite(good, "width", bytes(4)),
                     r"^invalid image size 17x0 in DCAE bitstream$"),
      "huge image": (make(height=100000, width=100000),
                     r"^image 100000x100000 exceeds max_pixels 1048576$"),
      "overflowing size": (
          rewrite(rewrite(good, "height", b"\xff" * 4), "width", b"\xff" * 4),
          r"^image 4294967295x4294967295 exceeds max_pixels 1048576$"),
      "one over max_pixels": (make(height=1025, width=1024),
                              r"^image 1025x1024 exceeds max_pixels"),
      "one over max_pixels, tall": (make(height=MAX_PIXELS + 1, width=1),
                                    r"^image 1048577x1 exceeds max_pixels"),
  }
