"""The DCAE container format, and its header read in pure Python.

Layout of a bitstream (all integers big-endian)::

  offset       size   field
  0            4      magic b"DCAE"
  4            1      format version (uint8, `FORMAT_VERSION`)
  5            1      L = length of the model name in bytes (uint8)
  6            L      model name (UTF-8)
  6+L          8      model fingerprint (the 16 hex digits given by the
                      caller, stored as 8 raw bytes)
  14+L         4      image height (uint32, >= 1)
  18+L         4      image width (uint32, >= 1)
  22+L         2      N = number of strings (uint16)
  24+L         4*N    length of each string in bytes (uint32 each)
  24+L+4N      8      checksum: farmhash64 (`tf.fingerprint`) of every byte
                      of the bitstream except the checksum itself, i.e. of
                      bytes [0, 24+L+4N) followed by the payload, so that a
                      rewritten header field is caught as well as a damaged
                      payload. Stored as `tf.fingerprint` emits it.
  32+L+4N      sum    payload: the N strings, concatenated

The overhead is 32 + L + 4N bytes. A five-slice DCAE codec writes N = 7
strings (z, five y slices, and the 8-byte digest of its coded symbols,
`symbols_digest`): 82 bytes in all for a 14-character name, 0.0017 bpp on
a 768x512 image.

`container_ops.pack` and `container_ops.unpack` write and check it in graph
ops; `read_header` parses the same header in pure Python for tools and
error messages (it does not verify the checksum, which needs TensorFlow's
farmhash). This module imports no TensorFlow, so a command line that only
inspects a header, or refuses a file, starts at once.
"""
import struct

MAGIC = b"DCAE"
FORMAT_VERSION = 1
# Field sizes in bytes.
VERSION_SIZE = 1
NAME_LENGTH_SIZE = 1
FINGERPRINT_SIZE = 8
DIM_SIZE = 4
COUNT_SIZE = 2
LENGTH_SIZE = 4
CHECKSUM_SIZE = 8
MAX_NAME_BYTES = 2 ** (8 * NAME_LENGTH_SIZE) - 1
MAX_STRINGS = 2 ** (8 * COUNT_SIZE) - 1
MAX_DIM = 2 ** (8 * DIM_SIZE) - 1
MAX_STRING_BYTES = 2 ** (8 * LENGTH_SIZE) - 1
# Default pixel limit: of the images a codec accepts, and of the sizes
# bitstream headers may claim (8192 x 4096: above every common camera, and
# already several GB of activations for the paper model).
DEFAULT_MAX_PIXELS = 2 ** 25
# Largest max_pixels `unpack` accepts: height and width come back as int32.
MAX_MAX_PIXELS = 2 ** 31 - 1
CHECKSUM_METHOD = "farmhash64"

# Offsets of the fixed fields; those after the name are relative to its end.
VERSION_OFFSET = len(MAGIC)
NAME_LENGTH_OFFSET = VERSION_OFFSET + VERSION_SIZE
NAME_OFFSET = NAME_LENGTH_OFFSET + NAME_LENGTH_SIZE
# After the name: fingerprint, height, width, count.
AFTER_NAME_SIZE = FINGERPRINT_SIZE + 2 * DIM_SIZE + COUNT_SIZE

def header_size(model_name_bytes, num_strings):
  """Bytes before the payload, for a name of that many bytes."""
  return (NAME_OFFSET + model_name_bytes + AFTER_NAME_SIZE +
          LENGTH_SIZE * num_strings + CHECKSUM_SIZE)


def name_bytes(model_name):
  if not isinstance(model_name, str):
    raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
  encoded = model_name.encode("utf-8")
  if not encoded or len(encoded) > MAX_NAME_BYTES:
    raise ValueError(f"model name must have 1 to {MAX_NAME_BYTES} UTF-8 bytes, "
                     f"got {len(encoded)}")
  return encoded


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



def read_header(data):
  """Parses the header of a bitstream without TensorFlow.

  Args:
    data: bytes.

  Returns:
    dict with keys format_version, model_name, fingerprint (hex str), height,
    width, num_strings, lengths (list of ints), checksum (hex str),
    header_size, payload_size.

  Raises:
    ValueError: not a DCAE bitstream, unsupported version, truncated, or
      trailing bytes. The checksum is NOT verified (that needs TensorFlow's
      farmhash; `unpack` does it).
  """
  data = bytes(data)
  if data[:len(MAGIC)] != MAGIC:
    raise ValueError("not a DCAE bitstream")
  if len(data) < NAME_OFFSET:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes)")
  version = data[VERSION_OFFSET]
  if version != FORMAT_VERSION:
    raise ValueError(f"DCAE bitstream format version {version} not supported "
                     f"(this is {FORMAT_VERSION})")
  name_length = data[NAME_LENGTH_OFFSET]
  count_end = NAME_OFFSET + name_length + AFTER_NAME_SIZE
  if len(data) < count_end + CHECKSUM_SIZE:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes)")
  pos = NAME_OFFSET
  name = data[pos:pos + name_length].decode("utf-8", errors="replace")
  pos += name_length
  fingerprint = data[pos:pos + FINGERPRINT_SIZE].hex()
  pos += FINGERPRINT_SIZE
  height, width, count = struct.unpack_from(">IIH", data, pos)
  pos = count_end
  payload_start = count_end + LENGTH_SIZE * count + CHECKSUM_SIZE
  if len(data) < payload_start:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes, header "
                     f"needs {payload_start})")
  lengths = list(struct.unpack_from(f">{count}I", data, pos))
  pos += LENGTH_SIZE * count
  checksum = data[pos:pos + CHECKSUM_SIZE].hex()
  payload_size = sum(lengths)
  available = len(data) - payload_start
  if payload_size > available:
    raise ValueError(f"truncated DCAE bitstream: payload needs {payload_size} "
                     f"bytes, got {available}")
  if payload_size < available:
    raise ValueError(f"DCAE bitstream has {available - payload_size} bytes of "
                     "trailing garbage")
  return dict(format_version=version, model_name=name,
              fingerprint=fingerprint, height=height, width=width,
              num_strings=count, lengths=lengths, checksum=checksum,
              header_size=payload_start, payload_size=payload_size)


def peek_model(data):
  """(model_name, fingerprint) of a bitstream, for error messages.

  Raises ValueError like `read_header`.
  """
  header = read_header(data)
  return header["model_name"], header["fingerprint"]
