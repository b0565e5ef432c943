"""Finding and reading the test images of a data set folder.

Works on Kodak (flat folder of PNGs), CLIC (PNGs, sometimes in sub-folders)
and Tecnick (PNGs in a sub-folder), or any folder of the image files
`dcae_tf.io` reads. Images are returned as uint8 RGB arrays: palette,
grayscale and RGBA images are converted to RGB (alpha dropped), as the
codecs under test code RGB.
"""
import os

from dcae_tf import io as dio


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
  try:
    paths = dio.list_files(folder, dio.IMAGE_EXTENSIONS, recursive=recursive)
  except OSError as e:
    raise ValueError(f"cannot list image folder {folder!r}: "
                     f"{e.strerror}") from None
  if not paths:
    hint = "" if recursive else " (use recursive=True / --recursive for sub-folders)"
    raise ValueError(f"no images ({', '.join(dio.IMAGE_EXTENSIONS)}) in "
                     f"{folder!r}{hint}")
  return paths


def read_image(path):
  """Reads an image file as a uint8 [H, W, 3] array; ValueError if it can't."""
  try:
    return dio.read_image(path)
  except ValueError as e:
    raise ValueError(f"cannot read image {path!r}: {e}") from None


def image_name(path, folder):
  """Name of an image in the result tables: its path relative to `folder`."""
  return os.path.relpath(path, folder)
