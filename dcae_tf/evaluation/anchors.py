"""Classical codecs as RD anchors: JPEG, WebP, AVIF and JPEG XL.

Each anchor is an `ImageCodec` at one quality setting; a quality sweep gives
one RD curve. The rate is always measured from the real encoded file
(`len(bytes) * 8 / pixels`, container and headers included), and the decoded
image is what the metrics see, exactly as for the learned codecs.

JPEG and WebP go through Pillow, AVIF (libavif) and JPEG XL (libjxl) through
imagecodecs. An encoder missing from the installed imagecodecs build is
skipped with an `AnchorUnavailableWarning`, never silently.
"""
import dataclasses
import io
import warnings

import numpy as np
from PIL import Image

# Quality sweeps (each codec's own 0..100 quality scale). Wide enough to
# bracket learned codecs from ~0.1 to ~1 bpp on Kodak.
DEFAULT_QUALITIES = {
    "jpeg": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "webp": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "avif": (10, 20, 30, 40, 50, 60, 70, 80, 90),
    "jxl": (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
}
ANCHOR_NAMES = tuple(DEFAULT_QUALITIES)
# JPEG: baseline libjpeg with 4:2:0 chroma subsampling, the common anchor.
JPEG_SUBSAMPLING = "4:2:0"
# WebP: libwebp's default speed/size trade-off (Pillow's default too).
WEBP_METHOD = 4
# AVIF: avifenc's default speed (libavif's own default, 0, is ~100x slower).
AVIF_SPEED = 6
# JPEG XL: cjxl's default effort.
JXL_EFFORT = 7
# A tiny image to check that an imagecodecs encoder really works.
_PROBE_SHAPE = (16, 16, 3)


class AnchorUnavailableWarning(UserWarning):
  """An anchor codec is not available in this installation and is skipped."""


@dataclasses.dataclass
class ImageCodec:
  """One codec at one setting: a single point per image on an RD curve.

  Attributes:
    curve: label of the RD curve this point belongs to (e.g. "JPEG").
    setting: human-readable setting (e.g. "q=50" or a model path).
    kind: "anchor" or "model".
    encode: function uint8 [H, W, 3] -> bytes.
    decode: function bytes -> uint8 [H, W, 3].
    quality: the numeric setting if any (sorting / plots), else None.
  """
  curve: str
  setting: str
  kind: str
  encode: callable
  decode: callable
  quality: float = None

  def compress(self, image):
    return bytes(self.encode(image))

  def decompress(self, data):
    return np.asarray(self.decode(data))


def _pillow_encode(image, fmt, **options):
  buf = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buf, fmt, **options)
  return buf.getvalue()


def _pillow_decode(data):
  with Image.open(io.BytesIO(data)) as img:
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def jpeg(quality):
  return ImageCodec(
      "JPEG", f"q={quality}", "anchor",
      lambda x: _pillow_encode(x, "JPEG", quality=quality,
                               subsampling=JPEG_SUBSAMPLING),
      _pillow_decode, quality)


def webp(quality):
  return ImageCodec(
      "WebP", f"q={quality}", "anchor",
      lambda x: _pillow_encode(x, "WEBP", quality=quality, method=WEBP_METHOD),
      _pillow_decode, quality)


def _rgb(array):
  """Decoded imagecodecs output as uint8 RGB (drops an alpha channel)."""
  array = np.asarray(array)
  if array.ndim == 2:
    array = np.stack([array] * 3, axis=-1)
  return np.ascontiguousarray(array[..., :3]).astype(np.uint8, copy=False)


def avif(quality):
  import imagecodecs  # pylint: disable=import-outside-toplevel
  return ImageCodec(
      "AVIF", f"q={quality}", "anchor",
      lambda x: imagecodecs.avif_encode(x, level=quality, speed=AVIF_SPEED),
      lambda b: _rgb(imagecodecs.avif_decode(b)), quality)


def jxl(quality):
  import imagecodecs  # pylint: disable=import-outside-toplevel
  return ImageCodec(
      "JPEG XL", f"q={quality}", "anchor",
      lambda x: imagecodecs.jpegxl_encode(x, level=quality, effort=JXL_EFFORT),
      lambda b: _rgb(imagecodecs.jpegxl_decode(b)), quality)


_FACTORIES = {"jpeg": jpeg, "webp": webp, "avif": avif, "jxl": jxl}
_IMAGECODECS_FUNCTIONS = {"avif": ("avif_encode", "avif_decode"),
                          "jxl": ("jpegxl_encode", "jpegxl_decode")}


def unavailable_reason(name):
  """Why anchor `name` can't run here, or None if it can."""
  if name not in _FACTORIES:
    raise ValueError(f"unknown anchor {name!r}; choose from "
                     f"{', '.join(ANCHOR_NAMES)}")
  try:
    codec = _FACTORIES[name](50)
    if name in _IMAGECODECS_FUNCTIONS:
      import imagecodecs  # pylint: disable=import-outside-toplevel
      missing = [f for f in _IMAGECODECS_FUNCTIONS[name]
                 if not hasattr(imagecodecs, f)]
      if missing:
        return (f"imagecodecs {imagecodecs.__version__} has no "
                f"{', '.join(missing)}")
    probe = np.zeros(_PROBE_SHAPE, np.uint8)
    if codec.decompress(codec.compress(probe)).shape != probe.shape:
      return "round trip of a probe image changed its shape"
  except Exception as e:  # pylint: disable=broad-except
    return f"{type(e).__name__}: {e}"
  return None


def anchor_codecs(names=ANCHOR_NAMES, qualities=None):
  """ImageCodecs for the named anchors at their quality sweeps.

  Args:
    names: anchor names from ANCHOR_NAMES.
    qualities: None for DEFAULT_QUALITIES, a sequence used for every anchor,
      or a dict name -> sequence (names missing from it use the default).

  Anchors that cannot run in this installation are skipped with an
  AnchorUnavailableWarning.
  """
  codecs = []
  # Each anchor and quality once, in the order given.
  names = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
  for name in names:
    reason = unavailable_reason(name)
    if reason:
      warnings.warn(f"anchor {name} skipped: {reason}",
                    AnchorUnavailableWarning, stacklevel=2)
      continue
    if qualities is None:
      sweep = DEFAULT_QUALITIES[name]
    elif isinstance(qualities, dict):
      sweep = qualities.get(name, DEFAULT_QUALITIES[name])
    else:
      sweep = qualities
    for q in dict.fromkeys(sweep):
      if not 0 <= q <= 100:
        raise ValueError(f"{name} quality must be in 0..100, got {q}")
      codecs.append(_FACTORIES[name](int(q)))
  return codecs
