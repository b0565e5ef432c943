"""SavedModel export of a codec, as a new version of a model (`layout`).

A codec with tf.functions `compress` and `decompress` and a JSON-able
`metadata` dict becomes a SavedModel with the signatures of `contract`,
plus `metadata.json` and TF Serving's warm-up file (a compress request for
a small image and a decompress request for its bitstream, which TF Serving
runs before it serves a version, and `ExportedCodec` before its own first
call of each).

A version appears atomically: it is written into a `.tmp*` sibling
directory and renamed into place, so a model server polling the base path
never sees a half-written version.
"""
import collections.abc
import json
import os
import shutil
import tempfile

import tensorflow as tf

from dcae_tf.codec.warmup import COMPRESS, DECOMPRESS
from dcae_tf.runtime import layout
from dcae_tf.runtime import warmup_file
from dcae_tf.runtime.contract import (
    BITSTREAM, BITSTREAM_BYTES, ESTIMATED_BITS, IMAGE, IMAGE_CHANNELS, JSON,
    METADATA, RECONSTRUCT)
from dcae_tf.runtime.layout import ExportError

# The export module's attribute holding `codec.variables`, in order (its
# checkpoint keys are `codec_variables/<i>/...`; `weights_source` reads them).
VARIABLES_ATTRIBUTE = "codec_variables"


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
    setattr(self, VARIABLES_ATTRIBUTE, list(codec.variables))

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, IMAGE_CHANNELS], tf.uint8, name=IMAGE)])
    def compress(image):
      # "_bytes": TF Serving's REST API base64-encodes it (`contract`).
      return {BITSTREAM_BYTES: codec.compress(image)}

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
    if callable(getattr(codec, "reconstruct", None)):

      @tf.function(input_signature=[
          tf.TensorSpec([None, None, IMAGE_CHANNELS], tf.uint8, name=IMAGE)])
      def reconstruct(image):
        reconstruction, bits = codec.reconstruct(image)
        return {IMAGE: reconstruction, ESTIMATED_BITS: bits}

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
    version = max(layout.list_versions(model_base_path), default=0) + 1
  if isinstance(version, bool) or not isinstance(version, int) or version < 0:
    raise ExportError(f"version must be a non-negative int, got {version!r}")
  version_dir = os.path.join(model_base_path, str(version))
  if os.path.exists(version_dir):
    raise ExportError(f"version {version} already exists: {version_dir}")

  tmp_dir = tempfile.mkdtemp(prefix=f"{layout.TMP_PREFIX}-{version}-",
                             dir=model_base_path)
  try:
    wrapper = _ServingModule(module, metadata_json)
    tf.saved_model.save(wrapper, tmp_dir,
                        signatures=wrapper.signature_functions())
    layout.write_metadata(tmp_dir, metadata_json)
    warmup_file.write(
        tmp_dir, lambda image: module.compress(tf.constant(image)).numpy())
    if os.path.exists(version_dir):  # Another writer won the race.
      raise ExportError(f"version {version} already exists: {version_dir}")
    os.rename(tmp_dir, version_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return version_dir
