"""Which photographs make the set: the sources file, the size rule and
near-duplicates (of a held-out photograph or of one already taken)."""
import csv
import dataclasses
import os

import numpy as np
from PIL import Image

from dcae_tf.corpus.containers import MEMBER_SEPARATOR

TARGET_LONG_SIDE = 1024
MIN_SHORT_SIDE = 256
# 16x16 grayscale thumbnails, as data/README.md's train/test check uses.
THUMB_SIDE = 16
# Correlation of thumbnails above which two images count as the same photo.
# Different photographs in data/ reach at most 0.83 (data/README.md); a
# resized or re-encoded copy of one photograph scores above 0.98.
HELDOUT_MAX_CORRELATION = 0.9
DUPLICATE_MAX_CORRELATION = 0.95
SOURCE_FIELDS = ("package", "path", "name", "license", "author", "photo")
SELECTED = "yes"
COMMENT_PREFIX = "#"


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
      lines = [l for l in f
               if l.strip() and not l.startswith(COMMENT_PREFIX)]
  except OSError as e:
    raise PrepareError(f"cannot read sources file {path}: {e.strerror}")
  reader = csv.DictReader(lines, delimiter="\t")
  if tuple(reader.fieldnames or ()) != SOURCE_FIELDS:
    raise PrepareError(f"{path}: header must be {' '.join(SOURCE_FIELDS)}")
  sources, seen = [], set()
  for row in reader:
    if row["photo"] != SELECTED:
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
