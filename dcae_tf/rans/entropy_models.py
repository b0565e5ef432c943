"""TFC entropy models: their tables, and which value and table TFC codes.

The coder codes exactly the integers that TFC's `compress` would, with the
tables of the same model: these adapters read a model (never change it)
and compute what its `compress` / `decompress` compute around the range
coder.
"""
import tensorflow as tf

from dcae_tf.rans.tables import TfcTables


def batched_tables(model):
  """Tables of a `tfc.ContinuousBatchedEntropyModel` (one per channel)."""
  return TfcTables(model)


def batched_symbols(model, bottleneck):
  """(values, table_index) int32 vectors that TFC's `compress` codes.

  As `ContinuousBatchedEntropyModel.compress`: round(x - offset), elements
  in row-major order; with a prior of shape (C,) element j uses table
  j mod C (the channel). Values are absolute (TFC subtracts cdf_offset).
  """
  x = tf.convert_to_tensor(bottleneck, dtype=model.bottleneck_dtype)
  if model.quantization_offset is not None:
    x -= model.quantization_offset
  values = tf.reshape(tf.cast(tf.round(x), tf.int32), [-1])
  num_tables = tf.reduce_prod(model.prior_shape_tensor)
  index = tf.range(tf.size(values)) % num_tables
  return values, index


def batched_index(model, shape):
  """The table indexes of a bottleneck of `shape` (see `batched_symbols`)."""
  num_tables = tf.reduce_prod(model.prior_shape_tensor)
  return tf.range(tf.reduce_prod(shape)) % num_tables


def batched_dequantize(model, values, shape):
  """What TFC's `decompress` returns for decoded `values` of `shape`."""
  out = tf.cast(tf.reshape(values, shape), model.bottleneck_dtype)
  if model.quantization_offset is not None:
    out += model.quantization_offset
  return out


def indexed_tables(model):
  """Tables of a `tfc.LocationScaleIndexedEntropyModel` (one per scale)."""
  return TfcTables(model)


def indexed_index(model, scale_indexes):
  """Table index per element, as TFC's indexed `compress` derives it.

  TFC bounds the indexes to [0, num_scales - 1] and casts them to int32.
  """
  num_scales, = model.index_ranges
  index = tf.clip_by_value(scale_indexes, 0, num_scales - 1)
  return tf.reshape(tf.cast(index, tf.int32), [-1])


def indexed_symbols(model, bottleneck, scale_indexes, loc=None):
  """(values, table_index): round(y - loc) and the scale index, flattened."""
  x = tf.convert_to_tensor(bottleneck, dtype=model.bottleneck_dtype)
  if loc is not None:
    x -= loc
  values = tf.reshape(tf.cast(tf.round(x), tf.int32), [-1])
  return values, indexed_index(model, scale_indexes)


def indexed_dequantize(model, values, loc=None, shape=None):
  """What TFC's `decompress` returns for decoded `values` (float + loc)."""
  if shape is None:
    shape = tf.shape(loc)
  out = tf.cast(tf.reshape(values, shape), model.bottleneck_dtype)
  if loc is not None:
    out += loc
  return out
