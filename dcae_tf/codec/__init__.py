"""The codec layer: images to DCAE bitstreams and back, on the network core.

  container      the bitstream format and its header reader (no TensorFlow)
  container_ops  pack / unpack in graph ops
  digest         the digest of the coded symbols (a bitstream's last string)
  errors         TensorFlow error texts as one-line messages (no TensorFlow)
  metadata       names of a codec's metadata keys (no TensorFlow)
  warmup         the warm-up image and the functions warmed up (numpy)
  heap           giving freed C heap back to the OS (no TensorFlow)
  weights        float16 storage of layer weights
  transform_dtype  g_a and g_s in bfloat16 (views on the model's weights)
  exact_tables   coding tables, the same integers on every machine
  slice_coding   the slice loop's encoder and decoder
  checkpoint     model directories (checkpoint + model.json)
  numerics       exact or float entropy parameters; the fingerprint
  core           `DCAECodec`
  build          a codec from a model or a model directory

`from dcae_tf.codec import DCAECodec` works; the names in `__all__` are
looked up on first use (PEP 562), so that importing a TensorFlow-free submodule
such as `dcae_tf.codec.container` does not import TensorFlow.
"""
import importlib

# The package's names, each in the module that defines it.
_LAZY = {
    "DCAECodec": "core", "z_entropy_model": "core",
    "RANGE_CODER_PRECISION": "core", "PIXEL_MAX": "core",
    "codec_from_checkpoint": "build", "codec_from_model": "build",
    "weights_fingerprint": "numerics", "NUMERICS_VERSION": "numerics",
}
__all__ = list(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    # Deliberately lazy: `core` imports TensorFlow and the model.
    module = importlib.import_module(f"dcae_tf.codec.{_LAZY[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
