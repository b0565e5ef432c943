"""TF Serving's warm-up file of an export: written by the writer, read by
`ExportedCodec` (see `layout.WARMUP_PATH`).

Only these two functions need TF Serving's protos.
"""
import os

import tensorflow as tf
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from dcae_tf.codec.warmup import COMPRESS, DECOMPRESS, warmup_image
from dcae_tf.runtime import tensors
from dcae_tf.runtime.contract import BITSTREAM, IMAGE
from dcae_tf.runtime.layout import WARMUP_PATH


def write(version_dir, compress):
  """Writes an export's TF Serving warm-up file (see the module doc).

  Args:
    version_dir: the export's version directory.
    compress: uint8 HxWx3 numpy array -> bitstream bytes, the export's codec.
  """
  image = warmup_image()
  requests = ((COMPRESS, IMAGE, tensors.image_proto(image)),
              (DECOMPRESS, BITSTREAM, tensors.string_proto(compress(image))))
  path = os.path.join(version_dir, WARMUP_PATH)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for signature, name, proto in requests:
      request = predict_pb2.PredictRequest(
          model_spec=model_pb2.ModelSpec(signature_name=signature))
      request.inputs[name].CopyFrom(proto)
      writer.write(prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(
              request=request)).SerializeToString())


def read_warmup(version_dir):
  """[(signature name, {input name: numpy value})] of an export's warm-up
  file, in order; [] if it has none (exports made before 2026-11-26)."""
  path = os.path.join(version_dir, WARMUP_PATH)
  if not os.path.isfile(path):
    return []
  out = []
  for record in tf.data.TFRecordDataset(path):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    request = log.predict_log.request
    out.append((request.model_spec.signature_name,
                {k: tf.make_ndarray(v) for k, v in request.inputs.items()}))
  return out
