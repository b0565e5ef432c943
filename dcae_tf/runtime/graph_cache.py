"""A per-machine cache of a signature's optimised graph: cold start in seconds.

A signature's first call spends most of a fresh process's time before any
pixel is computed: TensorFlow inlines the signature's functions into one
graph (about 15 k nodes for `compress` of the small preset) and runs
Grappler on it, twice over (docs/performance.md, "Cold start"). TensorFlow
2.14 can keep that optimised graph in a file (`OptimizedFunctionGraph`,
written when optimising took at least `TF_CACHE_THRESHOLD_SECONDS`, read
instead of optimising when its file exists), in the directory named by the
environment variable `TF_GRAPH_CACHING`. It names the file by the function's
name and node count only, writes it in place (a reader can see half of
it), and parses whatever it reads without checking it, so it is not used
as it is. `GraphCache` puts it behind a store that is safe to share:

* Keyed. An entry belongs to one export (the SHA-256 of its
  `saved_model.pb`, which holds every function and constant, the
  fingerprint included), one TensorFlow build, one CPU (its feature flags
  and core count: kernels and fusions chosen at optimisation differ by CPU)
  and the call's configuration (Grappler options). Anything else finds no
  entry: a stale entry is never read, only left behind.
* Written atomically. TensorFlow writes into a private staging directory;
  its files are then copied with a manifest (their SHA-256 and sizes) into
  a new directory that is renamed into place in one step. A concurrent
  writer that loses the race discards its copy.
* Verified on read. An entry's files are read, checked against the
  manifest and copied into a fresh staging directory that TensorFlow reads;
  a damaged or incomplete entry is removed and the signature is optimised
  as if there were none (and cached again).

Only the graph TensorFlow optimised is stored, never anything derived: a
cached call runs the very graph a fresh call would have optimised, on the
same kernels, so a bitstream made cold, cached or fresh is the same byte
for byte (tests/test_graph_cache.py).

The store is used only where it is asked for: `ExportedCodec(path,
graph_cache=GraphCache(directory))` in Python (the default, None, writes
nothing anywhere), `--graph_cache DIR|off` on the command line (on by
default there, at `default_root()`) and on the model server (off by
default). `from_setting` turns such a flag's value into a store.

One effect reaches beyond the call while it runs: TensorFlow 2.14 reads
the cache directory only from the process-wide environment variable
`TF_GRAPH_CACHING` (it has no other switch), so a first call through the
store sets it, under `_ENV_LOCK`, and restores it after; first calls
through any store in the process take turns on that lock, and a thread
that starts optimising another function meanwhile (one not called through
the store) would see the variable too.
"""
import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import tempfile
import threading

# The default of the command lines' --graph_cache (dcae-tf, dcae-tf-server);
# the Python API never reads it.
CACHE_ENV = "DCAE_TF_GRAPH_CACHE"
OFF = "off"
# Flag / environment values that mean "no store".
DISABLED_VALUES = (OFF, "0", "none", "false")
# Under $XDG_CACHE_HOME (else ~/.cache): the command line's default store.
USER_CACHE_SUBDIR = os.path.join("dcae_tf", "graphs")
TF_CACHE_ENV = "TF_GRAPH_CACHING"
# TensorFlow's own rule (optimize_function_graph_utils.h): it writes a graph
# only when optimising it took at least this long, so small graphs (the
# tiny preset's on a fast machine) are never cached, and need not be.
TF_CACHE_THRESHOLD_SECONDS = 3
MANIFEST_FILENAME = "manifest.json"
STAGING_PREFIX = ".staging-"
# Layout of the store: ROOT/<entry key>/<signature>/{files, manifest}.
KEY_HEX_DIGITS = 32
CPUINFO_PATH = "/proc/cpuinfo"
# What TensorFlow reads of the environment when it optimises and picks
# kernels; a different value is a different entry.
TF_ENV_KEYS = ("TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTEROP_THREADS",
               "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")
_ENV_LOCK = threading.Lock()


def is_disabled(setting):
  """Whether a --graph_cache / $DCAE_TF_GRAPH_CACHE value means no store."""
  value = "" if setting is None else os.fspath(setting).strip().lower()
  return not value or value in DISABLED_VALUES


