"""Settings for the whole test session (and the processes it starts)."""
import os

import pytest

from dcae_tf.runtime import graph_cache

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session", autouse=True)
def graph_store(tmp_path_factory):
  """The `dcae-tf` commands the tests run keep their optimised graphs in
  one store of this run (`$DCAE_TF_GRAPH_CACHE`), shared by the xdist
  workers and the processes they start, instead of the user's cache: a
  test run writes nothing under the home directory, and a command that
  loads an export another test's command has used starts from its graphs,
  as a user's second command does. Tests of the store's default set their
  own environment."""
  base = tmp_path_factory.getbasetemp()
  # Under xdist each worker's base is a directory of the run's one.
  shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  root = shared / "graph_store"
  root.mkdir(exist_ok=True)
  previous = os.environ.get(graph_cache.CACHE_ENV)
  os.environ[graph_cache.CACHE_ENV] = str(root)
  yield root
  if previous is None:
    del os.environ[graph_cache.CACHE_ENV]
  else:
    os.environ[graph_cache.CACHE_ENV] = previous
