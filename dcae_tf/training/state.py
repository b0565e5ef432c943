"""What a run keeps in its model directory, and where its weights start.

A model directory (`dcae_tf.codec.checkpoint`) holds `model.json` and the TF
checkpoints `ckpt-<step>` (model, optimizer, step) written by a
CheckpointManager; rerunning with the same `model_path` resumes from the
newest one. TF writes each checkpoint to a temporary name and renames it,
and updates the `checkpoint` index file atomically after that, so a run
killed at any moment (kill -9) leaves the previous checkpoint intact; the
temporary files of an interrupted write are removed on restart.
"""
import dataclasses
import glob
import os
import shutil

from absl import logging
import tensorflow as tf

from dcae_tf import model as model_lib
from dcae_tf.codec import checkpoint as ckpt_lib
from dcae_tf.runtime import weights_source

CHECKPOINT_NAME = "ckpt"
# How much of a checkpoint mismatch an error message quotes.
MISMATCH_MESSAGE_CHARS = 300


def read_meta(model_path):
  """model.json of model_path, or None for a new model directory."""
  try:
    return ckpt_lib.read_meta(model_path)
  except FileNotFoundError:
    return None


def clean_partial_checkpoints(model_path):
  """Removes temp files of a checkpoint write interrupted by a kill."""
  for path in glob.glob(os.path.join(model_path, CHECKPOINT_NAME + "-*_temp*")):
    logging.info("removing partial checkpoint %s", path)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


@dataclasses.dataclass(frozen=True)
class Lineage:
  """What a model directory fixes for every later run in it."""
  # Where the weights first came from (the first run's --init_from).
  init_from: str
  precision: str


def check_model_dir(cfg):
  """The Lineage of cfg.model_path; refuses a run that would not fit it.

  A directory belongs to one preset, and keeps its precision (float16's
  loss-scaling optimizer has other checkpointed state than plain Adam).
  Another lambda or metric is a deliberate fine-tune: a warning.
  """
  meta = read_meta(cfg.model_path) or {}
  stored = meta.get("precision")
  if stored and cfg.precision not in (None, stored):
    raise ValueError(
        f"{cfg.model_path} was trained with precision {stored!r}; "
        f"this run asks for {cfg.precision!r} (use another "
        f"model_path, or --init_from to start from its weights)")
  if meta.get("preset") not in (None, cfg.preset):
    raise ValueError(
        f"{cfg.model_path} holds a {meta['preset']!r} model; this run "
        f"asks for preset {cfg.preset!r} (use another model_path, or "
        f"--init_from to start from its weights)")
  for key in ("lmbda", "metric"):
    if meta.get(key) not in (None, getattr(cfg, key)):
      logging.warning("%s: %s was %r, continuing with %r", cfg.model_path,
                      key, meta[key], getattr(cfg, key))
  return Lineage(init_from=meta.get("init_from") or cfg.init_from,
                 precision=stored or cfg.precision or model_lib.FLOAT32)


class TrainState:
  """Model, optimizer and step, and the checkpoints that hold them.

  The checkpoint's objects (`model`, `optimizer`, `step`) are the format
  of every run directory: a run resumes from any earlier run's checkpoint.
  """

  def __init__(self, model_config, precision, strategy, schedule, write_dir,
               keep_checkpoints, seed):
    # Same initial weights in every worker / run with the same seed.
    tf.keras.utils.set_random_seed(seed)
    with strategy.scope():
      self.model = model_lib.DCAE(model_config,
                                  precision=precision).build_weights()
      self.optimizer = tf.keras.optimizers.Adam(learning_rate=schedule)
      if precision == model_lib.MIXED_FLOAT16:
        # float16 gradients underflow without it; bfloat16 has float32's
        # exponent range and needs none.
        self.optimizer = tf.keras.mixed_precision.LossScaleOptimizer(
            self.optimizer)
      self.optimizer.build(self.model.trainable_variables)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, step=self.step)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, write_dir, max_to_keep=keep_checkpoints,
        checkpoint_name=CHECKPOINT_NAME)

  def restore(self, model_path, init_from, preset):
    """Resumes from model_path, else initializes from init_from, if given.

    Returns whether it resumed.
    """
    latest = tf.train.latest_checkpoint(model_path)
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info("resumed from %s at step %d", latest, int(self.step))
      if init_from:
        logging.info("ignoring init_from=%s: resuming %s", init_from,
                     model_path)
      return True
    if init_from and weights_source.is_export(init_from):
      init_from_export(self.model, init_from, preset)
    elif init_from:
      init_from_checkpoint(self.model, init_from, preset)
    return False

  def save(self, step):
    """Writes ckpt-<step>; returns its path.

    z is quantised around the prior's medians (the official model learns
    them with an auxiliary loss; TFC reads them off the density); they are
    refreshed first, so a checkpoint is always ready for the codec.
    """
    self.model.hyperprior.refresh_offset()
    return self.manager.save(checkpoint_number=step)


def init_from_checkpoint(model, path, preset):
  """Loads the model weights of the newest checkpoint of a model directory."""
  source = tf.train.latest_checkpoint(path)
  if not source:
    raise ValueError(f"init_from: no checkpoint in {path}")
  meta = read_meta(path) or {}
  if meta.get("preset") not in (None, preset):
    raise ValueError(f"init_from {path} is a {meta['preset']!r} "
                     f"model, not {preset!r}")
  status = tf.train.Checkpoint(model=model).restore(source)
  status.expect_partial()
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise ValueError(f"init_from {source}: weights do not match the "
                     f"{preset!r} model: "
                     f"{str(e)[:MISMATCH_MESSAGE_CHARS]}") from e
  logging.info("initialized model weights from %s", source)


def init_from_export(model, path, preset):
  """Loads the weights of an export (`runtime.weights_source`)."""
  try:
    source, meta = weights_source.load_model(path)
  except (OSError, ValueError) as e:
    raise ValueError(f"init_from {path}: {e}") from None
  if meta["preset"] != preset:
    raise ValueError(f"init_from {path} is a {meta['preset']!r} model, "
                     f"not {preset!r}")
  if len(model.variables) != len(source.variables):
    raise ValueError(f"init_from {path}: {len(source.variables)} variables, "
                     f"this model has {len(model.variables)}")
  for target, value in zip(model.variables, source.variables):
    if (target.name, target.shape) != (value.name, value.shape):
      raise ValueError(f"init_from {path}: variable {value.name} does not "
                       f"match {target.name} of this model")
    target.assign(value)
  logging.info("initialized model weights from export %s",
               meta["version_dir"])
