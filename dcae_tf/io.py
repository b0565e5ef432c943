"""Image and file I/O: list image files, read any common photo, write PNG.

The codec works on 8-bit RGB. `read_image` turns whatever Pillow reads from
the accepted formats into that, warning (`ImageWarning`) whenever it throws
information away (alpha, bits of precision), and refuses everything else
with a ValueError that names the file. The pixel limit is checked from the
file header, before any pixel is decoded, so a small file claiming a huge
size costs nothing.

Writes are atomic (temp file in the target directory + `os.replace`): an
interrupted or failed write never leaves a partial output file.
"""
import contextlib
import os
import tempfile
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dcae_tf.codec import container

# Pillow format names accepted, and how messages spell them. MPO is what
# Pillow calls the multi-picture JPEGs many cameras and phones write.
SUPPORTED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG",
                     "WEBP": "WebP", "BMP": "BMP", "TIFF": "TIFF"}
# File name extensions of those formats (lowercase): what a folder of
# images means, for the command line, evaluation and training data alike.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_HIDDEN_PREFIX = "."
PNG_COMPRESS_LEVEL = 6
_FILE_MODE = 0o666
_UINT8_MAX = 255
_UINT16_MAX = 65535
# Pillow modes that hold more than 8 bits per sample.
_HIGH_DEPTH_MODES = ("I", "F")
# Pillow modes with an alpha channel (after palette expansion).
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class ImageError(ValueError):
  """An image file cannot be read; the message names the file."""


class ImageWarning(UserWarning):
  """Information was lost while reading an image (alpha, precision)."""


def has_extension(path, extensions=IMAGE_EXTENSIONS):
  """Whether a file name ends with one of `extensions` (any case)."""
  return path.lower().endswith(tuple(extensions))


def list_files(folder, extensions=IMAGE_EXTENSIONS, recursive=False):
  """Sorted paths of the files in `folder` ending with `extensions`.

  Hidden files (and, with `recursive`, hidden folders) are skipped, as a
  shell glob would.

  Raises:
    OSError: the folder cannot be listed.
  """
  if recursive:
    paths = []
    for root, dirs, files in os.walk(folder):
      dirs[:] = sorted(d for d in dirs if not d.startswith(_HIDDEN_PREFIX))
      paths.extend(os.path.join(root, f) for f in files)
  else:
    paths = [os.path.join(folder, f) for f in os.listdir(folder)]
  return sorted(p for p in paths
                if not os.path.basename(p).startswith(_HIDDEN_PREFIX)
                and has_extension(p, extensions) and os.path.isfile(p))


def _supported_names():
  return ", ".join(sorted(set(SUPPORTED_FORMATS.values())))


def _raw_modes(image):
  """Decoder raw modes of a not-yet-loaded image (e.g. 'RGB;16B')."""
  modes = []
  for tile in getattr(image, "tile", None) or ():
    args = tile[3] if len(tile) > 3 else None
    if isinstance(args, tuple) and args:
      args = args[0]
    if isinstance(args, str):
      modes.append(args)
  return modes


def _is_high_depth(image):
  if image.mode.startswith("I;16") or image.mode in _HIGH_DEPTH_MODES:
    return True
  # 48/64-bit PNG and TIFF open as mode RGB/RGBA: Pillow keeps the high
  # byte silently, only the raw mode tells.
  return any(";16" in m or ";32" in m for m in _raw_modes(image))


