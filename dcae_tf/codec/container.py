"""The DCAE container format, and its header read in pure Python.

Layout of a bitstream (all integers big-endian)::

  offset  size   field
  0       4      magic b"DCAE"
  4       1      format version (uint8, `FORMAT_VERSION`)
  5       8      fingerprint of the model that made it (the 16 hex digits
                 given by the caller, stored as 8 raw bytes)
  13      4      image height (uint32, >= 1)
  17      4      image width (uint32, >= 1)
  21      8      checksum: farmhash64 (`tf.fingerprint`) of every other byte
                 of the bitstream, i.e. of bytes [0, 21) followed by the
                 payload, so that a rewritten header field is caught as well
                 as a damaged payload. Stored as `tf.fingerprint` emits it.
  29      rest   payload, opaque to the container

`HEADER_SIZE` = 29 bytes; the payload's size is what remains, so no length
field is needed. A DCAE codec's payload is its rANS stream followed by the
8-byte digest of its coded symbols (`codec.digest`): 37 bytes besides the
coded symbols, whatever the image size.

The model is identified by its fingerprint alone (format 1 also stored its
name): a tool that holds several models finds the maker among them by
fingerprint (`dcae_tf.zoo.find_maker`).

`container_ops.pack` and `container_ops.unpack` write and check it in graph
ops; `read_header` parses the same header in pure Python for tools and
error messages (it does not verify the checksum, which needs TensorFlow's
farmhash). This module imports no TensorFlow, so a command line that only
inspects a header, or refuses a file, starts at once.
"""
import struct

MAGIC = b"DCAE"
FORMAT_VERSION = 3
# Field sizes in bytes.
VERSION_SIZE = 1
FINGERPRINT_SIZE = 8
DIM_SIZE = 4
CHECKSUM_SIZE = 8
MAX_DIM = 2 ** (8 * DIM_SIZE) - 1
# Default pixel limit: of the images a codec accepts, and of the sizes
# bitstream headers may claim (8192 x 4096: above every common camera, and
# already several GB of activations for the paper model).
DEFAULT_MAX_PIXELS = 2 ** 25
# Largest max_pixels `unpack` accepts: height and width come back as int32.
MAX_MAX_PIXELS = 2 ** 31 - 1
CHECKSUM_METHOD = "farmhash64"

# Offsets of the fields.
VERSION_OFFSET = len(MAGIC)
FINGERPRINT_OFFSET = VERSION_OFFSET + VERSION_SIZE
DIMS_OFFSET = FINGERPRINT_OFFSET + FINGERPRINT_SIZE
CHECKSUM_OFFSET = DIMS_OFFSET + 2 * DIM_SIZE
HEADER_SIZE = CHECKSUM_OFFSET + CHECKSUM_SIZE


def fingerprint_bytes(fingerprint):
  if not isinstance(fingerprint, str):
    raise TypeError("fingerprint must be a str of "
                    f"{2 * FINGERPRINT_SIZE} hex digits")
  try:
    raw = bytes.fromhex(fingerprint)
  except ValueError:
    raw = b""
  if len(raw) != FINGERPRINT_SIZE or len(fingerprint) != 2 * FINGERPRINT_SIZE:
    raise ValueError(f"fingerprint must be {2 * FINGERPRINT_SIZE} hex digits, "
                     f"got {fingerprint!r}")
  return raw


def version_error(version):
  """The one message for a bitstream of another format version."""
  return (f"DCAE bitstream format version {version} not supported (this is "
          f"{FORMAT_VERSION})")


def read_header(data):
  """Parses the header of a bitstream without TensorFlow.

  Args:
    data: bytes.

  Returns:
    dict with keys format_version, fingerprint (hex str), height, width,
    checksum (hex str), header_size, payload_size.

  Raises:
    ValueError: not a DCAE bitstream, another format version, or truncated.
      The checksum is NOT verified (that needs TensorFlow's farmhash;
      `unpack` does it).
  """
  data = bytes(data)
  if data[:len(MAGIC)] != MAGIC:
    raise ValueError("not a DCAE bitstream")
  if len(data) <= VERSION_OFFSET:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes)")
  version = data[VERSION_OFFSET]
  if version != FORMAT_VERSION:
    raise ValueError(version_error(version))
  if len(data) < HEADER_SIZE:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes, header "
                     f"needs {HEADER_SIZE})")
  fingerprint = data[FINGERPRINT_OFFSET:DIMS_OFFSET].hex()
  height, width = struct.unpack_from(">II", data, DIMS_OFFSET)
  checksum = data[CHECKSUM_OFFSET:HEADER_SIZE].hex()
  return dict(format_version=version, fingerprint=fingerprint, height=height,
              width=width, checksum=checksum, header_size=HEADER_SIZE,
              payload_size=len(data) - HEADER_SIZE)


def peek_fingerprint(data):
  """The fingerprint (hex str) of the model that made a bitstream.

  Raises ValueError like `read_header`.
  """
  return read_header(data)["fingerprint"]
