"""TF Serving's REST `:predict` JSON, written and read as its server does.

TF Serving is not installed here, so the tests stand in for its REST API
with this transcription of `tensorflow_serving/util/json_tensor.cc`:

- a response to a columnar request (`"inputs"`) is `{"outputs": V}`, V the
  signature's one output without its name, or `{"outputs": {key: V, ...}}`
  for several (`MakeColumnarFormatJsonFromTensors`);
- a DT_STRING output whose key ends in "_bytes" is written as
  `{"b64": base64}` (`IsNamedTensorBytes`); any other string goes through
  RapidJSON's `Writer::String` unvalidated: `"`, `\\` and bytes below 0x20
  are escaped, every other byte is copied as it is, so binary data gives a
  body that is not UTF-8, i.e. not JSON;
- a request's string input may be `{"b64": base64}` whatever its name
  (`FillTensorProto`), and a columnar `"inputs"` that is not an object of
  input names is the value of the signature's one input.

Only what our signatures exchange is covered: uint8 / int / float / string
tensors of any rank. Numbers are formatted by Python, not by absl (the
values are the same).
"""
import base64
import json

import numpy as np
from tensorflow.core.framework import types_pb2

BASE64_KEY = "b64"
# kBytesTensorNameSuffix.
BYTES_SUFFIX = "_bytes"
OUTPUTS_KEY = "outputs"
INPUTS_KEY = "inputs"
# RapidJSON's short escapes; other bytes below 0x20 become \u00XX.
_SHORT_ESCAPES = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f",
                  0x0D: b"\\r", 0x22: b'\\"', 0x5C: b"\\\\"}
_NUMPY_DTYPES = {types_pb2.DT_UINT8: np.uint8, types_pb2.DT_INT32: np.int32,
                 types_pb2.DT_INT64: np.int64, types_pb2.DT_FLOAT: np.float32,
                 types_pb2.DT_DOUBLE: np.float64,
                 types_pb2.DT_STRING: object}


def raw_string(data):
  """`data` (bytes) as RapidJSON writes a string without validating it."""
  out = bytearray(b'"')
  for byte in data:
    if byte in _SHORT_ESCAPES:
      out += _SHORT_ESCAPES[byte]
    elif byte < 0x20:
      out += b"\\u%04X" % byte
    else:
      out.append(byte)
  out += b'"'
  return bytes(out)


def _scalar(value, dtype, as_bytes):
  if dtype == types_pb2.DT_STRING:
    if as_bytes:
      b64 = base64.b64encode(bytes(value)).decode("ascii")
      return b'{"' + BASE64_KEY.encode() + b'": "' + b64.encode() + b'"}'
    return raw_string(bytes(value))
  if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
    return repr(float(value)).encode()
  return str(int(value)).encode()


def _tensor(array, dtype, as_bytes):
  """A tensor as nested JSON arrays (a scalar as its bare value)."""
  if array.ndim == 0:
    return _scalar(array.item(), dtype, as_bytes)
  return b"[" + b", ".join(_tensor(row, dtype, as_bytes)
                           for row in array) + b"]"


def predict_response(signature_def, outputs):
  """The body (bytes) TF Serving's REST API returns for a columnar
  `:predict` request of the signature `signature_def` (a SignatureDef
  proto: the output keys and dtypes decide the encoding) whose results are
  `outputs` ({output key: numpy value or tensor})."""
  values = {}
  for key in sorted(outputs):
    dtype = signature_def.outputs[key].dtype
    as_bytes = dtype == types_pb2.DT_STRING and key.endswith(BYTES_SUFFIX)
    array = np.asarray(outputs[key].numpy() if hasattr(outputs[key], "numpy")
                       else outputs[key])
    values[key] = _tensor(array, dtype, as_bytes)
  if len(values) == 1:
    body = next(iter(values.values()))
  else:
    body = b"{" + b", ".join(raw_string(k.encode()) + b": " + v
                             for k, v in values.items()) + b"}"
  return b'{"' + OUTPUTS_KEY.encode() + b'": ' + body + b"}"


def _is_base64_object(value):
  return (isinstance(value, dict) and list(value) == [BASE64_KEY]
          and isinstance(value[BASE64_KEY], str))


def _input_value(value, dtype):
  """A JSON value of an input -> numpy, as FillTensorProto converts it."""
  if dtype == types_pb2.DT_STRING:

    def string(v):
      if _is_base64_object(v):
        return base64.b64decode(v[BASE64_KEY], validate=True)
      if isinstance(v, str):
        return v.encode("utf-8")
      if isinstance(v, list):
        return [string(x) for x in v]
      raise ValueError(f"not a string or {{{BASE64_KEY!r}: ...}}: {v!r}")

    return np.array(string(value), dtype=object)
  return np.array(value, dtype=_NUMPY_DTYPES[dtype])


def predict_request_inputs(body, signature_def):
  """{input name: numpy value} of a columnar REST `:predict` request body
  (str or bytes), as TF Serving reads it for `signature_def`."""
  inputs = json.loads(body)[INPUTS_KEY]
  names = sorted(signature_def.inputs)
  if not isinstance(inputs, dict) or _is_base64_object(inputs):
    if len(names) != 1:
      raise ValueError(f"an unnamed input, but the signature takes {names}")
    inputs = {names[0]: inputs}
  if sorted(inputs) != names:
    raise ValueError(f"inputs {sorted(inputs)}, the signature takes {names}")
  return {name: _input_value(value, signature_def.inputs[name].dtype)
          for name, value in inputs.items()}
