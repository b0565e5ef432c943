"""The DCAE container: packs a codec's entropy-coded strings into one file.

Everything in `pack` and `unpack` is made of stock TensorFlow ops
(`tf.strings.*`, `tf.io.decode_raw`, `tf.fingerprint`, `tf.debugging.Assert`),
so both run eagerly, inside a `tf.function`, and inside a SavedModel signature
served by TF Serving, without any custom op.

Layout (all integers big-endian)::

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

`unpack` validates, in this order and before it slices out anything or lets
the caller allocate an image: magic, version, that the header and the lengths
table fit, that the string lengths add up to exactly the rest of the
bitstream (truncated / trailing bytes), the checksum, the model name and
fingerprint, the string count, and the image size (>= 1 and at most
`max_pixels` pixels, checked without overflow). Every failure raises
`tf.errors.InvalidArgumentError`; the checksum is checked before the
semantic fields so that a damaged header reads as "corrupted", never as a
bogus model name or size.

Messages avoid quote characters because TensorFlow C-escapes them inside
graph assertion messages; `error_message` turns a graph-mode error back into
the plain one-line text for command-line tools.

`read_header` parses the same header in pure Python (no TensorFlow) for
tooling and error messages; it does not verify the checksum.
"""
import codecs
import importlib
import re
import struct


class _LazyModule:
  """Imports a module on first attribute access.

  `read_header` and friends are pure Python: a command line that only
  inspects a header (or rejects a file) should not pay for importing
  TensorFlow.
  """

  def __init__(self, name):
    self._name = name

  def __getattr__(self, attr):
    module = importlib.import_module(self._name)
    globals()["tf"] = module
    return getattr(module, attr)


tf = _LazyModule("tensorflow")

MAGIC = b"DCAE"
FORMAT_VERSION = 1
# Field sizes in bytes.
_VERSION_SIZE = 1
_NAME_LENGTH_SIZE = 1
FINGERPRINT_SIZE = 8
_DIM_SIZE = 4
_COUNT_SIZE = 2
_LENGTH_SIZE = 4
CHECKSUM_SIZE = 8
MAX_NAME_BYTES = 2 ** (8 * _NAME_LENGTH_SIZE) - 1
MAX_STRINGS = 2 ** (8 * _COUNT_SIZE) - 1
MAX_DIM = 2 ** (8 * _DIM_SIZE) - 1
MAX_STRING_BYTES = 2 ** (8 * _LENGTH_SIZE) - 1
# Largest max_pixels `unpack` accepts: height and width come back as int32.
MAX_MAX_PIXELS = 2 ** 31 - 1
_CHECKSUM_METHOD = "farmhash64"

# Offsets of the fixed fields; those after the name are relative to its end.
_VERSION_OFFSET = len(MAGIC)
_NAME_LENGTH_OFFSET = _VERSION_OFFSET + _VERSION_SIZE
_NAME_OFFSET = _NAME_LENGTH_OFFSET + _NAME_LENGTH_SIZE
# After the name: fingerprint, height, width, count.
_AFTER_NAME_SIZE = FINGERPRINT_SIZE + 2 * _DIM_SIZE + _COUNT_SIZE

# One single-byte string per byte value, and two hex digits per byte value:
# `tf.gather` + `tf.strings.reduce_join` turn integer bytes into a string.
_BYTE_STRINGS = [bytes([i]) for i in range(256)]
_HEX_STRINGS = [f"{i:02x}" for i in range(256)]


def header_size(model_name_bytes, num_strings):
  """Bytes before the payload, for a name of that many bytes."""
  return (_NAME_OFFSET + model_name_bytes + _AFTER_NAME_SIZE +
          _LENGTH_SIZE * num_strings + CHECKSUM_SIZE)


def _name_bytes(model_name):
  if not isinstance(model_name, str):
    raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
  encoded = model_name.encode("utf-8")
  if not encoded or len(encoded) > MAX_NAME_BYTES:
    raise ValueError(f"model name must have 1 to {MAX_NAME_BYTES} UTF-8 bytes, "
                     f"got {len(encoded)}")
  return encoded


