"""Finding and reading the test images of a data set folder.

Works on Kodak (flat folder of PNGs), CLIC (PNGs, sometimes in sub-folders)
and Tecnick (PNGs in a sub-folder), or any folder of PNG/JPEG/... files.
Images are returned as uint8 RGB arrays: palette, grayscale and RGBA images
are converted to RGB (alpha dropped), as the codecs under test code RGB.
"""
import os

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff",
                    ".webp")


def list_images(folder, recursive=False):
  """Sorted image paths in `folder`; ValueError if there are none.

  Args:
    folder: directory with the images.
    recursive: also look in sub-directories (CLIC/Tecnick layouts).
  """
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise ValueError(f"image folder {folder!r} does not exist or is not a "
                     f"directory")
  if not os.access(folder, os.R_OK | os.X_OK):
    raise ValueError(f"image folder {folder!r} is not readable")
  paths = []
  if recursive:
    for root, dirs, files in os.walk(folder):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      paths.extend(os.path.join(root, f) for f in files)
  else:
    try:
      names = os.listdir(folder)
    except OSError as e:
      raise ValueError(f"cannot list image folder {folder!r}: "
                       f"{e.strerror}") from None
    paths = [os.path.join(folder, f) for f in names]
  paths = sorted(p for p in paths
                 if os.path.isfile(p)
                 and not os.path.basename(p).startswith(".")
                 and p.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    hint = "" if recursive else " (use recursive=True / --recursive for sub-folders)"
    raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in "
                     f"{folder!r}{hint}")
  return paths


def _read_with_pillow(path):
  with Image.open(path) as img:
    img.load()
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _project_reader():
  """dcae_tf.io.read_image if the package provides it, else None."""
  try:
    from dcae_tf import io as dcae_io  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return getattr(dcae_io, "read_image", None)


def read_image(path):
  """Reads an image file as a uint8 [H, W, 3] array; ValueError if it can't."""
  reader = _project_reader()
  try:
    image = np.asarray(reader(path) if reader else _read_with_pillow(path))
    if image.ndim == 4 and image.shape[0] == 1:
      image = image[0]
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      # A project reader with another convention: use the plain path.
      image = _read_with_pillow(path)
  except (OSError, ValueError, SyntaxError) as e:
    raise ValueError(f"cannot read image {path!r}: {e}") from None
  return image


def image_name(path, folder):
  """Name of an image in the result tables: its path relative to `folder`."""
  return os.path.relpath(path, folder)
