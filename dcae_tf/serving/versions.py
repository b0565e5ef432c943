"""The served versions of a model base path: loaded whole, swapped atomically.

Like TF Serving, the server serves the newest version under the base path
and picks up new versions while running: a poller loads a new version
completely before swapping it in, and never serves a `.tmp*` directory, a
directory without saved_model.pb, or one that fails to load.
"""
import dataclasses
import os
import threading

from absl import logging

from dcae_tf.runtime import layout
from dcae_tf.runtime.exported import ExportedCodec

# SavedModel's internal signatures (e.g. "__saved_model_init_op").
INTERNAL_SIGNATURE_PREFIX = "__"


@dataclasses.dataclass(frozen=True)
class Servable:
  """One loaded version: what a request is served from, start to end."""
  version: int
  codec: ExportedCodec

  @property
  def signature_defs(self):
    return {k: v for k, v in self.codec.signature_defs.items()
            if not k.startswith(INTERNAL_SIGNATURE_PREFIX)}


class VersionWatcher:
  """Keeps the newest loadable version of a model base path loaded.

  `poll()` loads the candidate completely, then swaps the reference under a
  lock; requests hold the Servable they started with, so a swap never
  disturbs them. Versions that are incomplete (no saved_model.pb yet) or
  fail to load are skipped with one log line, and retried only when their
  saved_model.pb changes. Each version is loaded with `graph_cache` (a
  `runtime.graph_cache.GraphCache`, or None for no store).
  """

  def __init__(self, model_base_path, poll_seconds, on_swap,
               graph_cache=None):
    self.model_base_path = model_base_path
    self._graph_cache = graph_cache
    self.poll_seconds = poll_seconds
    self._on_swap = on_swap
    self._lock = threading.Lock()
    self._current = None
    self._skipped = {}  # version -> saved_model.pb mtime (None: incomplete)
    self._stop = threading.Event()
    self._thread = None

  @property
  def current(self):
    with self._lock:
      return self._current

  def _skip(self, version, stamp, reason):
    if self._skipped.get(version, ()) != stamp:
      logging.warning("not serving version %d of %s: %s", version,
                      self.model_base_path, reason)
    self._skipped[version] = stamp

  def poll(self):
    """Loads and swaps in the newest good version if it is not served yet."""
    current = self.current
    for version in reversed(layout.list_versions(self.model_base_path)):
      if current is not None and version == current.version:
        return False
      version_dir = os.path.join(self.model_base_path, str(version))
      try:
        stamp = os.stat(os.path.join(version_dir,
                                     layout.SAVED_MODEL_FILENAME)).st_mtime_ns
      except OSError:
        self._skip(version, None,
                   f"no {layout.SAVED_MODEL_FILENAME} (incomplete)")
        continue
      if self._skipped.get(version, ()) == stamp:
        continue
      try:
        codec = ExportedCodec(version_dir, graph_cache=self._graph_cache)
        codec.warm_up()  # As TF Serving does with the warm-up file.
      except Exception as e:  # pylint: disable=broad-except
        self._skip(version, stamp, f"failed to load: {e}")
        continue
      servable = Servable(version=version, codec=codec)
      with self._lock:
        self._current = servable
      self._on_swap(servable)
      return True
    return False

  def _run(self):
    while not self._stop.wait(self.poll_seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        logging.exception("version poll of %s failed", self.model_base_path)

  def start(self):
    self._thread = threading.Thread(target=self._run, name="version-poller",
                                    daemon=True)
    self._thread.start()

  def stop(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