def user_root():
  """The user's cache directory for the store (XDG's rule)."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(base, USER_CACHE_SUBDIR)


def default_root():
  """dcae-tf's store: $DCAE_TF_GRAPH_CACHE, else `user_root()`; None when
  the variable disables it. (A Python caller passes its store to
  `ExportedCodec` instead.)"""
  value = os.environ.get(CACHE_ENV)
  if value is not None:
    return None if is_disabled(value) else value
  return user_root()


def _cpu_features():
  """The CPU's model name and feature flags (Linux), else the platform's
  description."""
  try:
    with open(CPUINFO_PATH, encoding="utf-8", errors="replace") as f:
      lines = f.read().splitlines()
  except OSError:
    return platform.processor() or platform.machine()
  wanted = ("model name", "flags")
  found = {}
  for line in lines:
    key, _, value = line.partition(":")
    key = key.strip()
    if key in wanted and key not in found:
      found[key] = " ".join(sorted(value.split()))
  return repr(sorted(found.items()))


@functools.lru_cache(maxsize=None)
def machine_key():
  """What, beside the export, decides the optimised graph on this machine."""
  # Deliberately lazy: the command line reads the store's location (its
  # --graph_cache default) before it imports TensorFlow.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  parts = [
      tf.version.VERSION, tf.version.GIT_VERSION,
      repr(sorted(tf.sysconfig.get_build_info().items())),
      platform.machine(), _cpu_features(), str(os.cpu_count()),
      repr([(k, os.environ.get(k)) for k in TF_ENV_KEYS]),
  ]
  return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def entry_key(export_digest, config_bytes):
  """The store key of an export's graphs under a call configuration."""
  h = hashlib.sha256(machine_key().encode())
  h.update(export_digest.encode())
  h.update(config_bytes)
  return h.hexdigest()[:KEY_HEX_DIGITS]


def _sha256_file(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _manifest(directory):
  """{file name: [size, sha256]} of the regular files in `directory`."""
  out = {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if os.path.isfile(path) and name != MANIFEST_FILENAME:
      out[name] = [os.path.getsize(path), _sha256_file(path)]
  return out


class GraphCache:
  """The store under `root` (see module doc). Thread-safe; shared by
  processes.

  Creating one touches nothing: `root` is made at the first first call
  that uses it.
  """

  def __init__(self, root):
    self.root = os.fspath(root)

  def _entry(self, key, signature):
    return os.path.join(self.root, key, signature)

  def _restore(self, entry, staging):
    """Copies a verified entry into `staging`; False (and removes the
    entry) if it is damaged."""
    try:
      with open(os.path.join(entry, MANIFEST_FILENAME), encoding="utf-8") as f:
        manifest = json.load(f)
      if not isinstance(manifest, dict) or not manifest:
        raise ValueError("empty manifest")
      for name, (size, digest) in manifest.items():
        if os.path.basename(name) != name:
          raise ValueError(f"bad file name {name!r}")
        with open(os.path.join(entry, name), "rb") as f:
          data = f.read()
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
          raise ValueError(f"{name} does not match its manifest")
        with open(os.path.join(staging, name), "wb") as f:
          f.write(data)
      return True
    except (OSError, ValueError, TypeError) as e:
      del e  # Damaged or half-deleted: optimise afresh, cache again.
      shutil.rmtree(entry, ignore_errors=True)
      for name in os.listdir(staging):
        os.remove(os.path.join(staging, name))
      return False

  def _publish(self, entry, staging):
    """Stores what TensorFlow wrote into `staging` as `entry`, atomically."""
    manifest = _manifest(staging)
    if not manifest:
      return False  # Optimising was under TensorFlow's threshold.
    parent = os.path.dirname(entry)
    os.makedirs(parent, exist_ok=True)
    building = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
    try:
      for name in manifest:
        shutil.copyfile(os.path.join(staging, name),
                        os.path.join(building, name))
      with open(os.path.join(building, MANIFEST_FILENAME), "w",
                encoding="utf-8") as f:
        json.dump(manifest, f)
      # A complete directory appears in one step, or not at all when
      # another process stored the same entry first.
      os.rename(building, entry)
      return True
    except OSError:
      return False
    finally:
      shutil.rmtree(building, ignore_errors=True)

  @contextlib.contextmanager
  def first_call(self, export_digest, config_bytes, signature):
    """Around a signature's first call: TensorFlow reads its optimised graph
    from the store if there, else optimises and the result is stored.

    Yields "hit", "miss" or "off" (the store is unusable: the call runs
    as without it).
    """
    try:
      os.makedirs(self.root, exist_ok=True)
      staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root)
    except OSError:
      yield "off"
      return
    entry = self._entry(entry_key(export_digest, config_bytes), signature)
    try:
      state = "hit" if (os.path.isdir(entry)
                        and self._restore(entry, staging)) else "miss"
      with _ENV_LOCK:
        previous = os.environ.get(TF_CACHE_ENV)
        os.environ[TF_CACHE_ENV] = staging
        try:
          yield state
        finally:
          if previous is None:
            del os.environ[TF_CACHE_ENV]
          else:
            os.environ[TF_CACHE_ENV] = previous
      if state == "miss":
        self._publish(entry, staging)
    finally:
      shutil.rmtree(staging, ignore_errors=True)


def from_setting(setting):
  """The store a --graph_cache value names: a directory, or None for
  "off" (and None / empty)."""
  return None if is_disabled(setting) else GraphCache(setting)


def default_cache():
  """The command line's store (`default_root()`), or None when disabled."""
  return from_setting(default_root())
