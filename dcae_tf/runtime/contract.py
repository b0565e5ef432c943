"""The serving contract of an export: its signatures (no TensorFlow).

  "compress":   {"image": uint8 [H, W, 3]}  -> {"bitstream_bytes": string []}
  "decompress": {"bitstream": string []}    -> {"image": uint8 [H, W, 3]}
  "metadata":   {}                          -> {"json": string []}
  "reconstruct" (optional): {"image": uint8 [H, W, 3]} -> {"image": uint8
                [H, W, 3], "estimated_bits": float32 []}: the encoder-side
                reconstruction that decompress reproduces exactly, and the
                model's estimate of the payload bits

Why `compress` returns "bitstream_bytes": TF Serving's REST API
base64-encodes a string output as {"b64": ...} only when its output key
ends in "_bytes" (REST_BYTES_SUFFIX); any other string output is written
raw into the JSON response, which for binary data is not valid JSON.
`decompress` keeps its input name "bitstream": REST takes {"b64": ...} for
any string input, whatever its name, so the "outputs" of a REST compress
response is, as it stands, the "bitstream" input of a decompress request.
"json" stays as it is: it is text (and REST predict cannot call a signature
without inputs). Exports of the contract before 2026-12 (compress ->
{"bitstream": ...}) are refused by the loader with a message to re-export.

The export writer, `ExportedCodec`, the model server and its client all
speak it.
"""
import numpy as np

from dcae_tf.codec.container import DEFAULT_MAX_PIXELS
from dcae_tf.codec.warmup import COMPRESS, DECOMPRESS
from dcae_tf.codec.metadata import DEFAULT_WEIGHT_DTYPE
from dcae_tf.runtime import layout
from dcae_tf.runtime.layout import ExportError

METADATA = "metadata"
# Optional: the encoder-side reconstruction of an image (what
# `decompress(compress(image))` must equal exactly) and the model's estimate
# of its payload bits (what the bitstream should cost, header aside).
RECONSTRUCT = "reconstruct"
ESTIMATED_BITS = "estimated_bits"
IMAGE = "image"
# decompress's input.
BITSTREAM = "bitstream"
# TF Serving's REST API base64-encodes string outputs with this key suffix.
REST_BYTES_SUFFIX = "_bytes"
# compress's output: a string output TF Serving's REST API base64-encodes.
BITSTREAM_BYTES = BITSTREAM + REST_BYTES_SUFFIX
JSON = "json"
IMAGE_CHANNELS = 3
# Room in a gRPC message for what is not pixels (protobuf framing, names).
MESSAGE_OVERHEAD_BYTES = 1 << 20
# The one metadata field GetModelMetadata serves (TF Serving's model server
# and ours): the export's signatures.
SIGNATURE_DEF_FIELD = "signature_def"
# Server and client: an image of the default pixel limit fits one message.
DEFAULT_MAX_MESSAGE_BYTES = (DEFAULT_MAX_PIXELS * IMAGE_CHANNELS +
                             MESSAGE_OVERHEAD_BYTES)

# signature name -> (input names, output names). What makes an export ours.
SIGNATURES = {
    COMPRESS: ((IMAGE,), (BITSTREAM_BYTES,)),
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
  """Raises ExportError unless the signatures are the export contract's.

  `where` is the export's version directory. A signature of other names
  (e.g. an export of the contract before 2026-12, whose compress returned
  "bitstream") is refused in one line naming the expected contract and how
  to re-export: bin/export.py reads the weights of an export of any
  contract (`runtime.weights_source`).
  """
  for name, (inputs, outputs) in SIGNATURES.items():
    if name not in signature_defs:
      raise ExportError(f"not a DCAE export (no {name!r} signature): {where}")
    sig = signature_defs[name]
    if (sorted(sig.inputs) != sorted(inputs)
        or sorted(sig.outputs) != sorted(outputs)):
      raise ExportError(
          f"not a DCAE export of this contract (signature {name!r} maps "
          f"{sorted(sig.inputs)} -> {sorted(sig.outputs)}, expected "
          f"{list(inputs)} -> {list(outputs)}): {where}; if it is an older "
          f"DCAE export, re-export it with this code: "
          f"{reexport_command(where)} (docs/export.md)")


def reexport_command(version_dir):
  """The bin/export.py command that re-exports an export with this code:
  its weights as they are stored (float16 stays float16: the same weights
  bit for bit, hence the same fingerprint unless the numerics version
  changed), into the model's next version."""
  command = (f"python bin/export.py --checkpoint "
             f"{layout.base_path(version_dir)}")
  try:
    weight_dtype = layout.read_metadata(version_dir).get("weight_dtype")
  except (OSError, ValueError, AttributeError):
    weight_dtype = None
  if weight_dtype and weight_dtype != DEFAULT_WEIGHT_DTYPE:
    command += f" --weight_dtype {weight_dtype}"
  return command
