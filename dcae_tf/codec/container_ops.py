"""The DCAE container in graph ops: `pack` and `unpack` (format: `container`).

Everything here is made of stock TensorFlow ops (`tf.strings.*`,
`tf.io.decode_raw`, `tf.fingerprint`, `tf.debugging.Assert`), so both run
eagerly, inside a `tf.function`, and inside a SavedModel signature served by
TF Serving, without any custom op.

`unpack` validates, in this order and before it slices out anything or lets
the caller allocate an image: magic, version, that the header fits, the
checksum, the fingerprint, and the image size (>= 1 and at most `max_pixels`
pixels, checked without overflow). Every failure raises
`tf.errors.InvalidArgumentError`; the checksum is checked before the
semantic fields so that a damaged header reads as "corrupted", never as a
bogus model or size.

Messages avoid quote characters because TensorFlow C-escapes them inside
graph assertion messages; `errors.error_message` turns a graph-mode error back into
the plain one-line text for command-line tools.
"""
import tensorflow as tf

from dcae_tf.codec import container as c

# One single-byte string per byte value, and two hex digits per byte value:
# `tf.gather` + `tf.strings.reduce_join` turn integer bytes into a string.
_BYTE_STRINGS = [bytes([i]) for i in range(256)]
_HEX_STRINGS = [f"{i:02x}" for i in range(256)]


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


def fingerprint_string(data):
  """8 raw bytes: farmhash64 of the bytes of a 1-row tensor (a string, or
  numbers in the machine's byte order), as a tf.string scalar."""
  digest = tf.fingerprint(data, method=c.CHECKSUM_METHOD)
  return tf.strings.reduce_join(
      tf.gather(tf.constant(_BYTE_STRINGS), tf.cast(digest[0], tf.int32)))


def _checksum(header, payload):
  """8 raw bytes: farmhash64 of header + payload."""
  return fingerprint_string(
      tf.reshape(tf.strings.join([header, payload]), [1]))


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

def pack(payload, height, width, fingerprint):
  """Builds a bitstream around a payload (see module docstring).

  Args:
    payload: tf.string scalar (may be empty).
    height, width: integer scalars (tensors or python ints), the image size.
    fingerprint: python str, 16 hex digits identifying the model's weights.

  Returns:
    A tf.string scalar.
  """
  fp = c.fingerprint_bytes(fingerprint)
  payload = tf.convert_to_tensor(payload, tf.string)
  if payload.shape.rank not in (None, 0):
    raise ValueError(f"the payload must be a scalar, got shape {payload.shape}")
  height = tf.cast(height, tf.int64)
  width = tf.cast(width, tf.int64)
  check = _Validator()
  check.require(tf.logical_and(height >= 1, height <= c.MAX_DIM),
                "cannot pack image height ", height)
  check.require(tf.logical_and(width >= 1, width <= c.MAX_DIM),
                "cannot pack image width ", width)
  height, width = check.gate(height, width)
  header = tf.strings.join([
      tf.constant(c.MAGIC + bytes([c.FORMAT_VERSION]) + fp),
      _to_bytes(tf.stack([height, width]), c.DIM_SIZE),
  ])
  return tf.strings.join([header, _checksum(header, payload), payload])


def unpack(bitstream, fingerprint, max_pixels, model_name=None):
  """Validates a bitstream and returns its image size and payload.

  Args:
    bitstream: tf.string scalar.
    fingerprint: python str, the decoding model's fingerprint; the bitstream
      must have been made by the same model.
    max_pixels: int (or int scalar tensor), largest height * width accepted,
      at most `c.MAX_MAX_PIXELS`.
    model_name: python str naming the decoding model in the mismatch
      message (optional).

  Returns:
    (height, width, payload): int32 scalars and a tf.string scalar.

  Raises:
    tf.errors.InvalidArgumentError: the bitstream is not a valid DCAE
      bitstream for this model (eagerly, or when the graph runs).
  """
  expected_fp = c.fingerprint_bytes(fingerprint)
  if isinstance(max_pixels, int) and not 1 <= max_pixels <= c.MAX_MAX_PIXELS:
    raise ValueError(f"max_pixels must be in [1, {c.MAX_MAX_PIXELS}]")
  data = tf.convert_to_tensor(bitstream, tf.string)
  if data.shape.rank not in (None, 0):
    raise ValueError(f"bitstream must be a scalar, got shape {data.shape}")
  max_pixels = tf.cast(max_pixels, tf.int64)
  total = tf.cast(tf.strings.length(data), tf.int64)
  this = f"model {model_name} " if model_name else "model "

  check = _Validator()
  # substr(data, 0, n) never fails: it returns fewer bytes if data is short.
  check.require(
      tf.equal(_substr(data, 0, len(c.MAGIC)), c.MAGIC),
      "not a DCAE bitstream (", total, " bytes, no DCAE magic)")
  check.require(total > c.VERSION_OFFSET,
                "truncated DCAE bitstream: ", total, " bytes")
  data = check.gate(data)
  version = _field(data, c.VERSION_OFFSET, c.VERSION_SIZE)
  check.require(tf.equal(version, c.FORMAT_VERSION),
                "DCAE bitstream format version ", version,
                f" not supported (this is {c.FORMAT_VERSION})")
  check.require(total >= c.HEADER_SIZE,
                f"truncated DCAE bitstream: header needs {c.HEADER_SIZE}"
                " bytes, got ", total)
  data = check.gate(data)
  payload = _substr(data, c.HEADER_SIZE, total - c.HEADER_SIZE)
  stored = _substr(data, c.CHECKSUM_OFFSET, c.CHECKSUM_SIZE)
  actual = _checksum(_substr(data, 0, c.CHECKSUM_OFFSET), payload)
  check.require(tf.equal(stored, actual),
                "DCAE bitstream corrupted: checksum mismatch")
  data = check.gate(data)
  fp = _substr(data, c.FINGERPRINT_OFFSET, c.FINGERPRINT_SIZE)
  check.require(
      tf.equal(fp, expected_fp),
      "bitstream was made by the model with fingerprint ", _hex(fp),
      f"; this is {this}(fingerprint {expected_fp.hex()})")
  data = check.gate(data)
  height = _field(data, c.DIMS_OFFSET, c.DIM_SIZE)
  width = _field(data, c.DIMS_OFFSET + c.DIM_SIZE, c.DIM_SIZE)
  check.require(tf.logical_and(height >= 1, width >= 1),
                "invalid image size ", height, "x", width, " in DCAE bitstream")
  # height * width <= max_pixels  <=>  height <= max_pixels // width for
  # positive integers, and the division cannot overflow.
  check.require(height <= max_pixels // tf.maximum(width, 1),
                "image ", height, "x", width, " exceeds max_pixels ",
                max_pixels)
  payload, height, width = check.gate(payload, height, width)
  # Cast after the checks: both are <= max_pixels <= c.MAX_MAX_PIXELS.
  return tf.cast(height, tf.int32), tf.cast(width, tf.int32), payload