def _fingerprint_bytes(fingerprint):
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


# ---------------------------------------------------------------------------
# In-graph helpers.

def _to_bytes(values, size):
  """int64 vector -> string of `size` big-endian bytes per value."""
  values = tf.cast(tf.reshape(values, [-1, 1]), tf.int64)
  shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int64)
  octets = tf.bitwise.bitwise_and(tf.bitwise.right_shift(values, shifts), 255)
  return tf.strings.reduce_join(
      tf.gather(tf.constant(_BYTE_STRINGS), tf.reshape(octets, [-1])))


def _from_bytes(data, size):
  """String of whole big-endian `size`-byte fields -> int64 vector."""
  octets = tf.cast(tf.reshape(tf.io.decode_raw(data, tf.uint8), [-1, size]),
                   tf.int64)
  shifts = tf.constant([8 * (size - 1 - i) for i in range(size)], tf.int64)
  return tf.reduce_sum(tf.bitwise.left_shift(octets, shifts), axis=1)


def _substr(data, offset, size):
  """`size` bytes of `data` from `offset` (ints or int tensors, any mix)."""
  return tf.strings.substr(data, tf.cast(offset, tf.int64),
                           tf.cast(size, tf.int64))


def _field(data, offset, size):
  """One big-endian unsigned field at `offset` as an int64 scalar."""
  return _from_bytes(_substr(data, offset, size), size)[0]


def _hex(data):
  """Bytes -> lowercase hex string, in-graph."""
  octets = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
  return tf.strings.reduce_join(tf.gather(tf.constant(_HEX_STRINGS), octets))


def _fingerprint_string(data):
  """8 raw bytes: farmhash64 of the bytes of a 1-row tensor (a string, or
  numbers in the machine's byte order), as a tf.string scalar."""
  digest = tf.fingerprint(data, method=_CHECKSUM_METHOD)
  return tf.strings.reduce_join(
      tf.gather(tf.constant(_BYTE_STRINGS), tf.cast(digest[0], tf.int32)))


def _checksum(header, payload):
  """8 raw bytes: farmhash64 of header + payload."""
  return _fingerprint_string(
      tf.reshape(tf.strings.join([header, payload]), [1]))


def symbols_digest(symbols):
  """8 raw bytes identifying a list of integer symbol tensors (farmhash64
  of their int32 values, in order), as a tf.string scalar.

  A codec stores its encoder's digest among its strings and compares it
  with the digest of what its decoder got back from the range decoder:
  a decoder whose arithmetic differs from the encoder's enough to change
  a scale index decodes other symbols, and is stopped with a clear error
  instead of producing a wrong image.
  """
  flat = tf.concat([tf.reshape(tf.cast(s, tf.int32), [-1]) for s in symbols],
                   0)
  return _fingerprint_string(tf.reshape(flat, [1, -1]))


def _text(part):
  """A message part as a tf.string scalar."""
  if isinstance(part, str):
    return tf.constant(part)
  if part.dtype == tf.string:
    # Names come from the bitstream: never let invalid UTF-8 into a message.
    return tf.strings.unicode_transcode(part, "UTF-8", "UTF-8",
                                        errors="replace")
  return tf.strings.as_string(part)


def _python_text(part):
  if isinstance(part, str):
    return part
  value = part.numpy()
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  return str(value)


