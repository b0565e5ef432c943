"""Reading the photographs where packages keep them: plain image files,
members of Qt binary resources (`<file>::<member>`, as GCompris ships its
data) and jigzo puzzles (`.pzl`, whose photograph is cut from a texture
atlas). Pure Python (numpy, Pillow; imagecodecs for JPEG XL)."""
import io
import os
import re
import struct
import zlib

import numpy as np
from PIL import Image

# Decoded sources larger than this are refused (a bound on memory).
MAX_SOURCE_PIXELS = 64_000_000
# `<container>::<member>`: a file stored inside a Qt resource file.
MEMBER_SEPARATOR = "::"
RCC_MAGIC = b"qres"
# Node flags of the Qt resource format (qresource.cpp).
RCC_COMPRESSED_ZLIB = 0x1
RCC_DIRECTORY = 0x2
RCC_COMPRESSED_ZSTD = 0x4
# Magic, version and three offsets; a tree node is 14 bytes in version 1,
# and versions 2 and 3 append an 8-byte timestamp.
RCC_HEADER_SIZE = 20
RCC_NODE_SIZE_V1 = 14
RCC_NODE_SIZE = 22
PZL_MAGIC = b"PzlF\n"
# A jigzo puzzle starts with magic, version, title and URL lines.
PZL_HEADER_LINES = 4
# The rectangle of the whole picture inside the puzzle's texture atlas.
PZL_IMAGE_RECT = re.compile(rb"^image (\d+) (\d+) (\d+) (\d+)", re.M)
UINT8_MAX = 255


def rcc_member(data, member):
  """The bytes of `member` (a path) inside a Qt binary resource file.

  The format (Qt's rcc, versions 1 to 3): a header with the offsets of the
  node tree, the data blobs and the names; directory nodes list their
  children, file nodes point at a blob that may be zlib-compressed.
  Raises KeyError if the member is not there and ValueError if the file is
  not a resource file or uses zstd, which Python's standard library lacks.
  """
  if data[:4] != RCC_MAGIC or len(data) < RCC_HEADER_SIZE:
    raise ValueError("not a Qt resource file")
  version, tree, blobs, names = struct.unpack(
      ">IIII", data[len(RCC_MAGIC):RCC_HEADER_SIZE])
  node_size = RCC_NODE_SIZE_V1 if version == 1 else RCC_NODE_SIZE

  def name(offset):
    length, = struct.unpack_from(">H", data, names + offset)
    start = names + offset + 6  # length and hash precede the UTF-16 text
    return data[start:start + 2 * length].decode("utf-16-be")

  node = 0
  parts = [p for p in member.split("/") if p]
  for part in parts:
    flags, = struct.unpack_from(">H", data, tree + node * node_size + 4)
    if not flags & RCC_DIRECTORY:
      raise KeyError(member)
    count, first = struct.unpack_from(">II", data, tree + node * node_size + 6)
    children = {name(struct.unpack_from(">I", data, tree + c * node_size)[0]):
                c for c in range(first, first + count)}
    if part not in children:
      raise KeyError(member)
    node = children[part]
  base = tree + node * node_size
  flags, = struct.unpack_from(">H", data, base + 4)
  if flags & RCC_DIRECTORY:
    raise KeyError(member)
  offset, = struct.unpack_from(">I", data, base + 10)
  size, = struct.unpack_from(">I", data, blobs + offset)
  blob = data[blobs + offset + 4:blobs + offset + 4 + size]
  if flags & RCC_COMPRESSED_ZSTD:
    raise ValueError(f"{member} is zstd-compressed")
  if flags & RCC_COMPRESSED_ZLIB:
    return zlib.decompress(blob[4:])  # after qCompress's length prefix
  return blob


def pzl_image(data):
  """The photograph of a jigzo puzzle, as a PIL image.

  A `.pzl` file is a few header lines and then entries of a name line, a
  byte count line and the bytes: the texture map (text), a thumbnail, the
  pieces' alpha mask and the texture atlas JPEG. The map's `image x y w h`
  line gives where the whole picture sits in the atlas.
  """
  if not data.startswith(PZL_MAGIC):
    raise ValueError("not a jigzo puzzle")
  stream = io.BytesIO(data)
  for _ in range(PZL_HEADER_LINES):
    stream.readline()
  entries = {}
  while stream.tell() < len(data):
    entry = stream.readline().strip().decode("utf-8", "replace")
    try:
      size = int(stream.readline())
    except ValueError:
      raise ValueError("damaged jigzo puzzle")
    entries[entry] = stream.read(size)
  texture_map = [v for k, v in entries.items() if k.endswith(".map")]
  atlas = [v for k, v in entries.items()
           if k.endswith(".jpg") and not k.endswith("-t.jpg")]
  rect = PZL_IMAGE_RECT.search(texture_map[0]) if texture_map else None
  if not rect or len(atlas) != 1:
    raise ValueError("jigzo puzzle without its picture")
  x, y, w, h = (int(v) for v in rect.groups())
  return open_bounded(atlas[0]).crop((x, y, x + w, y + h))


def open_bounded(data):
  """Opens encoded image bytes, refusing images over MAX_SOURCE_PIXELS."""
  image = Image.open(io.BytesIO(data))
  if image.width * image.height > MAX_SOURCE_PIXELS:
    raise ValueError(f"{image.width}x{image.height} is over the pixel limit")
  return image


def source_exists(path):
  """Whether the file (or, for a resource member, its container) exists."""
  return os.path.exists(path.split(MEMBER_SEPARATOR)[0])


def read_source(path):
  """The bytes of a source file or of a member of a resource file."""
  container, _, member = path.partition(MEMBER_SEPARATOR)
  with open(container, "rb") as f:
    data = f.read()
  if not member:
    return data
  try:
    return rcc_member(data, member)
  except (struct.error, zlib.error):
    raise ValueError(f"damaged Qt resource file {container}")


def decode_rgb(path):
  """Decodes any supported image file to an RGB PIL image."""
  data = read_source(path)
  if path.lower().endswith(".pzl"):
    return pzl_image(data).convert("RGB")
  if path.lower().endswith(".jxl"):
    import imagecodecs  # pylint: disable=g-import-not-at-top
    array = imagecodecs.jpegxl_decode(data)
    if array.dtype != np.uint8:
      array = (array.astype(np.float64) * UINT8_MAX
               / np.iinfo(array.dtype).max
               ).round().astype(np.uint8)
    return Image.fromarray(array[..., :3] if array.ndim == 3 else array
                           ).convert("RGB")
  return open_bounded(data).convert("RGB")
