"""dcae_tf.runtime.graph_cache: the store of optimised graphs, and exactness.

The store's rules are tested with the file TensorFlow would write (written
by the test into the staging directory TensorFlow is pointed at). Exactness
is tested on real exports: bitstreams and images are the same byte for
byte with the store off, filling it and reading it. The store is a choice:
`ExportedCodec` uses none unless given one (it then writes nothing and
leaves the environment alone); the command lines' --graph_cache flags say
where, or "off".
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dcae_tf.runtime import graph_cache

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO_ROOT, "saved_models", "dcae-small-mse-0018")
TF_FILE = "_-1___inference_signature_wrapper_compress_1_3"
DIGEST = "ab" * 32
CONFIG = b"config"
SUBPROCESS_TIMEOUT_SECONDS = 900


def _first_call(cache, content=b"optimised graph", digest=DIGEST,
                config=CONFIG):
  """A first call that writes `content` where TensorFlow would (None: the
  graph was under TensorFlow's threshold); returns (state, what the
  staging directory held when the call started)."""
  with cache.first_call(digest, config, "compress") as state:
    staging = os.environ.get(graph_cache.TF_CACHE_ENV)
    seen = {n: open(os.path.join(staging, n), "rb").read()
            for n in os.listdir(staging)} if staging else {}
    if staging and content is not None and not seen:
      with open(os.path.join(staging, TF_FILE), "wb") as f:
        f.write(content)
  return state, seen


def _entries(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, files in os.walk(root) for f in files)


def test_miss_then_hit_hands_tensorflow_the_same_file(tmp_path):
  cache = graph_cache.GraphCache(str(tmp_path))
  previous = os.environ.get(graph_cache.TF_CACHE_ENV)
  assert _first_call(cache) == ("miss", {})
  assert os.environ.get(graph_cache.TF_CACHE_ENV) == previous  # restored
  entry, = {os.path.dirname(p) for p in _entries(tmp_path)}
  assert sorted(os.listdir(tmp_path / entry)) == sorted(
      [TF_FILE, graph_cache.MANIFEST_FILENAME])
  assert _first_call(cache) == ("hit", {TF_FILE: b"optimised graph"})
  # No staging directory is left behind.
  assert not [n for n in os.listdir(tmp_path)
              if n.startswith(graph_cache.STAGING_PREFIX)]


def test_nothing_is_stored_under_tensorflows_threshold(tmp_path):
  cache = graph_cache.GraphCache(str(tmp_path))
  assert _first_call(cache, content=None)[0] == "miss"
  assert _entries(tmp_path) == []


def test_other_exports_configs_and_machines_find_no_entry(tmp_path,
                                                          monkeypatch):
  cache = graph_cache.GraphCache(str(tmp_path))
  _first_call(cache)
  assert _first_call(cache, digest="cd" * 32)[0] == "miss"
  assert _first_call(cache, config=b"other grappler options")[0] == "miss"
  graph_cache.machine_key.cache_clear()
  monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0" if os.environ.get(
      "TF_ENABLE_ONEDNN_OPTS") != "0" else "1")
  try:
    assert _first_call(cache)[0] == "miss"
  finally:
    graph_cache.machine_key.cache_clear()


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest", "delete"])
def test_damaged_entry_is_ignored_removed_and_stored_again(tmp_path, damage):
  cache = graph_cache.GraphCache(str(tmp_path))
  _first_call(cache)
  entry = tmp_path / os.path.dirname(_entries(tmp_path)[0])
  graph = entry / TF_FILE
  if damage == "flip":
    data = bytearray(graph.read_bytes())
    data[3] ^= 1
    graph.write_bytes(bytes(data))
  elif damage == "truncate":
    graph.write_bytes(graph.read_bytes()[:5])
  elif damage == "manifest":
    (entry / graph_cache.MANIFEST_FILENAME).write_text("{not json")
  else:
    graph.unlink()
  # TensorFlow never sees the damaged file: it optimises afresh.
  assert _first_call(cache, content=b"optimised again") == ("miss", {})
  assert _first_call(cache) == ("hit", {TF_FILE: b"optimised again"})


def test_a_lost_race_keeps_the_first_entry(tmp_path):
  cache = graph_cache.GraphCache(str(tmp_path))
  other = tmp_path / "other_process"
  other.mkdir()
  (other / TF_FILE).write_bytes(b"first writer")
  with cache.first_call(DIGEST, CONFIG, "compress") as state:
    assert state == "miss"
    staging = os.environ[graph_cache.TF_CACHE_ENV]
    with open(os.path.join(staging, TF_FILE), "wb") as f:
      f.write(b"second writer")
    # Another process stores the same entry while this call runs.
    assert cache._publish(  # pylint: disable=protected-access
        cache._entry(  # pylint: disable=protected-access
            graph_cache.entry_key(DIGEST, CONFIG), "compress"), str(other))
  assert _first_call(cache)[1] == {TF_FILE: b"first writer"}


def test_unusable_store_runs_uncached(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  cache = graph_cache.GraphCache(str(blocker / "store"))
  assert _first_call(cache)[0] == "off"


def test_store_location_and_off_switch(monkeypatch, tmp_path):
  monkeypatch.setenv(graph_cache.CACHE_ENV, "off")
  assert graph_cache.default_cache() is None
  monkeypatch.setenv(graph_cache.CACHE_ENV, str(tmp_path))
  assert graph_cache.default_cache().root == str(tmp_path)
  monkeypatch.delenv(graph_cache.CACHE_ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert graph_cache.default_root() == str(tmp_path / "xdg" / "dcae_tf" /
                                           "graphs")
  # A --graph_cache value: a directory, else none.
  for off in (None, "", " ", "off", "OFF", "0", "none", "false"):
    assert graph_cache.from_setting(off) is None, off
  assert graph_cache.from_setting(str(tmp_path)).root == str(tmp_path)
  # Naming a store creates nothing: its first call does.
  graph_cache.GraphCache(tmp_path / "unused")
  assert not (tmp_path / "unused").exists()


def test_command_lines_graph_cache_flags(monkeypatch, tmp_path):
  """dcae-tf: on by default ($DCAE_TF_GRAPH_CACHE, else the user's cache
  directory), --graph_cache off disables it; dcae-tf-server: off unless
  --graph_cache or the variable names a directory."""
  # pylint: disable=import-outside-toplevel
  from dcae_tf.cli import args as cli_args
  from dcae_tf.serving import server
  monkeypatch.delenv(graph_cache.CACHE_ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  server_argv = ["dcae-tf-server", "--model_base_path", str(tmp_path)]
  assert (cli_args.parse_args(["dcae-tf", "models"]).graph_cache ==
          graph_cache.user_root())
  assert cli_args.parse_args(
      ["dcae-tf", "--graph_cache", "off", "models"]).graph_cache == "off"
  assert cli_args.parse_args(
      ["dcae-tf", "models", "--graph_cache", str(tmp_path)]).graph_cache == (
          str(tmp_path))
  assert graph_cache.is_disabled(server.parse_args(server_argv).graph_cache)
  monkeypatch.setenv(graph_cache.CACHE_ENV, str(tmp_path / "env"))
  assert cli_args.parse_args(["dcae-tf", "models"]).graph_cache == str(
      tmp_path / "env")
  assert server.parse_args(server_argv).graph_cache == str(tmp_path / "env")
  assert server.parse_args(
      server_argv + ["--graph_cache", "off"]).graph_cache == "off"
  monkeypatch.setenv(graph_cache.CACHE_ENV, "off")
  assert graph_cache.is_disabled(
      cli_args.parse_args(["dcae-tf", "models"]).graph_cache)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
  """(the tiny codec, its export's version directory): one export for the
  tests below."""
  # pylint: disable=import-outside-toplevel
  from dcae_tf import export
  from tests import serving_fakes
  codec = serving_fakes.make_codec("tiny")
  return codec, export.save_versioned(
      codec, str(tmp_path_factory.mktemp("export") / "tiny"))


@pytest.mark.slow  # An export and three loads: minutes on a loaded 2-core CPU.
def test_tiny_export_is_exact_without_filling_and_reading_the_store(
    tmp_path, tiny_export):
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  from dcae_tf import export
  from dcae_tf.codec.warmup import warmup_image
  codec, version_dir = tiny_export
  image = warmup_image()
  store = graph_cache.GraphCache(str(tmp_path / "store"))
  outputs = []
  for cache in (None, store, store):  # off, filling, reading (if filled)
    loaded = export.ExportedCodec(version_dir, graph_cache=cache)
    data = loaded.compress(image)
    outputs.append((data, loaded.decompress(data)))
  reference = codec.compress(tf.constant(image)).numpy()
  for data, decoded in outputs:
    assert data == reference
    np.testing.assert_array_equal(decoded, outputs[0][1])


@pytest.mark.slow  # Two loads of the tiny export.
def test_the_store_is_off_unless_asked_for(tmp_path, tiny_export,
                                           monkeypatch):
  """`ExportedCodec(path)` writes nothing anywhere and never touches the
  environment, whatever the places a store could default to; the store
  is used only when passed, and gives the same bytes."""
  # pylint: disable=import-outside-toplevel
  from dcae_tf import export
  from dcae_tf.codec.warmup import warmup_image
  _, version_dir = tiny_export
  places = {name: tmp_path / name for name in ("home", "xdg", "env", "cwd")}
  for place in places.values():
    place.mkdir()
  monkeypatch.setenv("HOME", str(places["home"]))
  monkeypatch.setenv("XDG_CACHE_HOME", str(places["xdg"]))
  # The command line's variable is not the Python API's switch.
  monkeypatch.setenv(graph_cache.CACHE_ENV, str(places["env"]))
  monkeypatch.delenv(graph_cache.TF_CACHE_ENV, raising=False)
  monkeypatch.chdir(places["cwd"])
  export_files = _entries(version_dir)
  image = warmup_image()
  default = export.ExportedCodec(version_dir)
  data = default.compress(image)
  decoded = default.decompress(data)
  assert {k: default.signatures[k].cache_state
          for k in ("compress", "decompress")} == {
              "compress": None, "decompress": None}
  for name, place in places.items():
    assert not os.listdir(place), (name, os.listdir(place))
  assert _entries(version_dir) == export_files
  assert graph_cache.TF_CACHE_ENV not in os.environ
  with pytest.raises(TypeError, match="GraphCache"):
    export.ExportedCodec(version_dir, graph_cache=str(tmp_path / "store"))
  # Asked for: the store is used, and the bytes are those made without it.
  chosen = export.ExportedCodec(
      version_dir, graph_cache=graph_cache.GraphCache(tmp_path / "store"))
  assert chosen.compress(image) == data
  np.testing.assert_array_equal(chosen.decompress(data), decoded)
  assert chosen.signatures["compress"].cache_state in ("hit", "miss")
  assert os.path.isdir(tmp_path / "store")
  assert graph_cache.TF_CACHE_ENV not in os.environ  # restored


# Compresses and decompresses one image with a shipped export in a fresh
# process; prints the cache states and writes the bitstream and image.
SHIPPED_SCRIPT = """
import json, sys
import numpy as np
from dcae_tf.runtime import exported, graph_cache
from dcae_tf.codec.warmup import warmup_image
# The store dcae-tf would use: $DCAE_TF_GRAPH_CACHE (a directory or "off").
codec = exported.ExportedCodec(sys.argv[1],
                               graph_cache=graph_cache.default_cache())
image = np.tile(warmup_image(), (2, 3, 1))
data = codec.compress(image)
open(sys.argv[2] + ".dcae", "wb").write(data)
np.save(sys.argv[2] + ".npy", codec.decompress(data))
print(json.dumps({k: codec.signatures[k].cache_state
                  for k in ("compress", "decompress")}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHIPPED), reason="no shipped model")
def test_shipped_export_is_exact_cold_cached_and_fresh(tmp_path):
  """Graphs optimised over 3 s are stored: a fresh process reads them and
  its bitstream and image are those of a process without the store."""
  states = {}
  for run, store in (("off", "off"), ("fill", tmp_path / "store"),
                     ("read", tmp_path / "store")):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env[graph_cache.CACHE_ENV] = str(store)
    proc = subprocess.run(
        [sys.executable, "-c", SHIPPED_SCRIPT, SHIPPED, str(tmp_path / run)],
        env=env, capture_output=True, text=True, check=False,
        timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    states[run] = json.loads(proc.stdout.strip().splitlines()[-1])
  assert states["off"] == {"compress": None, "decompress": None}
  assert states["read"]["compress"] == "hit", states
  for run in ("fill", "read"):
    assert ((tmp_path / f"{run}.dcae").read_bytes() ==
            (tmp_path / "off.dcae").read_bytes())
    np.testing.assert_array_equal(np.load(tmp_path / f"{run}.npy"),
                                  np.load(tmp_path / "off.npy"))
