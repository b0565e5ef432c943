"""TF Serving's PredictionService and ModelService on a loaded export.

Predict, GetModelMetadata and GetModelStatus -- the parts of TF Serving
that the codec needs -- on top of `dcae_tf.runtime.exported.ExportedCodec`
(TensorFlow only, like the export's graphs). Every refusal is a gRPC status
whose message names what was wrong and what is accepted: a client sees the
message, not a server log.
"""
import grpc
import tensorflow as tf
from absl import logging
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dcae_tf.codec.errors import error_message
from dcae_tf.runtime import contract
from dcae_tf.runtime import tensors


class RequestError(Exception):
  """A request the server refuses; carries the gRPC status code."""

  def __init__(self, code, message):
    super().__init__(message)
    self.code = code
    self.message = message


def _invalid(message):
  return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(message):
  return RequestError(grpc.StatusCode.NOT_FOUND, message)


def _grpc_method(method):
  """Turns RequestError / TF argument errors into gRPC statuses."""

  def wrapper(self, request, context):
    try:
      return method(self, request, context)
    except RequestError as e:
      context.abort(e.code, e.message)
    except tensors.TensorError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    except tf.errors.InvalidArgumentError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                    error_message(e))
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("%s failed", method.__name__)
      context.abort(grpc.StatusCode.INTERNAL,
                    f"{type(e).__name__}: {error_message(e)}")

  wrapper.__name__ = method.__name__
  wrapper.__doc__ = method.__doc__
  return wrapper


class CodecService(prediction_service_pb2_grpc.PredictionServiceServicer,
                   model_service_pb2_grpc.ModelServiceServicer):
  """PredictionService.Predict/GetModelMetadata + ModelService.GetModelStatus.

  Refusals name what was wrong and what is accepted: a client sees the
  message, not a server log.
  """

  def __init__(self, model_name, watcher, max_pixels):
    self.model_name = model_name
    self.watcher = watcher
    self.max_pixels = max_pixels

  def _servable(self, model_spec):
    if model_spec.name != self.model_name:
      raise _not_found(f"model {model_spec.name!r} is not served "
                       f"(this server serves {self.model_name!r})")
    if model_spec.version_label:
      raise _invalid("version labels are not supported; "
                     "give a version number or none for the newest")
    servable = self.watcher.current
    if servable is None:
      raise RequestError(grpc.StatusCode.UNAVAILABLE,
                         f"no version of model {self.model_name!r} "
                         f"is loaded yet")
    if (model_spec.HasField("version")
        and model_spec.version.value != servable.version):
      raise _not_found(f"version {model_spec.version.value} of model "
                       f"{self.model_name!r} is not served (serving version "
                       f"{servable.version})")
    return servable

  def _model_spec(self, servable, signature_name=""):
    spec = model_pb2.ModelSpec(name=self.model_name,
                               signature_name=signature_name)
    spec.version.value = servable.version
    return spec

  def _inputs(self, request, signature_name, signature_def):
    """Validates request.inputs against the signature, then converts."""
    expected = set(signature_def.inputs)
    given = set(request.inputs)
    missing, extra = sorted(expected - given), sorted(given - expected)
    accepted = f"signature {signature_name!r} takes {sorted(expected) or 'no inputs'}"
    if missing:
      raise _invalid(f"missing input {missing[0]!r}: {accepted}")
    if extra:
      raise _invalid(f"unexpected input {extra[0]!r}: {accepted}")
    for name in sorted(expected):
      shape = tensors.check_against_spec(request.inputs[name],
                                         signature_def.inputs[name], name)
      if name == contract.IMAGE:
        pixels = shape[0] * shape[1]
        if pixels > self.max_pixels:
          raise _invalid(f"image {shape[0]}x{shape[1]} ({pixels} pixels) "
                         f"exceeds the server's limit of {self.max_pixels} "
                         f"pixels")
        if pixels == 0:
          raise _invalid(f"image is empty: shape {shape}")
    return {name: tf.constant(tensors.to_numpy(request.inputs[name], name))
            for name in sorted(expected)}

  @_grpc_method
  def Predict(self, request, context):  # pylint: disable=invalid-name
    servable = self._servable(request.model_spec)
    signature_defs = servable.signature_defs
    name = request.model_spec.signature_name
    if name not in signature_defs:
      raise _not_found(f"signature {name!r} not found; "
                       f"choose one of {sorted(signature_defs)}")
    signature_def = signature_defs[name]
    outputs = set(request.output_filter or signature_def.outputs)
    unknown = sorted(outputs - set(signature_def.outputs))
    if unknown:
      raise _invalid(f"output_filter names unknown output {unknown[0]!r}: "
                     f"signature {name!r} has {sorted(signature_def.outputs)}")
    inputs = self._inputs(request, name, signature_def)
    results = servable.codec.signatures[name](**inputs)
    response = predict_pb2.PredictResponse(
        model_spec=self._model_spec(servable, name))
    for key in sorted(outputs):
      response.outputs[key].CopyFrom(tensors.to_proto(results[key].numpy()))
    return response

  @_grpc_method
  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    servable = self._servable(request.model_spec)
    fields = list(request.metadata_field)
    if not fields:
      raise _invalid(f"metadata_field is empty; the supported field is "
                     f"{contract.SIGNATURE_DEF_FIELD!r}")
    for field in fields:
      if field != contract.SIGNATURE_DEF_FIELD:
        raise _invalid(f"metadata field {field!r} is not supported; the "
                       f"supported field is {contract.SIGNATURE_DEF_FIELD!r}")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
      signature_map.signature_def[key].CopyFrom(value)
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=self._model_spec(servable))
    response.metadata[contract.SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response

  @_grpc_method
  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    servable = self._servable(request.model_spec)
    return get_model_status_pb2.GetModelStatusResponse(model_version_status=[
        get_model_status_pb2.ModelVersionStatus(
            version=servable.version,
            state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)])