class _Validator:
  """Runs checks strictly in order, eagerly or in a graph.

  In a graph, stateless ops (`substr`, `decode_raw`, ...) may run before an
  assertion unless they depend on it. `gate` returns copies of tensors that
  depend on every check so far; later steps read only gated tensors, so
  nothing is sliced before the checks guarding it have passed. Eagerly, a
  failed check raises at once.
  """

  def __init__(self):
    self._checks = []

  def require(self, condition, *message):
    """Raises InvalidArgumentError(message) unless `condition` holds.

    `message` parts are python strs or scalar tensors, joined together.
    """
    if tf.executing_eagerly():
      if not bool(condition):
        raise tf.errors.InvalidArgumentError(
            None, None, "".join(_python_text(p) for p in message))
      return
    text = tf.strings.join([_text(p) for p in message])
    self._checks.append(tf.debugging.Assert(condition, [text], summarize=1))

  def gate(self, *tensors):
    """`tensors`, made to depend on every check so far."""
    if self._checks:
      with tf.control_dependencies(self._checks):
        tensors = tuple(tf.identity(t) for t in tensors)
    return tensors[0] if len(tensors) == 1 else tensors


# ---------------------------------------------------------------------------
# Public API.

def pack(strings, height, width, model_name, fingerprint):
  """Builds a bitstream from the codec's strings (see module docstring).

  Args:
    strings: python list of tf.string scalars (z string, then y slices).
      Empty strings are allowed.
    height, width: integer scalars (tensors or python ints), the image size.
    model_name: python str, the name of the model that made the strings.
    fingerprint: python str, 16 hex digits identifying the model's weights.

  Returns:
    A tf.string scalar.
  """
  name = _name_bytes(model_name)
  fp = _fingerprint_bytes(fingerprint)
  strings = [tf.convert_to_tensor(s, tf.string) for s in strings]
  if len(strings) > MAX_STRINGS:
    raise ValueError(f"at most {MAX_STRINGS} strings fit in a bitstream")
  for s in strings:
    if s.shape.rank not in (None, 0):
      raise ValueError(f"each string must be a scalar, got shape {s.shape}")
  height = tf.cast(height, tf.int64)
  width = tf.cast(width, tf.int64)
  if strings:
    lengths = tf.cast(tf.stack([tf.strings.length(s) for s in strings]),
                      tf.int64)
  else:
    lengths = tf.zeros([0], tf.int64)
  check = _Validator()
  check.require(tf.logical_and(height >= 1, height <= MAX_DIM),
                "cannot pack image height ", height)
  check.require(tf.logical_and(width >= 1, width <= MAX_DIM),
                "cannot pack image width ", width)
  height, width, lengths = check.gate(height, width, lengths)
  header = tf.strings.join([
      tf.constant(MAGIC + bytes([FORMAT_VERSION, len(name)]) + name + fp),
      _to_bytes(tf.stack([height, width]), _DIM_SIZE),
      tf.constant(len(strings).to_bytes(_COUNT_SIZE, "big")),
      _to_bytes(lengths, _LENGTH_SIZE),
  ])
  payload = tf.strings.join(strings) if strings else tf.constant(b"")
  return tf.strings.join([header, _checksum(header, payload), payload])


