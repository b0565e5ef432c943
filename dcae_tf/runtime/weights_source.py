"""An export as a source of weights: the model of a SavedModel, float32.

Each model's weights are kept once, in its export: a fine-tune starts from
an export (`bin/train.py --init_from saved_models/NAME`) and a re-export
(another format version, other signatures) reads it (`bin/export.py
--checkpoint saved_models/NAME`), so no second copy of the weights lives in
a weights directory.

An export's `variables/` is a TF2 checkpoint of the export module, whose
`codec_variables` list is `DCAECodec.variables` in order (`runtime.writer`).
A codec of a fresh model of the export's preset and storage dtype
(`weight_dtype`) has the same list; it is read by position, checked by
shape. The weights are then cast to float32: stored float16 weights are
float32 values, so exporting the result as float16 again reproduces the
weights bit for bit, and, with the code that made the export, its
fingerprint (`meta["same_fingerprint"]`). An export of older code has
another fingerprint although its weights are the same: the fingerprint
also covers the variables' names and the numerics version.
"""
import os

import tensorflow as tf

from dcae_tf import config as config_lib
from dcae_tf.codec import core
from dcae_tf.codec import numerics
from dcae_tf.codec import metadata as metadata_lib
from dcae_tf.codec import weights
from dcae_tf.runtime import layout
from dcae_tf.runtime import writer

# What the codec's metadata says of the model that a model.json also says.
MODEL_KEYS = ("preset", "lmbda", "metric") + metadata_lib.TRAINING_METADATA


def is_export(path):
  """Whether `path` is an export's version directory or model folder."""
  return layout.is_complete(path) or bool(layout.complete_versions(path))


def load_model(path):
  """(model, meta) of an export (model folder: its newest version).

  `model` is a built float32 `DCAE`; `meta` holds what a model directory's
  model.json would (preset, config, lmbda, metric, training keys), plus
  the export's `weight_dtype` and `version_dir`, and `same_fingerprint`:
  whether these weights, stored as the export stores them, give this
  code the export's fingerprint.
  """
  version_dir = layout.newest_version_dir(path)
  exported = layout.read_metadata(version_dir)
  if "preset" not in exported:
    raise layout.ExportError(f"{version_dir} is not a DCAE export (its "
                             "metadata names no preset)")
  config = (config_lib.DCAEConfig.from_dict(exported["config"])
            if "config" in exported else config_lib.get_config(
                exported["preset"]))
  dtype = exported.get("weight_dtype", metadata_lib.DEFAULT_WEIGHT_DTYPE)
  stored = weights.new_model(config, dtype)
  variables = list(core.DCAECodec(stored).variables)
  prefix = os.path.join(version_dir, layout.VARIABLES_PREFIX)
  reader = tf.train.load_checkpoint(prefix)
  saved = reader.get_variable_to_shape_map()
  for i, v in enumerate(variables):
    key = f"{writer.VARIABLES_ATTRIBUTE}/{i}/.ATTRIBUTES/VARIABLE_VALUE"
    # (TFC's table variables have an unknown length.)
    if key not in saved or not v.shape.is_compatible_with(saved[key]):
      raise layout.ExportError(
          f"{version_dir}: its variables are not those of a {config.name!r} "
          f"{dtype} codec (variable {i}: {saved.get(key)} vs {v.shape})")
    v.assign(tf.cast(reader.get_tensor(key), v.dtype))
  same_fingerprint = (numerics.weights_fingerprint(stored) ==
                      exported.get("fingerprint"))
  model = weights.as_float32(stored)
  meta = {k: exported[k] for k in MODEL_KEYS if k in exported}
  meta.update(config=config.to_dict(), weight_dtype=dtype,
              version_dir=version_dir, same_fingerprint=same_fingerprint)
  return model, meta
