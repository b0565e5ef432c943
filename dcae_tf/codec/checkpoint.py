"""Model directories: a TF checkpoint of the model plus `model.json`.

Training, conversion of official weights and export all meet here. The model
is always saved under the checkpoint key `model`, so a training checkpoint
(which also holds the optimizer and step) restores into a bare model too.
"""
import json
import os

import tensorflow as tf

from dcae_tf import config as config_lib
from dcae_tf import losses
from dcae_tf.model import DCAE

META_FILE = "model.json"


def write_meta(directory, meta):
  """Writes model.json atomically."""
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, META_FILE)
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def read_meta(directory):
  path = os.path.join(directory, META_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{directory} is not a model directory "
                            f"(no {META_FILE})")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def make_meta(config, lmbda=None, metric="mse", step=0, **extra):
  if metric not in losses.METRICS:
    raise ValueError(f"metric must be one of {losses.METRICS}, "
                     f"not {metric!r}")
  return dict(preset=config.name, config=config.to_dict(), lmbda=lmbda,
              metric=metric, step=int(step), **extra)


def model_from_meta(meta):
  return DCAE(config_lib.DCAEConfig.from_dict(meta["config"])).build_weights()


def save_model(model, directory, meta):
  """Saves model weights (key `model`) and meta; returns the prefix."""
  write_meta(directory, meta)
  ckpt = tf.train.Checkpoint(model=model)
  manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=1)
  return manager.save(checkpoint_number=meta.get("step", 0))


def load_model(directory):
  """Returns (model, meta) from the newest checkpoint in `directory`."""
  meta = read_meta(directory)
  latest = tf.train.latest_checkpoint(directory)
  if latest is None:
    raise FileNotFoundError(f"no checkpoint in {directory}")
  model = model_from_meta(meta)
  status = tf.train.Checkpoint(model=model).restore(latest)
  status.expect_partial().assert_existing_objects_matched()
  return model, meta
