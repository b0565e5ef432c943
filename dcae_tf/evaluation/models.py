"""Learned codecs under test: exported DCAE SavedModels (or any codec object).

A codec object has `.compress(uint8 [H, W, 3]) -> bytes`,
`.decompress(bytes) -> uint8 [H, W, 3]` and `.metadata` (a dict with at least
some of name, preset, lmbda, metric); `dcae_tf.export.load_exported(path)`
returns one for a SavedModel directory. An in-process `DCAECodec`, whose
tf.functions return tensors, works too. Its rate is measured from the real
bitstream, so container overhead is included as in a deployment.

Models become RD curves: models with the same preset and training metric
(different lambdas) are points of one curve, labelled "DCAE-<preset>-<metric>".
A label can be forced with "LABEL=path" on the command line.
"""
import os

import numpy as np

from dcae_tf.evaluation.anchors import ImageCodec
from dcae_tf.runtime import exported

# Separator of an optional curve label in a model spec: "LABEL=path".
LABEL_SEPARATOR = "="


def curve_label(metadata, fallback):
  """RD-curve label of a model: DCAE-<preset>-<metric>, else its name."""
  preset = metadata.get("preset")
  metric = metadata.get("metric")
  if preset:
    return f"DCAE-{preset}" + (f"-{metric}" if metric else "")
  return metadata.get("name") or fallback


def _numpy(value):
  """Tensor results of an in-process codec (DCAECodec) as numpy / bytes."""
  return value.numpy() if hasattr(value, "numpy") else value


def model_codec(codec, label=None, setting=None):
  """Wraps a codec object (compress/decompress/metadata) as an ImageCodec."""
  for attr in ("compress", "decompress"):
    if not callable(getattr(codec, attr, None)):
      raise ValueError(f"codec {codec!r} has no {attr}() method")
  metadata = dict(getattr(codec, "metadata", None) or {})
  path = getattr(codec, "path", None)
  fallback = (os.path.basename(os.path.normpath(path)) if path
              else metadata.get("name") or "model")
  lmbda = metadata.get("lmbda")
  return ImageCodec(
      curve=label or curve_label(metadata, fallback),
      setting=setting or fallback,
      kind="model",
      encode=lambda image: _numpy(codec.compress(image)),
      decode=lambda data: np.asarray(_numpy(codec.decompress(data))),
      quality=float(lmbda) if isinstance(lmbda, (int, float)) else None)


def parse_model_spec(spec):
  """'LABEL=path' -> (LABEL, path); 'path' -> (None, path)."""
  spec = os.fspath(spec)
  if LABEL_SEPARATOR in spec and not os.path.exists(spec):
    label, path = spec.split(LABEL_SEPARATOR, 1)
    return label or None, path
  return None, spec


def load_model_codec(spec):
  """Loads an exported model ('path' or 'LABEL=path') as an ImageCodec."""
  label, path = parse_model_spec(spec)
  if not os.path.isdir(path):
    raise ValueError(f"model directory {path!r} does not exist")
  try:
    codec = exported.load_exported(path)
  except Exception as e:  # pylint: disable=broad-except
    # SavedModel loading raises OSError, ValueError or tf.errors.OpError.
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise ValueError(f"cannot load exported model {path!r}: "
                     f"{type(e).__name__}: {first_line}") from None
  return model_codec(codec, label=label, setting=path)
