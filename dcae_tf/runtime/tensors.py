"""TensorProto <-> numpy for the two kinds of tensors the codec exchanges.

The server must judge a request tensor by its declared dtype and shape
before it converts (allocates) anything, and must refuse a tensor whose
payload disagrees with its shape; tf.make_ndarray does neither. The client
builds the same protos as tf.make_tensor_proto would (uint8 in
tensor_content, a string scalar in string_val), so TF Serving's own
model server accepts them too.
"""
import numpy as np

from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2


class TensorError(ValueError):
  """A request or response tensor that does not fit its signature."""


def dtype_name(dtype_enum):
  """types_pb2 enum -> "DT_UINT8" etc., for messages."""
  try:
    return types_pb2.DataType.Name(dtype_enum)
  except ValueError:
    return f"dtype {dtype_enum}"


def _shape_proto(shape):
  return tensor_shape_pb2.TensorShapeProto(
      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape])


def image_proto(image):
  """uint8 numpy array -> DT_UINT8 TensorProto (bytes in tensor_content)."""
  image = np.ascontiguousarray(image)
  return tensor_pb2.TensorProto(
      dtype=types_pb2.DT_UINT8, tensor_shape=_shape_proto(image.shape),
      tensor_content=image.tobytes())


def string_proto(data):
  """bytes -> DT_STRING scalar TensorProto."""
  return tensor_pb2.TensorProto(
      dtype=types_pb2.DT_STRING, tensor_shape=_shape_proto(()),
      string_val=[bytes(data)])


# Other numeric signature outputs, e.g. the float32 scalar "estimated_bits"
# of the optional "reconstruct" signature: numpy dtype -> TensorProto dtype.
_NUMERIC_DTYPES = {
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.int32): types_pb2.DT_INT32,
    np.dtype(np.int64): types_pb2.DT_INT64,
}


def to_proto(value):
  """A signature output (numpy array or scalar, or bytes) -> TensorProto.

  A scalar tensor's `.numpy()` is a numpy scalar (np.float32), not an array.
  """
  if isinstance(value, bytes):
    return string_proto(value)
  if isinstance(value, np.ndarray) and value.dtype == np.uint8:
    return image_proto(value)
  if isinstance(value, np.ndarray) and value.dtype == object and not value.shape:
    return string_proto(value.item())
  if (isinstance(value, (np.ndarray, np.generic))
      and value.dtype in _NUMERIC_DTYPES):
    array = np.asarray(value)  # 0-d stays 0-d (ascontiguousarray: 1-D)
    return tensor_pb2.TensorProto(
        dtype=_NUMERIC_DTYPES[array.dtype],
        tensor_shape=_shape_proto(array.shape),
        tensor_content=array.tobytes())
  raise TensorError(f"cannot encode a {type(value).__name__} "
                    f"({getattr(value, 'dtype', '?')}) as a TensorProto")


def proto_shape(proto, name):
  """Declared shape of a TensorProto as a list of ints (no payload read)."""
  if proto.tensor_shape.unknown_rank:
    raise TensorError(f"input {name!r} has unknown rank")
  shape = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in shape):
    raise TensorError(f"input {name!r} has a negative dimension: {shape}")
  return shape


def check_against_spec(proto, spec, name):
  """Checks dtype and shape against a signature's TensorInfo; returns shape.

  Args:
    proto: the request's TensorProto.
    spec: the SignatureDef's TensorInfo (dims of -1 accept any size).
    name: the input name, for messages.
  """
  if proto.dtype != spec.dtype:
    raise TensorError(f"input {name!r} must be {dtype_name(spec.dtype)}, "
                      f"got {dtype_name(proto.dtype)}")
  shape = proto_shape(proto, name)
  expected = [d.size for d in spec.tensor_shape.dim]
  if not spec.tensor_shape.unknown_rank:
    pattern = "[" + ", ".join("?" if d < 0 else str(d) for d in expected) + "]"
    if len(shape) != len(expected):
      raise TensorError(f"input {name!r} must have rank {len(expected)} "
                        f"(shape {pattern}), got shape {shape}")
    for got, want in zip(shape, expected):
      if want >= 0 and got != want:
        raise TensorError(f"input {name!r} must have shape {pattern}, "
                          f"got {shape}")
  return shape


def to_numpy(proto, name):
  """A DT_UINT8 or DT_STRING TensorProto -> numpy array (payload checked).

  Call `check_against_spec` (and any size limit) first: this allocates.
  """
  shape = proto_shape(proto, name)
  count = int(np.prod(shape, dtype=np.int64))
  if proto.dtype == types_pb2.DT_UINT8:
    if proto.tensor_content:
      if len(proto.tensor_content) != count:
        raise TensorError(
            f"input {name!r}: tensor_content has {len(proto.tensor_content)} "
            f"bytes, shape {shape} needs {count}")
      values = np.frombuffer(proto.tensor_content, dtype=np.uint8)
    else:
      if len(proto.int_val) != count:
        raise TensorError(f"input {name!r}: {len(proto.int_val)} values, "
                          f"shape {shape} needs {count}")
      values = np.asarray(proto.int_val, dtype=np.int64)
      if values.size and (values.min() < 0 or values.max() > 255):
        raise TensorError(f"input {name!r}: values outside uint8 range")
      values = values.astype(np.uint8)
    return values.reshape(shape)
  if proto.dtype == types_pb2.DT_STRING:
    if len(proto.string_val) != count:
      raise TensorError(f"input {name!r}: {len(proto.string_val)} strings, "
                        f"shape {shape} needs {count}")
    values = np.empty(count, dtype=object)
    values[:] = list(proto.string_val)
    return values.reshape(shape)
  raise TensorError(f"input {name!r}: unsupported {dtype_name(proto.dtype)}")


def spec_dict(tensor_info_map):
  """{name: TensorInfo} -> {name: {"dtype": "DT_UINT8", "shape": [...]}}."""
  return {
      name: {"dtype": dtype_name(info.dtype),
             "shape": (None if info.tensor_shape.unknown_rank else
                       [d.size for d in info.tensor_shape.dim])}
      for name, info in tensor_info_map.items()}
