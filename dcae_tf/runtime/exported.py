"""A loaded export: `ExportedCodec`, the codec interface on its signatures.

Loading (through `runtime.signatures`) needs only TensorFlow, never the
dcae_tf model code nor tensorflow_compression: an export is self-contained
and its graphs use stock ops only.
"""
import json
import os
import threading

import tensorflow as tf

from dcae_tf.codec import heap
from dcae_tf.codec.errors import error_message
from dcae_tf.codec.warmup import (
    COMPRESS, DECOMPRESS, WARMUP_SIGNATURES, warmup_image)
from dcae_tf.runtime import layout
from dcae_tf.runtime import signatures as signatures_lib
from dcae_tf.runtime import warmup_file
from dcae_tf.runtime.contract import (
    BITSTREAM, BITSTREAM_BYTES, ESTIMATED_BITS, IMAGE, JSON, METADATA,
    RECONSTRUCT, check_image, check_signature_defs)
from dcae_tf.runtime.graph_cache import GraphCache
from dcae_tf.runtime.layout import ExportError


class ExportedCodec:
  """A loaded export: the codec interface on top of the SavedModel signatures.

  Same surface as the in-process codec and the gRPC client's RemoteCodec:
  `.compress(uint8 HxWx3 array) -> bytes`, `.decompress(bytes) -> array`,
  `.metadata` dict. Thread-safe (signature functions may run concurrently).

  `graph_cache`: the store of optimised graphs (`runtime.graph_cache`), a
  `GraphCache(directory)` or None. None, the default, writes nothing
  anywhere and leaves the environment alone: every first call optimises
  its graph. With a store, each signature's first call reads the graph
  TensorFlow optimised for this export on this machine before, or stores
  it (same bytes either way; the small preset's first `compress` 13.6 ->
  2.7 s, docs/performance.md "Cold start"). It has one process-wide
  effect: TensorFlow 2.14 takes the store's directory only from the
  environment variable `TF_GRAPH_CACHING`, so a first call through a
  store sets it, under a lock that all such first calls in the process
  share, and restores it after.
  """

  def __init__(self, path, graph_cache=None):
    if graph_cache is not None and not isinstance(graph_cache, GraphCache):
      raise TypeError(
          f"graph_cache must be a GraphCache or None, got "
          f"{type(graph_cache).__name__} (GraphCache(directory) names a "
          f"store)")
    self.path, self.version = layout.resolve_version_dir(path)
    # Cheap check first: loading a large SavedModel takes a while.
    if not os.path.isfile(layout.metadata_path(self.path)):
      raise ExportError(
          f"not a DCAE export (no {layout.METADATA_FILENAME}): "
          f"{self.path}")
    # Not tf.saved_model.load: see runtime.signatures.
    try:
      loaded = signatures_lib.SavedSignatures(self.path, cache=graph_cache)
    except signatures_lib.SavedModelError as e:
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
        requests = warmup_file.read_warmup(self.path)
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
    return self._compress(**{IMAGE: image})[BITSTREAM_BYTES]

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


def load_exported(path, graph_cache=None):
  """Loads an export: a model base path (newest version) or a version dir;
  `graph_cache` as for `ExportedCodec` (None: no store)."""
  return ExportedCodec(path, graph_cache=graph_cache)


def write_warmup_file(version_dir, compress=None):
  """Writes an export's warm-up file; by default from the export itself,
  loaded (how exports made before the warm-up file existed get one)."""
  if compress is None:
    compress = ExportedCodec(version_dir).compress
  warmup_file.write(version_dir, compress)