def unpack(bitstream, model_name, fingerprint, num_strings, max_pixels):
  """Validates a bitstream and splits it (see module docstring).

  Args:
    bitstream: tf.string scalar.
    model_name, fingerprint: python strs, the decoding model's identity; the
      bitstream must have been made by the same model.
    num_strings: python int, the number of strings that model writes.
    max_pixels: int (or int scalar tensor), largest height * width accepted,
      at most `MAX_MAX_PIXELS`.

  Returns:
    (height, width, strings): int32 scalars and a python list of
    `num_strings` tf.string scalars.

  Raises:
    tf.errors.InvalidArgumentError: the bitstream is not a valid DCAE
      bitstream for this model (eagerly, or when the graph runs).
  """
  expected_name = _name_bytes(model_name)
  expected_fp = _fingerprint_bytes(fingerprint)
  if not 0 <= num_strings <= MAX_STRINGS:
    raise ValueError(f"num_strings must be in [0, {MAX_STRINGS}]")
  if isinstance(max_pixels, int) and not 1 <= max_pixels <= MAX_MAX_PIXELS:
    raise ValueError(f"max_pixels must be in [1, {MAX_MAX_PIXELS}]")
  data = tf.convert_to_tensor(bitstream, tf.string)
  if data.shape.rank not in (None, 0):
    raise ValueError(f"bitstream must be a scalar, got shape {data.shape}")
  max_pixels = tf.cast(max_pixels, tf.int64)
  total = tf.cast(tf.strings.length(data), tf.int64)
  name_text = expected_name.decode("utf-8")
  fp_text = expected_fp.hex()

  check = _Validator()
  # substr(data, 0, n) never fails: it returns fewer bytes if data is short.
  check.require(
      tf.equal(_substr(data, 0, len(MAGIC)), MAGIC),
      "not a DCAE bitstream (", total, " bytes, no DCAE magic)")
  check.require(total >= _NAME_OFFSET,
                "truncated DCAE bitstream: ", total, " bytes")
  data = check.gate(data)
  version = _field(data, _VERSION_OFFSET, _VERSION_SIZE)
  check.require(tf.equal(version, FORMAT_VERSION),
                "DCAE bitstream format version ", version,
                f" not supported (this is {FORMAT_VERSION})")
  data = check.gate(data)
  name_length = _field(data, _NAME_LENGTH_OFFSET, _NAME_LENGTH_SIZE)
  count_end = _NAME_OFFSET + name_length + _AFTER_NAME_SIZE
  check.require(total >= count_end + CHECKSUM_SIZE,
                "truncated DCAE bitstream: header needs at least ",
                count_end + CHECKSUM_SIZE, " bytes, got ", total)
  data = check.gate(data)
  count = _field(data, count_end - _COUNT_SIZE, _COUNT_SIZE)
  lengths_end = count_end + _LENGTH_SIZE * count
  payload_start = lengths_end + CHECKSUM_SIZE
  check.require(total >= payload_start,
                "truncated DCAE bitstream: header with ", count,
                " strings needs ", payload_start, " bytes, got ", total)
  data = check.gate(data)
  lengths = _from_bytes(
      _substr(data, count_end, lengths_end - count_end),
      _LENGTH_SIZE)
  payload_size = tf.reduce_sum(lengths)
  available = total - payload_start
  check.require(payload_size <= available,
                "truncated DCAE bitstream: payload needs ", payload_size,
                " bytes, got ", available)
  check.require(payload_size >= available,
                "DCAE bitstream has ", available - payload_size,
                " bytes of trailing garbage")
  data = check.gate(data)
  stored = _substr(data, lengths_end, CHECKSUM_SIZE)
  payload = _substr(data, payload_start, payload_size)
  actual = _checksum(_substr(data, 0, lengths_end), payload)
  check.require(tf.equal(stored, actual),
                "DCAE bitstream corrupted: checksum mismatch")
  data = check.gate(data)
  name = _substr(data, _NAME_OFFSET, name_length)
  fp = _substr(data, _NAME_OFFSET + name_length, FINGERPRINT_SIZE)
  check.require(
      tf.logical_and(tf.equal(name, expected_name), tf.equal(fp, expected_fp)),
      "bitstream was made by model ", name, " (fingerprint ", _hex(fp),
      f"); this is model {name_text} (fingerprint {fp_text})")
  check.require(tf.equal(count, num_strings),
                "DCAE bitstream has ", count,
                f" strings; model {name_text} expects {num_strings}")
  data = check.gate(data)
  dims_offset = _NAME_OFFSET + name_length + FINGERPRINT_SIZE
  height = _field(data, dims_offset, _DIM_SIZE)
  width = _field(data, dims_offset + _DIM_SIZE, _DIM_SIZE)
  check.require(tf.logical_and(height >= 1, width >= 1),
                "invalid image size ", height, "x", width, " in DCAE bitstream")
  # height * width <= max_pixels  <=>  height <= max_pixels // width for
  # positive integers, and the division cannot overflow.
  check.require(height <= max_pixels // tf.maximum(width, 1),
                "image ", height, "x", width, " exceeds max_pixels ",
                max_pixels)
  # Everything read from here on depends on all checks (indexing `lengths`
  # before the count check would fail with an unclear message).
  data, lengths, height, width = check.gate(data, lengths, height, width)
  offsets = tf.cumsum(lengths, exclusive=True) + payload_start
  strings = [_substr(data, offsets[i], lengths[i])
             for i in range(num_strings)]
  # Cast after the checks: both are <= max_pixels <= MAX_MAX_PIXELS.
  return tf.cast(height, tf.int32), tf.cast(width, tf.int32), strings


