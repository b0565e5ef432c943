"""The serving contract of an export: its signatures (no TensorFlow).

  "compress":   {"image": uint8 [H, W, 3]}  -> {"bitstream": string []}
  "decompress": {"bitstream": string []}    -> {"image": uint8 [H, W, 3]}
  "metadata":   {}                          -> {"json": string []}
  "reconstruct" (optional): {"image": uint8 [H, W, 3]} -> {"image": uint8
                [H, W, 3], "estimated_bits": float32 []}: the encoder-side
                reconstruction that decompress reproduces exactly, and the
                model's estimate of the payload bits

The export writer, `ExportedCodec`, the model server and its client all
speak it.
"""
import numpy as np

from dcae_tf.codec.container import DEFAULT_MAX_PIXELS
from dcae_tf.codec.warmup import COMPRESS, DECOMPRESS
from dcae_tf.runtime.layout import ExportError

METADATA = "metadata"
# Optional: the encoder-side reconstruction of an image (what
# `decompress(compress(image))` must equal exactly) and the model's estimate
# of its payload bits (what the bitstream should cost, header aside).
RECONSTRUCT = "reconstruct"
ESTIMATED_BITS = "estimated_bits"
IMAGE = "image"
BITSTREAM = "bitstream"
JSON = "json"
IMAGE_CHANNELS = 3
# Room in a gRPC message for what is not pixels (protobuf framing, names).
MESSAGE_OVERHEAD_BYTES = 1 << 20
# Server and client: an image of the default pixel limit fits one message.
DEFAULT_MAX_MESSAGE_BYTES = (DEFAULT_MAX_PIXELS * IMAGE_CHANNELS +
                             MESSAGE_OVERHEAD_BYTES)

# signature name -> (input names, output names). What makes an export ours.
SIGNATURES = {
    COMPRESS: ((IMAGE,), (BITSTREAM,)),
    DECOMPRESS: ((BITSTREAM,), (IMAGE,)),
    METADATA: ((), (JSON,)),
}


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
