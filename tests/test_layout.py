"""Which version of an export is read: `runtime.layout.newest_version_dir`,
asked by the loader, the model store and the weight source (no TensorFlow:
the directories are made by hand)."""
import os

import pytest

from dcae_tf import zoo
from dcae_tf.runtime import layout


def _version(base, name, complete=True):
  """Makes base/name; a complete version has its saved_model.pb."""
  path = base / name
  (path / "variables").mkdir(parents=True)
  if complete:
    (path / layout.SAVED_MODEL_FILENAME).write_bytes(b"")
  return str(path)


def test_the_newest_complete_version_is_read(tmp_path):
  base = tmp_path / "model"
  _version(base, "2")
  newest = _version(base, "10")  # Numbers, not names: 10 > 2.
  # Being written, or left by a crash: never read, and not counted over.
  _version(base, "11", complete=False)
  _version(base, layout.TMP_PREFIX + "12")
  assert layout.newest_version_dir(str(base)) == newest
  assert layout.list_versions(str(base)) == [2, 10, 11]
  assert layout.complete_versions(str(base)) == [2, 10]
  # A version directory names itself, complete or whatever its name.
  assert layout.newest_version_dir(os.path.join(base, "2")) == os.path.join(
      base, "2")
  other = _version(tmp_path, "named")
  assert layout.newest_version_dir(other) == other
  assert layout.resolve_version_dir(str(base)) == (newest, 10)
  assert layout.resolve_version_dir(other) == (other, None)


def test_names_that_are_not_integers_are_not_versions(tmp_path):
  base = tmp_path / "model"
  for name in ("v3", "3a", "-4", "1.5", "notes", "\u00b2", "\u0663"):
    _version(base, name)
  (base / "7").write_bytes(b"")  # A file, not a directory.
  assert layout.list_versions(str(base)) == []
  with pytest.raises(layout.ExportError, match="no complete export version"):
    layout.newest_version_dir(str(base))
  _version(base, "0")
  assert layout.newest_version_dir(str(base)) == str(base / "0")


@pytest.mark.parametrize("case", ["empty", "incomplete", "missing", "file"])
def test_no_complete_version_is_one_error(tmp_path, case):
  path = tmp_path / "model"
  if case == "empty":
    path.mkdir()
  elif case == "incomplete":
    _version(path, "1", complete=False)
  elif case == "file":
    path.write_bytes(b"")
  with pytest.raises(layout.ExportError,
                     match=r"model holds no complete export version \(an "
                     r"integer subdirectory with saved_model\.pb\)"):
    layout.newest_version_dir(str(path))
  # The model store says it in its own error; the loader adds how to
  # write versions.
  with pytest.raises(zoo.ZooError,
                     match="not a model export: .* no complete export"):
    zoo.ModelInfo("model", str(path))
  with pytest.raises(zoo.ZooError, match="not a model export"):
    zoo.export_metadata(str(path))
  if case in ("empty", "incomplete"):
    with pytest.raises(layout.ExportError,
                       match="no versions under .*export.save_versioned"):
      layout.resolve_version_dir(str(path))


def test_the_model_store_reads_the_newest_complete_version(tmp_path):
  base = tmp_path / "model"
  for name in ("1", "3"):
    layout.write_metadata(_version(base, name), f'{{"name": "m{name}"}}')
  _version(base, "4", complete=False)
  info = zoo.ModelInfo("model", str(base))
  assert (info.version, info.name, info.base_path) == ("3", "m3", str(base))
  assert zoo.export_metadata(str(base)) == (str(base), {"name": "m3"})
  version_1 = str(base / "1")
  assert zoo.ModelInfo("model", version_1).base_path == str(base)
  assert zoo.export_metadata(version_1) == (str(base), {"name": "m1"})
