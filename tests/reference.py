"""Reference-parity fixtures: the official model's tensors and its weights.

The fixture pair (npz + json) in tests/data can be swapped for another seed
and crop; everything is read from the json. Weights are rebuilt from the
documented rule of ../shared/reference/README.md (each value a function of
seed, key and shape), implemented here independently.
"""
import glob
import json
import os
import zlib

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "data")
MANIFEST = os.path.join(DATA, "dcae_state_dict_manifest.json")


def fixture_paths():
  """(json, npz) of the fixture pair in tests/data."""
  jsons = sorted(p for p in glob.glob(os.path.join(DATA, "dcae_seed*.json")))
  if len(jsons) != 1:
    raise RuntimeError(f"expected one fixture json in {DATA}, got {jsons}")
  return jsons[0], jsons[0][:-len(".json")] + ".npz"


def load_fixture():
  json_path, npz_path = fixture_paths()
  with open(json_path) as f:
    meta = json.load(f)
  arrays = dict(np.load(npz_path))
  return meta, arrays


def load_manifest():
  with open(MANIFEST) as f:
    return json.load(f)


def _rng(seed, key):
  return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def reference_value(seed, key, shape):
  """The documented weight rule for one learned parameter."""
  rng = _rng(seed, key)
  shape = tuple(shape)
  leaf = key.split(".")[-1]

  def uniform(bound, center=0.):
    return center + rng.uniform(-bound, bound, size=shape)

  if key == "dt":
    out = rng.standard_normal(size=shape)
  elif key == "entropy_bottleneck.quantiles":
    out = np.array([-10., 0., 10.]) + uniform(.5)
  elif key.startswith("entropy_bottleneck."):
    out = uniform(1.)
  elif leaf == "relative_position_params":
    out = .02 * rng.standard_normal(size=shape)
  elif leaf == "weight" and len(shape) > 1:
    out = uniform(1. / np.sqrt(np.prod(shape[1:])))
  elif leaf in ("weight", "scale"):
    out = uniform(.1, center=1.)
  elif leaf == "bias":
    out = uniform(.05)
  else:
    raise KeyError(f"the weight rule has no case for {key!r}")
  return out.astype(np.float32)


def reference_state_dict(seed, manifest=None):
  from dcae_tf import convert  # pylint: disable=import-outside-toplevel
  manifest = manifest or load_manifest()
  return {k: reference_value(seed, k, s) for k, s in manifest.items()
          if not convert.is_derived_buffer(k)}
