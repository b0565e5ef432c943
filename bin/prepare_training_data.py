#!/usr/bin/env python3
"""Writes the zoo training photographs from unpacked packages.

  python bin/prepare_training_data.py --sources data/training_sources.tsv \
      --root /tmp/unpacked --out data/zoo_train --heldout_dir data/test

`--root` holds one directory per source package, laid out as the package
installs its files (`<root>/<package>/usr/share/...`), with the package
version in `<root>/<package>/.version`. `bin/get_training_data.sh` builds it.

Every selected file is decoded to RGB, resized with LANCZOS so that its long
side is `TARGET_LONG_SIDE` (never upscaled), and written as
`<package>__<name>.png`. A path `<file>::<member>` names a file inside a Qt
binary resource (`.rcc`, as GCompris ships its data), and a jigzo puzzle
(`.pzl`) gives the photograph its pieces were cut from. Images whose short
side would be below
`MIN_SHORT_SIDE` are skipped, as are near-duplicates of a held-out photograph
or of an image already written. `MANIFEST.tsv` records each written file with
its provenance and the sha256 of the PNG. The selection is the committed
sources file, so a re-run picks the same files; a file missing from a newer
package version is reported and skipped.
"""
import argparse
import csv
import dataclasses
import hashlib
import io
import os
import re
import struct
import sys
import zlib

import numpy as np
from PIL import Image

TARGET_LONG_SIDE = 1024
MIN_SHORT_SIDE = 256
# Issue 18 asks for at least 200 training photographs; the sources list
# selects more (see data/README.md), so a package that drops a few files
# still leaves a usable set.
MIN_IMAGES = 200
# 16x16 grayscale thumbnails, as data/README.md's train/test check uses.
THUMB_SIDE = 16
# Correlation of thumbnails above which two images count as the same photo.
# Different photographs in data/ reach at most 0.83 (data/README.md); a
# resized or re-encoded copy of one photograph scores above 0.98.
HELDOUT_MAX_CORRELATION = 0.9
DUPLICATE_MAX_CORRELATION = 0.95
MAX_SOURCE_PIXELS = 64_000_000
MANIFEST = "MANIFEST.tsv"
MANIFEST_FIELDS = ("file", "package", "version", "original_path", "license",
                   "author", "sha256")
SOURCE_FIELDS = ("package", "path", "name", "license", "author", "photo")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tga", ".jxl")
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


class PrepareError(ValueError):
  """A problem with the inputs that stops the whole run."""


@dataclasses.dataclass(frozen=True)
class Source:
  """One row of the sources file: a photograph inside a package."""
  package: str
  path: str
  name: str
  license: str
  author: str

  @property
  def out_name(self):
    return f"{self.package}__{self.name.lower()}.png"


def read_sources(path):
  """Returns the rows of the sources TSV whose `photo` column is `yes`.

  Lines starting with `#` are comments. An empty `name` means the file's
  own name (a resource member's, for `<file>::<member>`) without its
  extension.
  """
  try:
    with open(path, newline="", encoding="utf-8") as f:
      lines = [l for l in f if l.strip() and not l.startswith("#")]
  except OSError as e:
    raise PrepareError(f"cannot read sources file {path}: {e.strerror}")
  reader = csv.DictReader(lines, delimiter="\t")
  if tuple(reader.fieldnames or ()) != SOURCE_FIELDS:
    raise PrepareError(f"{path}: header must be {' '.join(SOURCE_FIELDS)}")
  sources, seen = [], set()
  for row in reader:
    if row["photo"] != "yes":
      continue
    inner = row["path"].split(MEMBER_SEPARATOR)[-1]
    name = row["name"] or os.path.splitext(os.path.basename(inner))[0]
    source = Source(row["package"], row["path"], name, row["license"],
                    row["author"])
    if source.out_name in seen:
      raise PrepareError(f"{path}: two rows write {source.out_name}")
    seen.add(source.out_name)
    sources.append(source)
  return sources


def target_size(width, height):
  """(w, h) with the long side TARGET_LONG_SIDE, or unchanged if smaller.

  Returns None if the short side would fall below MIN_SHORT_SIDE.
  """
  scale = min(1.0, TARGET_LONG_SIDE / max(width, height))
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  return size if min(size) >= MIN_SHORT_SIDE else None


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
      array = (array.astype(np.float64) * 255 / np.iinfo(array.dtype).max
               ).round().astype(np.uint8)
    return Image.fromarray(array[..., :3] if array.ndim == 3 else array
                           ).convert("RGB")
  return open_bounded(data).convert("RGB")


def thumbnail(image):
  """Zero-mean unit-norm 16x16 grayscale thumbnail, for near-duplicates."""
  g = np.asarray(image.convert("L").resize((THUMB_SIDE, THUMB_SIDE),
                                           Image.BILINEAR), np.float64)
  g = g.ravel() - g.mean()
  norm = np.linalg.norm(g)
  return g / norm if norm > 0 else g


