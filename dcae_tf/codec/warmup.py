"""The warm-up input of a codec, and the names of the functions warmed up.

A codec's (or an export's) first call of `compress` / `decompress` traces
and optimises its graph, leaving freed C heap behind (`codec.heap`); running
that first call on this small image, then trimming the heap, lowers the
peak of the first real image. Plain numpy: the export runtime writes the
same image into TF Serving's warm-up file.
"""
import numpy as np

# The codec functions (and export signatures) that have a warm-up.
COMPRESS = "compress"
DECOMPRESS = "decompress"
# Signatures warmed up by default, in this order.
WARMUP_SIGNATURES = (COMPRESS, DECOMPRESS)
# Side of the warm-up image, small enough to cost little. Any size runs
# every layer: the model pads its input up to its preset's
# `DCAEConfig.pad_multiple`.
WARMUP_IMAGE_SIZE = 64
_UINT8_MAX = 255


def warmup_image():
  """The warm-up image: a smooth uint8 gradient (a realistic bitstream)."""
  ramp = np.linspace(0, _UINT8_MAX, WARMUP_IMAGE_SIZE, dtype=np.float32)
  image = np.stack(np.broadcast_arrays(
      ramp[:, None], ramp[None, :], _UINT8_MAX - ramp[:, None]), axis=-1)
  return image.astype(np.uint8)