def _high_depth_to_uint8(image):
  """Single-channel I;16 / I / F image -> uint8 array, scaled not clipped."""
  array = np.asarray(image)
  if image.mode == "F":
    # Float images are taken to be in [0, 1].
    scaled = np.clip(array.astype(np.float64), 0.0, 1.0) * _UINT8_MAX
    return np.round(scaled).astype(np.uint8)
  # I;16* and I: 16-bit sample range.
  array = np.clip(array.astype(np.int64), 0, _UINT16_MAX)
  return ((array * _UINT8_MAX + _UINT16_MAX // 2) // _UINT16_MAX).astype(
      np.uint8)


def read_image(path, max_pixels=container.DEFAULT_MAX_PIXELS):
  """Reads an image file as uint8 RGB.

  Args:
    path: file name. PNG, JPEG, WebP, BMP and TIFF are accepted (first frame
      of multi-frame files); the EXIF orientation is applied.
    max_pixels: largest width * height accepted, checked before decoding.

  Returns:
    np.uint8 array [H, W, 3].

  Raises:
    ImageError (a ValueError): unreadable, truncated, unsupported or too
      large, with a message naming the file.
  Warns:
    ImageWarning: an alpha channel was dropped, or a high bit depth image
      was reduced to 8 bits.
  """
  path = os.fspath(path)
  try:
    with warnings.catch_warnings():
      # Our own pixel limit applies; Pillow's bomb warning would be noise.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(path) as image:
        return _convert(path, image, max_pixels)
  except FileNotFoundError:
    raise ImageError(f"{path}: no such file") from None
  except IsADirectoryError:
    raise ImageError(f"{path}: is a directory") from None
  except PermissionError:
    raise ImageError(f"{path}: permission denied") from None
  except UnidentifiedImageError:
    raise ImageError(f"{path}: not an image file (or unsupported format; "
                     f"supported: {_supported_names()})") from None
  except Image.DecompressionBombError as e:
    raise ImageError(f"{path}: image too large ({e})") from None
  except ImageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Pillow reports truncated / corrupted data as OSError, SyntaxError,
    # ValueError, struct.error, ... depending on the plugin.
    raise ImageError(f"{path}: cannot read image ({e})") from None


def _convert(path, image, max_pixels):
  fmt = image.format
  if fmt not in SUPPORTED_FORMATS:
    raise ImageError(f"{path}: unsupported image format {fmt!r} "
                     f"(supported: {_supported_names()})")
  width, height = image.size
  if width < 1 or height < 1:
    raise ImageError(f"{path}: empty image ({width}x{height})")
  if width * height > max_pixels:
    raise ImageError(f"{path}: image {width}x{height} has {width * height} "
                     f"pixels, more than max_pixels {max_pixels}")
  high_depth = _is_high_depth(image)
  image.load()
  image = ImageOps.exif_transpose(image)
  if image.mode == "P":
    has_alpha = "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
  elif image.mode == "PA":
    image = image.convert("RGBA")
  if high_depth:
    warnings.warn(f"{path}: {image.mode} image with more than 8 bits per "
                  "sample reduced to 8 bits; precision was lost",
                  ImageWarning, stacklevel=3)
    if image.mode.startswith("I") or image.mode == "F":
      gray = _high_depth_to_uint8(image)
      return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
  if image.mode in _ALPHA_MODES:
    warnings.warn(f"{path}: alpha channel dropped ({image.mode} image read "
                  "as RGB)", ImageWarning, stacklevel=3)
  if image.mode == "RGBA":
    array = np.asarray(image)[..., :3]
  else:
    # L, 1, LA, CMYK, YCbCr, ...: Pillow's conversions (alpha is dropped).
    array = np.asarray(image.convert("RGB"))
  return np.ascontiguousarray(array, dtype=np.uint8)


@contextlib.contextmanager
def _atomic_file(path):
  """Yields a binary file object; moves it to `path` only on success."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix=f".{os.path.basename(path)}.",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      # mkstemp makes the file 0600; give it the permissions open() would.
      umask = os.umask(0)
      os.umask(umask)
      os.fchmod(f.fileno(), _FILE_MODE & ~umask)
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_bytes_atomic(path, data):
  """Writes `data` to `path` atomically (never a partial file)."""
  with _atomic_file(path) as f:
    f.write(bytes(data))


def write_image(path, array):
  """Writes a uint8 [H, W, 3] (or [H, W]) array as PNG, atomically."""
  array = np.asarray(array)
  if array.dtype != np.uint8:
    raise ValueError(f"image must be uint8, got {array.dtype}")
  if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
    raise ValueError(f"image must be [H, W, 3] or [H, W], got {array.shape}")
  if array.shape[0] < 1 or array.shape[1] < 1:
    raise ValueError(f"image must not be empty, got {array.shape}")
  image = Image.fromarray(np.ascontiguousarray(array))
  with _atomic_file(path) as f:
    image.save(f, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