class NearDuplicates:
  """Thumbnails to compare against, mirror images included."""

  def __init__(self):
    self._names, self._thumbs = [], []

  def add(self, name, image):
    self._names += [name, name]
    self._thumbs += [thumbnail(image),
                     thumbnail(image.transpose(Image.FLIP_LEFT_RIGHT))]

  def best(self, image):
    """(correlation, name) of the closest stored image, or (-1, None)."""
    if not self._thumbs:
      return -1.0, None
    scores = np.stack(self._thumbs) @ thumbnail(image)
    k = int(np.argmax(scores))
    return float(scores[k]), self._names[k]


def sha256_file(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def write_png_atomic(image, path):
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def read_manifest(out_dir):
  path = os.path.join(out_dir, MANIFEST)
  if not os.path.exists(path):
    return {}
  with open(path, newline="", encoding="utf-8") as f:
    return {r["file"]: r for r in csv.DictReader(f, delimiter="\t")}


def write_manifest(out_dir, rows):
  path = os.path.join(out_dir, MANIFEST)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, MANIFEST_FIELDS, delimiter="\t",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)


def package_version(root, package):
  try:
    with open(os.path.join(root, package, ".version"), encoding="utf-8") as f:
      return f.read().strip()
  except OSError:
    return "unknown"


def load_heldout(heldout_dir):
  """Thumbnails of every image in the held-out directory."""
  heldout = NearDuplicates()
  if not heldout_dir:
    return heldout
  if not os.path.isdir(heldout_dir):
    raise PrepareError(f"held-out directory {heldout_dir} does not exist")
  for name in sorted(os.listdir(heldout_dir)):
    if name.lower().endswith(IMAGE_SUFFIXES):
      heldout.add(name, decode_rgb(os.path.join(heldout_dir, name)))
  return heldout


def prepare(sources, root, out_dir, heldout_dir=None, min_images=MIN_IMAGES,
            log=print):
  """Writes the images and the manifest; returns the manifest rows.

  Deterministic: sources are processed in file order, so which of two
  near-duplicates is kept depends only on the sources file. Files already in
  `out_dir` whose sha256 matches the previous manifest (same package version
  and original path) are kept without decoding the source again.
  """
  os.makedirs(out_dir, exist_ok=True)
  heldout = load_heldout(heldout_dir)
  previous = read_manifest(out_dir)
  written, rows = NearDuplicates(), []
  counts = dict(written=0, kept=0, missing=0, small=0, heldout=0,
                duplicate=0, unreadable=0)
  for i, src in enumerate(sources, 1):
    version = package_version(root, src.package)
    src_path = os.path.join(root, src.package, src.path)
    out_path = os.path.join(out_dir, src.out_name)
    prefix = f"[{i}/{len(sources)}] {src.out_name}"
    old = previous.get(src.out_name)
    if (old and os.path.exists(out_path) and old["version"] == version and
        old["original_path"] == src.path and
        old["sha256"] == sha256_file(out_path)):
      image = Image.open(out_path).convert("RGB")
      status = "kept"
    else:
      try:
        if not source_exists(src_path):
          raise KeyError(src.path)
        image = decode_rgb(src_path)
      except KeyError:
        log(f"{prefix}: missing in {src.package} {version}: {src.path}")
        counts["missing"] += 1
        continue
      except (OSError, ValueError) as e:
        log(f"{prefix}: cannot decode {src.path}: {e}")
        counts["unreadable"] += 1
        continue
      size = target_size(*image.size)
      if size is None:
        log(f"{prefix}: skipped, {image.width}x{image.height} is too small")
        counts["small"] += 1
        continue
      if size != image.size:
        image = image.resize(size, Image.LANCZOS)
      status = "written"
    score, match = heldout.best(image)
    if score > HELDOUT_MAX_CORRELATION:
      log(f"{prefix}: refused, near-duplicate of held-out {match} "
          f"(correlation {score:.3f})")
      counts["heldout"] += 1
      _remove(out_path)
      continue
    score, match = written.best(image)
    if score > DUPLICATE_MAX_CORRELATION:
      log(f"{prefix}: skipped, near-duplicate of {match} "
          f"(correlation {score:.3f})")
      counts["duplicate"] += 1
      _remove(out_path)
      continue
    if status == "written":
      write_png_atomic(image, out_path)
    written.add(src.out_name, image)
    counts[status] += 1
    rows.append(dict(file=src.out_name, package=src.package, version=version,
                     original_path=src.path, license=src.license,
                     author=src.author, sha256=sha256_file(out_path)))
    log(f"{prefix}: {status} {image.width}x{image.height}")
  log(" ".join(f"{k}={v}" for k, v in counts.items()) +
      f" total={len(rows)}")
  if len(rows) < min_images:
    # The previous manifest stays: a run against the wrong --root must not
    # erase the record of a good set.
    raise PrepareError(f"only {len(rows)} images, fewer than {min_images}")
  write_manifest(out_dir, rows)
  return rows


def _remove(path):
  if os.path.exists(path):
    os.remove(path)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sources", required=True, help="sources TSV")
  parser.add_argument("--root", required=True, help="unpacked packages")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--heldout_dir", default=None,
                      help="held-out images that must not be reproduced")
  parser.add_argument("--min_images", type=int, default=MIN_IMAGES)
  args = parser.parse_args(argv)
  try:
    prepare(read_sources(args.sources), args.root, args.out,
            args.heldout_dir, args.min_images)
  except PrepareError as e:
    print(f"prepare_training_data.py: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
