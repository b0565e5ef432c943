"""SavedModel export of a codec, in TF Serving's versioned directory layout.

An export is `MODEL_BASE_PATH/<integer version>/` holding a SavedModel with
three signatures (the serving contract of the project):

  "compress":   {"image": uint8 [H, W, 3]}  -> {"bitstream": string []}
  "decompress": {"bitstream": string []}    -> {"image": uint8 [H, W, 3]}
  "metadata":   {}                          -> {"json": string []}
  "reconstruct" (optional): {"image": uint8 [H, W, 3]} -> {"image": uint8
                [H, W, 3], "estimated_bits": float32 []}: the encoder-side
                reconstruction that decompress reproduces exactly, and the
                model's estimate of the payload bits

plus `metadata.json` (the same JSON) next to `saved_model.pb`, so tools can
identify a version without loading TensorFlow, and TF Serving's warm-up
file `assets.extra/tf_serving_warmup_requests`: a compress request for a
small image and a decompress request for its bitstream, which TF Serving
runs before it serves a version (so the graphs are optimised before the
first real request) and `ExportedCodec` runs before its own first call of
each (so the optimisation's freed memory can be returned first).

A version appears atomically: it is written into a `.tmp*` sibling
directory and renamed into place, so a model server polling the base path
never sees a half-written version.

Loading (`ExportedCodec`, through `dcae_tf.saved_signatures`) needs only
TensorFlow and tensorflow_compression (whose import
registers the range-coding ops the real codec's graph uses), never the
dcae_tf model code: an export is self-contained.
"""
import collections.abc
import json
import os
import shutil
import tempfile
import threading

import numpy as np
import tensorflow as tf
# Registers TFC's range-coding ops, needed to load the real codec's graph.
import tensorflow_compression  # pylint: disable=unused-import  # noqa: F401

from dcae_tf import heap
from dcae_tf import saved_signatures
from dcae_tf.bitstream import error_message
from dcae_tf.serving import tensors

COMPRESS = "compress"
DECOMPRESS = "decompress"
METADATA = "metadata"
# Optional: the encoder-side reconstruction of an image (what
# `decompress(compress(image))` must equal exactly) and the model's estimate
# of its payload bits (what the bitstream should cost, header aside).
RECONSTRUCT = "reconstruct"
ESTIMATED_BITS = "estimated_bits"
IMAGE = "image"
BITSTREAM = "bitstream"
JSON = "json"

# signature name -> (input names, output names). What makes an export ours.
SIGNATURES = {
    COMPRESS: ((IMAGE,), (BITSTREAM,)),
    DECOMPRESS: ((BITSTREAM,), (IMAGE,)),
    METADATA: ((), (JSON,)),
}
IMAGE_CHANNELS = 3
TMP_PREFIX = ".tmp"
# TF Serving's warm-up requests (PredictionLog records in a TFRecord file).
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Side of the warm-up image: big enough to run every layer (the paper
# preset pads to multiples of 64), small enough to cost little.
WARMUP_IMAGE_SIZE = 64
# Signatures warmed up by default, in this order.
WARMUP_SIGNATURES = (COMPRESS, DECOMPRESS)
SAVED_MODEL_FILENAME = saved_signatures.SAVED_MODEL_FILENAME
METADATA_FILENAME = "metadata.json"


class ExportError(ValueError):
  """A path that is not a (complete) DCAE export, or an export refused."""


def check_image(image):
  """Raises ValueError unless `image` is a uint8 HxWx3 numpy array."""
  if not isinstance(image, np.ndarray):
    raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
  if image.dtype != np.uint8:
    raise ValueError(f"image must be uint8, got {image.dtype}")
  if (image.ndim != 3 or image.shape[-1] != IMAGE_CHANNELS
      or 0 in image.shape):
    raise ValueError(
        f"image must have shape [H, W, {IMAGE_CHANNELS}] with H, W >= 1, "
        f"got {list(image.shape)}")


class _ServingModule(tf.Module):
  """The exported object: the three signatures and the codec's variables.

  The signatures return dicts because a bare tensor output would be named
  "output_0". Only the codec's variables are tracked, not the codec: a
  tracked codec would make the SavedModel trace, store (and on load,
  restore) every tf.function and Keras layer call it holds, which for DCAE
  takes minutes and is never used by the signatures.
  """

  def __init__(self, codec, metadata_json):
    super().__init__(name="dcae_export")
    self.codec_variables = list(codec.variables)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, IMAGE_CHANNELS], tf.uint8, name=IMAGE)])
    def compress(image):
      return {BITSTREAM: codec.compress(image)}

    @tf.function(input_signature=[
        tf.TensorSpec([], tf.string, name=BITSTREAM)])
    def decompress(bitstream):
      return {IMAGE: codec.decompress(bitstream)}

    @tf.function(input_signature=[])
    def metadata():
      return {JSON: tf.constant(metadata_json)}

    self.compress = compress
    self.decompress = decompress
    self.metadata = metadata
    self.reconstruct = None
    if all(callable(getattr(codec, f, None))
           for f in ("compress_with_reconstruction", "estimated_bits")):

      @tf.function(input_signature=[
          tf.TensorSpec([None, None, IMAGE_CHANNELS], tf.uint8, name=IMAGE)])
      def reconstruct(image):
        return {IMAGE: codec.compress_with_reconstruction(image)[2],
                ESTIMATED_BITS: codec.estimated_bits(image)}

      self.reconstruct = reconstruct

  def signature_functions(self):
    out = {COMPRESS: self.compress, DECOMPRESS: self.decompress,
           METADATA: self.metadata}
    if self.reconstruct is not None:
      out[RECONSTRUCT] = self.reconstruct
    return out


