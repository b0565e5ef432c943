"""Export layout: versions count up, a failed or crashed save leaves no
version, and loading what is not a complete DCAE export is a clear error."""
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from dcae_tf import export
from tests import serving_fakes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPROCESS_TIMEOUT_SECONDS = 600

# Dies (os._exit, no cleanup) in the middle of save_versioned, after the
# SavedModel is written into the .tmp dir and before the rename.
CRASH_MID_SAVE_SCRIPT = """
import os, sys
from dcae_tf import export
from tests import serving_fakes
from dcae_tf.runtime import layout
layout.write_metadata = lambda *args: os._exit(3)
export.save_versioned(serving_fakes.FakePngCodec(), sys.argv[1])
"""


def test_versions_count_up_and_ignore_tmp_and_other_dirs(tmp_path):
  base = str(tmp_path / "m")
  codec = serving_fakes.FakePngCodec()
  assert export.list_versions(base) == []
  assert export.save_versioned(codec, base) == os.path.join(base, "1")
  os.makedirs(os.path.join(base, ".tmp-99"))
  os.makedirs(os.path.join(base, "notes"))
  assert export.save_versioned(codec, base, version=7) == os.path.join(base,
                                                                       "7")
  assert export.save_versioned(codec, base) == os.path.join(base, "8")
  assert export.list_versions(base) == [1, 7, 8]
  assert export.load_exported(base).version == 8
  assert export.load_exported(os.path.join(base, "7")).version == 7
  with pytest.raises(export.ExportError, match="version 7 already exists"):
    export.save_versioned(codec, base, version=7)
  # No temporary directory of ours is left behind.
  assert sorted(os.listdir(base)) == [".tmp-99", "1", "7", "8", "notes"]


def test_failed_save_leaves_nothing(tmp_path):
  class BrokenCodec(serving_fakes.FakePngCodec):

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decompress(self, bitstream):
      raise RuntimeError("broken while tracing")

  base = str(tmp_path / "m")
  with pytest.raises(RuntimeError, match="broken while tracing"):
    export.save_versioned(BrokenCodec(), base)
  assert os.listdir(base) == []


def test_crash_mid_save_leaves_no_version(tmp_path):
  base = tmp_path / "m"
  export.save_versioned(serving_fakes.FakePngCodec(), str(base))
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-c", CRASH_MID_SAVE_SCRIPT, str(base)], cwd=REPO_ROOT,
      env=env, capture_output=True, text=True,
      timeout=SUBPROCESS_TIMEOUT_SECONDS, check=False)
  assert result.returncode == 3, result.stderr[-2000:]
  tmp_dirs = [d for d in os.listdir(base) if d.startswith(export.TMP_PREFIX)]
  # The crash happened with a complete-looking SavedModel in the tmp dir...
  assert len(tmp_dirs) == 1
  assert export.is_complete(str(base / tmp_dirs[0]))
  # ...which never counts as a version.
  assert export.list_versions(str(base)) == [1]
  assert export.load_exported(str(base)).version == 1
  assert export.save_versioned(serving_fakes.FakePngCodec(), str(base)) == (
      str(base / "2"))


def test_load_errors_are_clear(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such export"):
    export.load_exported(str(tmp_path / "missing"))
  empty = tmp_path / "empty"
  (empty / "5" / "variables").mkdir(parents=True)  # Incomplete version.
  with pytest.raises(export.ExportError, match="no versions under"):
    export.load_exported(str(empty))

  class Other(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def double(self, x):
      return 2 * x

  other = Other()
  tf.saved_model.save(other, str(tmp_path / "other" / "1"),
                      signatures={"serving_default": other.double})
  with pytest.raises(export.ExportError,
                     match="not a DCAE export .no metadata.json"):
    export.load_exported(str(tmp_path / "other"))
  # With a metadata.json it loads, and is refused for its signatures.
  (tmp_path / "other" / "1" / export.METADATA_FILENAME).write_text("{}")
  with pytest.raises(export.ExportError,
                     match="not a DCAE export .no 'compress' signature"):
    export.load_exported(str(tmp_path / "other"))
