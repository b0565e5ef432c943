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
  checkpoint     model directories (checkpoint + model.json)
  core           `DCAECodec`, its fingerprint, `codec_from_checkpoint`

`from dcae_tf.codec import DCAECodec` works; the names of `core` are looked
up on first use (PEP 562), so that importing a TensorFlow-free submodule
such as `dcae_tf.codec.container` does not import TensorFlow.
"""
import importlib

# Names of `core`, importable from the package.
_CORE_NAMES = ("DCAECodec", "codec_from_checkpoint", "codec_from_model",
               "weights_fingerprint", "z_entropy_model", "NUMERICS_VERSION",
               "RANGE_CODER_PRECISION", "PIXEL_MAX")
__all__ = list(_CORE_NAMES)


def __getattr__(name):
  if name in _CORE_NAMES:
    # Deliberately lazy: `core` imports TensorFlow and the model.
    core = importlib.import_module("dcae_tf.codec.core")
    return getattr(core, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
