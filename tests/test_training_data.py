"""bin/prepare_training_data.py on synthetic packages (no network, no apt)."""
import csv
import hashlib
import importlib.util
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dcae_tf.corpus import containers
from dcae_tf.corpus import prepare as prepare_lib
from dcae_tf.corpus import selection

_PATH = os.path.join(os.path.dirname(__file__), "..", "bin",
                     "prepare_training_data.py")
_spec = importlib.util.spec_from_file_location("prepare_training_data", _PATH)
ptd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ptd)

HEADER = "\t".join(selection.SOURCE_FIELDS)


def _photo(width, height, seed):
  """A smooth random image: distinct seeds give uncorrelated thumbnails."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
  return Image.fromarray(small).resize((width, height), Image.BICUBIC)


def _package(root, package, files, version="1.0-1"):
  base = os.path.join(root, package)
  for rel, image in files.items():
    path = os.path.join(base, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, quality=95) if rel.endswith(".jpg") else image.save(path)
  with open(os.path.join(base, ".version"), "w") as f:
    f.write(version + "\n")


def _sources(path, rows):
  with open(path, "w") as f:
    f.write("# comment\n" + HEADER + "\n")
    for r in rows:
      f.write("\t".join(r) + "\n")
  return selection.read_sources(path)


@pytest.fixture
def layout(tmp_path):
  root, heldout = tmp_path / "root", tmp_path / "heldout"
  heldout.mkdir()
  _photo(600, 400, 99).save(heldout / "secret.png")
  _package(str(root), "pkg-a", {
      "usr/share/bg/Big_Photo.jpg": _photo(3000, 2000, 1),
      "usr/share/bg/Tall.PNG": _photo(800, 1600, 2),
      "usr/share/bg/small.jpg": _photo(600, 200, 3),
      "usr/share/bg/exact.png": _photo(500, 300, 4),
      # The held-out photo, re-scaled and mirrored: must be refused.
      "usr/share/bg/leak.jpg": _photo(1200, 800, 99).transpose(
          Image.FLIP_LEFT_RIGHT),
  })
  _package(str(root), "pkg-b", {
      # The same photo as Big_Photo at another resolution: a duplicate.
      "img/copy.jpg": _photo(1500, 1000, 1),
      "w/Dir/contents/2560x1600.jpg": _photo(2560, 1600, 5),
  }, version="2:3.4-5")
  sources = _sources(str(tmp_path / "sources.tsv"), [
      ("pkg-a", "usr/share/bg/Big_Photo.jpg", "", "CC0-1.0", "A", "yes"),
      ("pkg-a", "usr/share/bg/Tall.PNG", "", "CC-BY-4.0", "B", "yes"),
      ("pkg-a", "usr/share/bg/small.jpg", "", "CC0-1.0", "C", "yes"),
      ("pkg-a", "usr/share/bg/exact.png", "", "CC0-1.0", "D", "yes"),
      ("pkg-a", "usr/share/bg/leak.jpg", "", "CC0-1.0", "E", "yes"),
      ("pkg-a", "usr/share/bg/gone.jpg", "", "CC0-1.0", "F", "yes"),
      ("pkg-a", "usr/share/bg/render.png", "", "CC0-1.0", "G", "no"),
      ("pkg-b", "img/copy.jpg", "", "CC0-1.0", "A", "yes"),
      ("pkg-b", "w/Dir/contents/2560x1600.jpg", "Dir", "GPL-2.0-or-later",
       "H", "yes"),
  ])
  return sources, str(root), str(tmp_path / "out"), str(heldout)


def _run(layout, log):
  sources, root, out, heldout = layout
  return prepare_lib.prepare(sources, root, out, heldout, min_images=1,
                     log=log.append)


def test_resize_skip_naming_and_manifest(layout):
  log = []
  rows = _run(layout, log)
  out = layout[2]
  names = sorted(r["file"] for r in rows)
  assert names == ["pkg-a__big_photo.png", "pkg-a__exact.png",
                   "pkg-a__tall.png", "pkg-b__dir.png"]
  sizes = {n: Image.open(os.path.join(out, n)).size for n in names}
  assert sizes["pkg-a__big_photo.png"] == (1024, 683)
  assert sizes["pkg-a__tall.png"] == (512, 1024)
  assert sizes["pkg-a__exact.png"] == (500, 300)  # never upscaled
  assert sizes["pkg-b__dir.png"] == (1024, 640)
  assert Image.open(os.path.join(out, "pkg-a__exact.png")).mode == "RGB"
  assert not os.path.exists(os.path.join(out, "pkg-a__small.png"))
  text = "\n".join(log)
  assert "pkg-a__small.png: skipped, 600x200 is too small" in text
  assert "pkg-a__leak.png: refused, near-duplicate of held-out secret.png" \
      in text
  assert "pkg-a__gone.png: missing in pkg-a 1.0-1" in text
  assert "pkg-b__copy.png: skipped, near-duplicate of pkg-a__big_photo.png" \
      in text
  with open(os.path.join(out, prepare_lib.MANIFEST)) as f:
    manifest = list(csv.DictReader(f, delimiter="\t"))
  assert [m["file"] for m in manifest] == [r["file"] for r in rows]
  for m in manifest:
    with open(os.path.join(out, m["file"]), "rb") as f:
      assert m["sha256"] == hashlib.sha256(f.read()).hexdigest()
  dir_row = [m for m in manifest if m["file"] == "pkg-b__dir.png"][0]
  assert dir_row["version"] == "2:3.4-5"
  assert dir_row["license"] == "GPL-2.0-or-later"
  assert dir_row["original_path"] == "w/Dir/contents/2560x1600.jpg"


def test_rerun_is_idempotent_and_repairs(layout):
  _run(layout, [])
  out = layout[2]
  with open(os.path.join(out, prepare_lib.MANIFEST), "rb") as f:
    first = f.read()
  log = []
  _run(layout, log)
  assert any("pkg-a__big_photo.png: kept" in l for l in log)
  assert not any(": written" in l for l in log)
  with open(os.path.join(out, prepare_lib.MANIFEST), "rb") as f:
    assert f.read() == first
  # A damaged file is re-derived from its source.
  with open(os.path.join(out, "pkg-a__tall.png"), "wb") as f:
    f.write(b"junk")
  log = []
  _run(layout, log)
  assert any("pkg-a__tall.png: written 512x1024" in l for l in log)
  with open(os.path.join(out, prepare_lib.MANIFEST), "rb") as f:
    assert f.read() == first


def test_too_few_images_is_an_error_and_keeps_the_manifest(layout, tmp_path):
  sources, root, out, heldout = layout
  with pytest.raises(selection.PrepareError, match="only 4 images"):
    prepare_lib.prepare(sources, root, out, heldout, min_images=5,
                        log=lambda _: None)
  assert not os.path.exists(os.path.join(out, prepare_lib.MANIFEST))
  _run(layout, [])
  with open(os.path.join(out, prepare_lib.MANIFEST), "rb") as f:
    good = f.read()
  with pytest.raises(selection.PrepareError, match="only 0 images"):
    prepare_lib.prepare(sources, str(tmp_path / "nowhere"), out, heldout,
                min_images=1, log=lambda _: None)
  with open(os.path.join(out, prepare_lib.MANIFEST), "rb") as f:
    assert f.read() == good
  assert len(os.listdir(out)) == 5  # 4 images and the manifest


def test_bad_sources_header_is_one_line_error(tmp_path, capsys):
  bad = tmp_path / "s.tsv"
  bad.write_text("package\tpath\n")
  assert ptd.main(["--sources", str(bad), "--root", str(tmp_path),
                   "--out", str(tmp_path / "o")]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("prepare_training_data.py: error:")


def test_target_size_rule():
  assert selection.target_size(4000, 1000) == (1024, 256)
  assert selection.target_size(4000, 990) is None
  assert selection.target_size(300, 256) == (300, 256)
  assert selection.target_size(300, 255) is None


def test_committed_sources_list_parses():
  path = os.path.join(os.path.dirname(__file__), "..", "data",
                      "training_sources.tsv")
  sources = selection.read_sources(path)
  assert len(sources) >= prepare_lib.MIN_IMAGES
  heldout = ("picosdeeuropa", "picture_0b", "seeding", "wine", "coffee")
  assert not [s for s in sources if s.name.lower().startswith(heldout)]


def _rcc(files, version=2):
  """A Qt binary resource file holding `files` ({path: (bytes, zlib?)}).

  Written as Qt's rcc lays it out: a breadth-first node tree whose
  directory nodes list their children contiguously, the names as
  length-prefixed UTF-16, each blob after its 4-byte size.
  """
  tree = {}
  for path, content in files.items():
    node = tree
    *dirs, leaf = path.split("/")
    for d in dirs:
      node = node.setdefault(d, {})
    node[leaf] = content
  nodes, names, blobs, name_at = [], b"", b"", {}

  def name_offset(name):
    nonlocal names
    if name not in name_at:
      name_at[name] = len(names)
      text = name.encode("utf-16-be")
      names += struct.pack(">HI", len(name), 0) + text
    return name_at[name]

  nodes.append(None)  # the root, filled in below
  pending = [(0, tree)]
  while pending:
    index, children = pending.pop(0)
    first = len(nodes)
    items = sorted(children.items())
    nodes.extend([None] * len(items))
    for k, (name, child) in enumerate(items):
      if isinstance(child, dict):
        pending.append((first + k, child))
        nodes[first + k] = ["dir", name, len(child), 0]
      else:
        data, compress = child
        blob = (struct.pack(">I", len(data)) + zlib.compress(data)
                if compress else data)
        nodes[first + k] = ["file", name, len(blobs), compress]
        blobs += struct.pack(">I", len(blob)) + blob
    if index == 0:
      nodes[0] = ["dir", "", len(items), first]
    else:
      nodes[index][3] = first
  node_size = 14 if version == 1 else 22
  table = b""
  for kind, name, a, b in nodes:
    noff = name_offset(name) if name else 0
    if kind == "dir":
      entry = struct.pack(">IHII", noff, containers.RCC_DIRECTORY, a, b)
    else:
      flags = containers.RCC_COMPRESSED_ZLIB if b else 0
      entry = struct.pack(">IHHHI", noff, flags, 0, 0, a)
    table += entry + (b"" if version == 1 else b"\0" * 8)
  assert len(table) == node_size * len(nodes)
  header_size = 20
  tree_at = header_size
  blobs_at = tree_at + len(table)
  names_at = blobs_at + len(blobs)
  header = struct.pack(">IIII", version, tree_at, blobs_at, names_at)
  return containers.RCC_MAGIC + header + table + blobs + names


def _png_bytes(image, fmt="PNG"):
  buffer = io.BytesIO()
  image.save(buffer, format=fmt)
  return buffer.getvalue()


def _pzl(photo, pad=40):
  """A jigzo puzzle whose texture atlas holds `photo` at (0, 0)."""
  w, h = photo.size
  atlas = Image.new("RGB", (w + pad, h + pad))
  atlas.paste(photo, (0, 0))
  texture_map = f"#texture map data\nimage 0 0 {w} {h} 1 1    \n".encode()
  out = b"PzlF\n0.1\nname\nhttp://example.invalid/\n"
  for name, data in (("name.map", texture_map),
                     ("name-t.jpg", _png_bytes(photo.resize((50, 40)), "JPEG")),
                     ("name.png", _png_bytes(atlas.convert("L"))),
                     ("name.jpg", _png_bytes(atlas, "JPEG"))):
    out += f"{name}\n{len(data)}\n".encode() + data
  return out


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_members_are_read(version):
  a, b = b"plain bytes", b"compressed " * 50
  data = _rcc({"x/activities/erase/resource/a.bin": (a, False),
               "x/activities/erase/b.bin": (b, True),
               "x/core/c.bin": (b"c", False)}, version)
  assert containers.rcc_member(data, "x/activities/erase/resource/a.bin") == a
  assert containers.rcc_member(data, "x/activities/erase/b.bin") == b
  assert containers.rcc_member(data, "x/core/c.bin") == b"c"
  for missing in ("x/core/d.bin", "x/core", "x/core/c.bin/e", "y/a.bin"):
    with pytest.raises(KeyError):
      containers.rcc_member(data, missing)
  with pytest.raises(ValueError, match="not a Qt resource"):
    containers.rcc_member(b"PK\3\4" + data[4:], "x/core/c.bin")


def test_resource_members_and_puzzles_are_prepared(tmp_path):
  root, photo = tmp_path / "root", _photo(700, 500, 7)
  rcc_dir = root / "pkg-c" / "usr" / "share" / "rcc"
  rcc_dir.mkdir(parents=True)
  (rcc_dir / "act.rcc").write_bytes(_rcc({
      "g/act/resource/cat.webp": (_png_bytes(photo, "WEBP"), False),
      "g/act/resource/dog.png": (_png_bytes(_photo(600, 400, 8)), True)}))
  puzzle = root / "pkg-c" / "games" / "p-3x2.pzl"
  puzzle.parent.mkdir(parents=True)
  puzzle.write_bytes(_pzl(_photo(482, 642, 9)))
  (root / "pkg-c" / ".version").write_text("1\n")
  member = ("usr/share/rcc/act.rcc" + containers.MEMBER_SEPARATOR +
            "g/act/resource/")
  sources = _sources(str(tmp_path / "s.tsv"), [
      ("pkg-c", member + "cat.webp", "act_cat", "CC-BY-SA-4.0", "A", "yes"),
      ("pkg-c", member + "dog.png", "", "CC0-1.0", "B", "yes"),
      ("pkg-c", member + "gone.png", "", "CC0-1.0", "C", "yes"),
      ("pkg-c", "usr/share/rcc/none.rcc::a.png", "", "CC0-1.0", "D", "yes"),
      ("pkg-c", "games/p-3x2.pzl", "", "GPL-2.0-or-later", "E", "yes"),
  ])
  log, out = [], str(tmp_path / "out")
  rows = prepare_lib.prepare(sources, str(root), out, None, min_images=1,
                     log=log.append)
  assert [r["file"] for r in rows] == ["pkg-c__act_cat.png", "pkg-c__dog.png",
                                       "pkg-c__p-3x2.png"]
  assert Image.open(os.path.join(out, "pkg-c__dog.png")).size == (600, 400)
  cat = np.asarray(Image.open(os.path.join(out, "pkg-c__act_cat.png")))
  assert cat.shape == (500, 700, 3)
  assert np.abs(cat.astype(int) - np.asarray(photo, int)).max() < 40  # lossy
  # The puzzle's picture, not its atlas: the atlas's black margin is cut off.
  assert Image.open(os.path.join(out, "pkg-c__p-3x2.png")).size == (482, 642)
  text = "\n".join(log)
  assert "pkg-c__gone.png: missing in pkg-c 1" in text
  assert "pkg-c__a.png: missing in pkg-c 1" in text


def test_damaged_puzzle_is_skipped_not_fatal(tmp_path):
  root = tmp_path / "root"
  (root / "pkg-d").mkdir(parents=True)
  (root / "pkg-d" / "bad.pzl").write_bytes(b"PzlF\n0.1\nx\nu\nx.map\nnot a number\n")
  (root / "pkg-d" / "ok.png").write_bytes(_png_bytes(_photo(300, 300, 3)))
  sources = _sources(str(tmp_path / "s.tsv"), [
      ("pkg-d", "bad.pzl", "", "CC0-1.0", "A", "yes"),
      ("pkg-d", "ok.png", "", "CC0-1.0", "A", "yes")])
  log = []
  rows = prepare_lib.prepare(sources, str(root), str(tmp_path / "out"), None,
                     min_images=1, log=log.append)
  assert [r["file"] for r in rows] == ["pkg-d__ok.png"]
  assert any("pkg-d__bad.png: cannot decode bad.pzl" in l for l in log)
