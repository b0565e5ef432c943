"""gRPC client for a served DCAE export (ours or TF Serving's model server).

    client = ServingClient("127.0.0.1", 8500, "NAME")
    data = client.compress(image)          # uint8 HxWx3 numpy -> bytes
    image = client.decompress(data)        # bytes -> uint8 HxWx3 numpy

`RemoteCodec` puts the same surface as `dcae_tf.runtime.exported.ExportedCodec`
(`.compress`, `.decompress`, `.metadata`) on a client, so the CLI can use a
server wherever it would load an export.
"""
import json

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from dcae_tf.codec import warmup
from dcae_tf.runtime import contract
from dcae_tf.runtime import tensors

# Compressing a large image with the paper model on a CPU takes a while.
DEFAULT_TIMEOUT_SECONDS = 120.0


class ServingError(ValueError):
  """A failed RPC: `.code` is the grpc.StatusCode, `.details` its message.

  A ValueError, as the local codecs' errors are (`ExportedCodec` raises
  ValueError for a refused bitstream): code written against "a codec"
  handles a server's refusal or absence like a local codec's failure.
  """

  def __init__(self, code, details, target):
    self.code = code
    self.details = details
    self.target = target
    super().__init__(f"{target}: {code.name}: {details}")


def parse_address(address):
  """"HOST:PORT" or "[V6HOST]:PORT" -> (host, port)."""
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit():
    raise ValueError(f"server address must be HOST:PORT, got {address!r}")
  return host.strip("[]"), int(port)


class ServingClient:
  """Stubs for PredictionService and ModelService on one channel.

  Args:
    host, port: the server.
    model_name: the served model's name.
    version: a version number, or None for whatever is newest.
    timeout: seconds per RPC.
    max_message_bytes: gRPC send/receive limit (large images need more).
  """

  def __init__(self, host, port, model_name, version=None,
               timeout=DEFAULT_TIMEOUT_SECONDS,
               max_message_bytes=contract.DEFAULT_MAX_MESSAGE_BYTES):
    self.host, self.port = host, int(port)
    self.model_name = model_name
    self.version = version
    self.timeout = timeout
    self.target = (f"[{host}]:{self.port}" if ":" in host
                   else f"{host}:{self.port}")
    self._channel = grpc.insecure_channel(self.target, options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes)])
    self._predict = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def close(self):
    self._channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()

  def _model_spec(self, signature_name=""):
    spec = model_pb2.ModelSpec(name=self.model_name,
                               signature_name=signature_name)
    if self.version is not None:
      spec.version.value = int(self.version)
    return spec

  def _call(self, rpc, request):
    try:
      return rpc(request, timeout=self.timeout)
    except grpc.RpcError as e:
      raise ServingError(e.code(), e.details(), self.target) from None

  def predict(self, signature_name, inputs):
    """Runs a signature: {name: TensorProto} -> {name: TensorProto}."""
    request = predict_pb2.PredictRequest(
        model_spec=self._model_spec(signature_name))
    for name, proto in inputs.items():
      request.inputs[name].CopyFrom(proto)
    return self._call(self._predict.Predict, request).outputs

  def compress(self, image):
    """uint8 HxWx3 numpy array -> bitstream bytes."""
    contract.check_image(image)
    outputs = self.predict(warmup.COMPRESS,
                           {contract.IMAGE: tensors.image_proto(image)})
    return _output(outputs, contract.BITSTREAM_BYTES).item()

  def decompress(self, bitstream):
    """Bitstream bytes -> uint8 HxWx3 numpy array."""
    if not isinstance(bitstream, (bytes, bytearray)):
      raise ValueError(
          f"bitstream must be bytes, got {type(bitstream).__name__}")
    outputs = self.predict(
        warmup.DECOMPRESS,
        {contract.BITSTREAM: tensors.string_proto(bitstream)})
    # Copy: an array over the response's bytes would be read-only.
    return _output(outputs, contract.IMAGE).copy()

  def codec_metadata(self):
    """The export's metadata dict (json of codec.metadata)."""
    outputs = self.predict(contract.METADATA, {})
    return json.loads(_output(outputs, contract.JSON).item())

  def status(self):
    """[{"version", "state", "error_code", "error_message"}] per version."""
    request = get_model_status_pb2.GetModelStatusRequest(
        model_spec=self._model_spec())
    response = self._call(self._models.GetModelStatus, request)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [{"version": s.version, "state": state_name(s.state),
             "error_code": s.status.error_code,
             "error_message": s.status.error_message}
            for s in response.model_version_status]

  def metadata(self):
    """Served version, signatures (dtype/shape per tensor) and codec metadata.

    Returns:
      {"model": name, "version": int, "signatures": {name: {"inputs": {...},
      "outputs": {...}}}, "codec": metadata dict}.
    """
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=self._model_spec(),
        metadata_field=[contract.SIGNATURE_DEF_FIELD])
    response = self._call(self._predict.GetModelMetadata, request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    field = response.metadata[contract.SIGNATURE_DEF_FIELD]
    if not field.Unpack(signature_map):
      raise ServingError(grpc.StatusCode.INTERNAL,
                         "metadata response holds no SignatureDefMap",
                         self.target)
    return {
        "model": response.model_spec.name,
        "version": response.model_spec.version.value,
        "signatures": {
            name: {"inputs": tensors.spec_dict(sig.inputs),
                   "outputs": tensors.spec_dict(sig.outputs)}
            for name, sig in sorted(signature_map.signature_def.items())},
        "codec": self.codec_metadata(),
    }


def _output(outputs, name):
  if name not in outputs:
    # E.g. TF Serving serving an export of an older contract.
    raise tensors.TensorError(
        f"response has no output {name!r} (got {sorted(outputs)}): the "
        f"served export is not of this code's contract; re-export it "
        f"(docs/export.md)")
  return tensors.to_numpy(outputs[name], name)


class RemoteCodec:
  """The ExportedCodec surface over gRPC, for code that takes "a codec".

  `.metadata` is fetched once, on first use (the server may move to a newer
  version later; pin `version` on the client to avoid mixing versions).
  """

  def __init__(self, client):
    self.client = client
    self.path = (f"grpc://{client.target}/{client.model_name}"
                 + (f"/{client.version}" if client.version is not None
                    else ""))
    self._metadata = None

  @property
  def version(self):
    return self.client.version

  @property
  def metadata(self):
    if self._metadata is None:
      self._metadata = self.client.codec_metadata()
    return self._metadata

  def compress(self, image):
    return self.client.compress(image)

  def decompress(self, bitstream):
    return self.client.decompress(bitstream)

  def close(self):
    self.client.close()

  def __repr__(self):
    return f"RemoteCodec({self.path!r})"


def remote_codec(address, model_name, version=None, **client_kwargs):
  """"HOST:PORT" + model name -> RemoteCodec (for a CLI --server flag)."""
  host, port = parse_address(address)
  return RemoteCodec(ServingClient(host, port, model_name, version=version,
                                   **client_kwargs))