def _check_module(module):
  for name in (COMPRESS, DECOMPRESS):
    if not callable(getattr(module, name, None)):
      raise ExportError(f"cannot export {type(module).__name__}: it has no "
                        f"callable `{name}`")
  metadata = getattr(module, "metadata", None)
  if not isinstance(metadata, dict):
    raise ExportError(f"cannot export {type(module).__name__}: `metadata` "
                      f"must be a dict, got {type(metadata).__name__}")
  try:
    return json.dumps(_plain(metadata), sort_keys=True)
  except (TypeError, ValueError) as e:
    raise ExportError(f"codec metadata is not JSON-serializable: {e}") from None


def _plain(value):
  """Copies tf.Module's trackable dict/list wrappers into plain containers."""
  if isinstance(value, collections.abc.Mapping):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def _is_version_name(name):
  return name.isdigit() and not name.startswith(TMP_PREFIX)


def list_versions(model_base_path):
  """Sorted integer versions under `model_base_path` (ignores .tmp* dirs).

  Lists every integer-named directory, complete or not (so a new version
  never reuses the number of a broken one); see `complete_versions`.
  """
  if not os.path.isdir(model_base_path):
    return []
  return sorted(int(name) for name in os.listdir(model_base_path)
                if _is_version_name(name)
                and os.path.isdir(os.path.join(model_base_path, name)))


def is_complete(version_dir):
  """Whether a version directory has its SavedModel graph written."""
  return os.path.isfile(os.path.join(version_dir, SAVED_MODEL_FILENAME))


def complete_versions(model_base_path):
  """Sorted versions whose directory holds a saved_model.pb."""
  return [v for v in list_versions(model_base_path)
          if is_complete(os.path.join(model_base_path, str(v)))]