# ---------------------------------------------------------------------------
# Pure python side, for tools.

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
  if len(data) < _NAME_OFFSET:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes)")
  version = data[_VERSION_OFFSET]
  if version != FORMAT_VERSION:
    raise ValueError(f"DCAE bitstream format version {version} not supported "
                     f"(this is {FORMAT_VERSION})")
  name_length = data[_NAME_LENGTH_OFFSET]
  count_end = _NAME_OFFSET + name_length + _AFTER_NAME_SIZE
  if len(data) < count_end + CHECKSUM_SIZE:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes)")
  pos = _NAME_OFFSET
  name = data[pos:pos + name_length].decode("utf-8", errors="replace")
  pos += name_length
  fingerprint = data[pos:pos + FINGERPRINT_SIZE].hex()
  pos += FINGERPRINT_SIZE
  height, width, count = struct.unpack_from(">IIH", data, pos)
  pos = count_end
  payload_start = count_end + _LENGTH_SIZE * count + CHECKSUM_SIZE
  if len(data) < payload_start:
    raise ValueError(f"truncated DCAE bitstream ({len(data)} bytes, header "
                     f"needs {payload_start})")
  lengths = list(struct.unpack_from(f">{count}I", data, pos))
  pos += _LENGTH_SIZE * count
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


# A codec's decoder got other symbols back than its encoder coded (see
# `symbols_digest`); TFC's range decoder reports some such cases itself, with
# this text.
LATENTS_MISMATCH = (
    "DCAE bitstream decoded to other latents than its encoder coded: this "
    "decoder computes different scales (another TensorFlow build or CPU "
    "whose arithmetic differs from the encoder's), or the payload was "
    "damaged behind a valid checksum")
_RANGE_DECODER_CHECK = "Sanity check failed"

_ASSERT_RE = re.compile(r"assertion failed: \[(.*?)\]\s*(?:\n|\[\[|$)",
                        re.DOTALL)
_NODE_RE = re.compile(r"\{\{[^}]*\}\}\s*")


def error_message(error):
  """The plain one-line message of a (graph or eager) TF error.

  Graph assertion failures read "Graph execution error: ... assertion
  failed: [text] [[{{node ...}}]]" with the text C-escaped; this returns
  just the text. TFC's range decoder's "Sanity check failed." becomes
  `LATENTS_MISMATCH`. Other errors: their first non-empty line without
  "{{function_node ...}}" prefixes.
  """
  text = getattr(error, "message", None) or str(error)
  if _RANGE_DECODER_CHECK in text:
    return LATENTS_MISMATCH + " (the range decoder's own check failed)"
  match = _ASSERT_RE.search(text)
  if match:
    escaped = match.group(1).encode("utf-8")
    try:
      text = codecs.escape_decode(escaped)[0].decode("utf-8", errors="replace")
    except ValueError:
      text = match.group(1)
    # tf.debugging.assert_* append "[Condition ...] [x = ] [...]" fields.
    text = text.split("] [")[0]
    return " ".join(text.split())
  lines = [_NODE_RE.sub("", line).strip() for line in text.splitlines()]
  lines = [l for l in lines if l and not l.startswith(
      ("Graph execution error", "Detected at node", "File ",
       # A loaded SavedModel's errors put this line before the message.
       "<stack traces unavailable>"))]
  text = lines[0] if lines else text.strip()
  text = re.sub(r"\s*\[Op:[^\]]*\]$", "", text)
  return text