def save_versioned(module, model_base_path, version=None):
  """Exports `module` as a new version under `model_base_path`.

  Args:
    module: a tf.Module with tf.functions `compress` (uint8 [H, W, 3] ->
      string scalar) and `decompress` (string scalar -> uint8 [H, W, 3]) and a
      JSON-serializable dict `metadata`.
    model_base_path: the model's directory (saved_models/NAME); created if
      missing.
    version: integer version; by default one more than the largest existing.

  Returns:
    The path of the new version directory.

  Raises:
    ExportError: the version exists already, or the module cannot be
      exported. Nothing is left behind under `model_base_path` on failure.
  """
  metadata_json = _check_module(module)
  os.makedirs(model_base_path, exist_ok=True)
  if version is None:
    version = max(list_versions(model_base_path), default=0) + 1
  if isinstance(version, bool) or not isinstance(version, int) or version < 0:
    raise ExportError(f"version must be a non-negative int, got {version!r}")
  version_dir = os.path.join(model_base_path, str(version))
  if os.path.exists(version_dir):
    raise ExportError(f"version {version} already exists: {version_dir}")

  tmp_dir = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}-{version}-",
                             dir=model_base_path)
  try:
    wrapper = _ServingModule(module, metadata_json)
    tf.saved_model.save(wrapper, tmp_dir,
                        signatures=wrapper.signature_functions())
    _write_metadata(tmp_dir, metadata_json)
    write_warmup_file(
        tmp_dir, lambda image: module.compress(tf.constant(image)).numpy())
    if os.path.exists(version_dir):  # Another writer won the race.
      raise ExportError(f"version {version} already exists: {version_dir}")
    os.rename(tmp_dir, version_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return version_dir


def warmup_image():
  """The warm-up image: a smooth uint8 gradient (a realistic bitstream)."""
  ramp = np.linspace(0, 255, WARMUP_IMAGE_SIZE, dtype=np.float32)
  image = np.stack(np.broadcast_arrays(
      ramp[:, None], ramp[None, :], 255 - ramp[:, None]), axis=-1)
  return image.astype(np.uint8)


def write_warmup_file(version_dir, compress=None):
  """Writes an export's TF Serving warm-up file (see the module doc).

  Args:
    version_dir: the export's version directory.
    compress: uint8 HxWx3 numpy array -> bitstream bytes, the export's codec
      (by default the export itself, loaded: how exports made before the
      warm-up file existed get one).
  """
  if compress is None:
    compress = ExportedCodec(version_dir).compress
  # Imported here: only writing the file needs TF Serving's protos.
  from tensorflow_serving.apis import model_pb2  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=import-outside-toplevel
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
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=import-outside-toplevel
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


def _write_metadata(directory, metadata_json):
  with open(os.path.join(directory, METADATA_FILENAME), "w") as f:
    f.write(metadata_json + "\n")


def resolve_version_dir(path):
  """Maps a model base path (-> newest complete version) or a version dir.

  Returns:
    (version_dir, version) with version None if the directory name is not an
    integer.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"no such export: {path}")
  if not os.path.isdir(path):
    raise ExportError(f"not a DCAE export (not a directory): {path}")
  if is_complete(path):
    name = os.path.basename(os.path.normpath(path))
    return path, int(name) if _is_version_name(name) else None
  versions = complete_versions(path)
  if not versions:
    raise ExportError(
        f"no versions under {path}: expected integer subdirectories holding "
        f"{SAVED_MODEL_FILENAME} (write them with dcae_tf.export.save_versioned)")
  return os.path.join(path, str(versions[-1])), versions[-1]


def check_signature_defs(signature_defs, where):
  """Raises ExportError unless the signatures are the export contract's."""
  for name, (inputs, outputs) in SIGNATURES.items():
    if name not in signature_defs:
      raise ExportError(f"not a DCAE export (no {name!r} signature): {where}")
    sig = signature_defs[name]
    if (sorted(sig.inputs) != sorted(inputs)
        or sorted(sig.outputs) != sorted(outputs)):
      raise ExportError(
          f"not a DCAE export (signature {name!r} maps {sorted(sig.inputs)} -> "
          f"{sorted(sig.outputs)}, expected {list(inputs)} -> "
          f"{list(outputs)}): {where}")


class ExportedCodec:
  """A loaded export: the codec interface on top of the SavedModel signatures.

  Same surface as the in-process codec and the gRPC client's RemoteCodec:
  `.compress(uint8 HxWx3 array) -> bytes`, `.decompress(bytes) -> array`,
  `.metadata` dict. Thread-safe (signature functions may run concurrently).
  """

  def __init__(self, path):
    self.path, self.version = resolve_version_dir(path)
    # Cheap check first: loading a large SavedModel takes a while.
    if not os.path.isfile(os.path.join(self.path, METADATA_FILENAME)):
      raise ExportError(
          f"not a DCAE export (no {METADATA_FILENAME}): {self.path}")
    # Not tf.saved_model.load: see dcae_tf.saved_signatures.
    try:
      loaded = saved_signatures.SavedSignatures(self.path)
    except saved_signatures.SavedModelError as e:
      raise ExportError(f"not a DCAE export ({e})") from None
    # Signature name -> function taking and returning tensor dicts.
    self.signatures = loaded.functions
    # As saved: what TF Serving reports for this export.
    self.signature_defs = loaded.signature_defs
    check_signature_defs(self.signature_defs, self.path)
    self._compress = self.signatures[COMPRESS]
    self._decompress = self.signatures[DECOMPRESS]
    self.metadata_json = self.signatures[METADATA]()[JSON].numpy().decode()
    self.metadata = json.loads(self.metadata_json)
    self._warm = set()
    self._warm_lock = threading.Lock()

  def warm_up(self, names=WARMUP_SIGNATURES):
    """Runs the export's warm-up requests of signatures `names` (once each).

    A signature's first call optimises its graph (Grappler) and instantiates
    its kernels, which for the paper preset takes seconds and leaves a few
    hundred MB of freed C heap behind; running that on the small warm-up
    input, then returning the freed memory to the OS, lowers the process's
    peak when the first real image comes (paper preset, 768x512: about
    1590 -> 1370-1430 MiB). `compress` and `decompress` call this for
    themselves; a server calls it before serving. An export without a
    warm-up file still warms `compress` up, on `warmup_image()`.
    """
    with self._warm_lock:
      todo = [n for n in names if n not in self._warm]
      if not todo:
        return
      try:
        requests = read_warmup(self.path)
      except Exception as e:  # pylint: disable=broad-except
        # A truncated file (DataLossError) or a record that is no
        # PredictionLog (protobuf's DecodeError, which differs by runtime).
        raise ExportError(f"{self.path}: its warm-up file is unreadable: "
                          f"{error_message(e)}") from None
      if COMPRESS in todo and all(n != COMPRESS for n, _ in requests):
        requests.append((COMPRESS, {IMAGE: warmup_image()}))
      for name, inputs in requests:
        if name in todo:
          try:
            self.signatures[name](**inputs)
          except (tf.errors.OpError, TypeError, ValueError) as e:
            raise ExportError(f"{self.path}: its warm-up request of "
                              f"{name!r} failed: {error_message(e)}") from None
      self._warm.update(todo)
      heap.release_free_memory()

  def compress_tensor(self, image):
    """uint8 tensor [H, W, 3] -> string scalar tensor (no validation)."""
    return self._compress(**{IMAGE: image})[BITSTREAM]

  def decompress_tensor(self, bitstream):
    """string scalar tensor -> uint8 tensor [H, W, 3] (no validation)."""
    return self._decompress(**{BITSTREAM: bitstream})[IMAGE]

  def compress(self, image):
    """Compresses a uint8 HxWx3 numpy array; returns the bitstream bytes."""
    check_image(image)
    self.warm_up([COMPRESS])
    return self.compress_tensor(tf.constant(image)).numpy()

  def decompress(self, bitstream):
    """Decompresses bitstream bytes; returns a uint8 HxWx3 numpy array.

    Raises:
      ValueError: the bitstream is corrupt or was made by another model (the
        graph's InvalidArgumentError, with a one-line message).
    """
    if not isinstance(bitstream, (bytes, bytearray)):
      raise ValueError(
          f"bitstream must be bytes, got {type(bitstream).__name__}")
    self.warm_up([DECOMPRESS])
    try:
      image = self.decompress_tensor(tf.constant(bytes(bitstream)))
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(error_message(e)) from None
    return image.numpy()

  def reconstruct(self, image):
    """(encoder-side uint8 reconstruction, estimated payload bits) of a
    uint8 HxWx3 image, from the optional `reconstruct` signature."""
    if RECONSTRUCT not in self.signatures:
      raise ExportError(f"{self.path} has no {RECONSTRUCT!r} signature")
    check_image(image)
    out = self.signatures[RECONSTRUCT](**{IMAGE: tf.constant(image)})
    return out[IMAGE].numpy(), float(out[ESTIMATED_BITS])

  def __repr__(self):
    return (f"ExportedCodec(path={self.path!r}, version={self.version}, "
            f"name={self.metadata.get('name')!r})")


def load_exported(path):
  """Loads an export: a model base path (newest version) or a version dir."""
  return ExportedCodec(path)
