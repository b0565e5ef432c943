"""A training run: set up once, then a loop of one step and its hooks."""
import dataclasses
import os
import shutil
import sys
import tempfile

from absl import logging
import tensorflow as tf

from dcae_tf import config as config_lib
from dcae_tf import losses as losses_lib
from dcae_tf.codec import checkpoint as ckpt_lib
from dcae_tf.training import distribute
from dcae_tf.training import hooks as hooks_lib
from dcae_tf.training import pipeline
from dcae_tf.training import state as state_lib
from dcae_tf.training import step as step_lib
from dcae_tf.training.config import LR_DECAY_FACTOR


@dataclasses.dataclass
class TrainResult:
  """What a run ended with (for tests and tools)."""
  model: tf.keras.Model
  optimizer: tf.keras.optimizers.Optimizer
  step: int
  train_metrics: dict
  val_metrics: dict
  checkpoint: str
  # (step, validation metrics) of every validation of this run.
  val_history: list = dataclasses.field(default_factory=list)


class Trainer:
  """One training run: strategy, data, model, optimizer, checkpoints, logs.

  `train()` is `prepare()` (state, restore, data, the step), then the loop:
  the step, then its hooks (`make_hooks`), until `cfg.steps`.
  """

  def __init__(self, cfg, extra_hooks=()):
    """`extra_hooks` run after the run's own hooks (tests observe a run)."""
    cfg.validate()
    self.cfg = cfg
    self.extra_hooks = tuple(extra_hooks)
    self.model_config = config_lib.get_config(cfg.preset)
    self.strategy = distribute.make_strategy(cfg.strategy, cfg.logical_cpus)
    self.is_chief, self.task_type, self.task_id = distribute.worker_role(
        self.strategy)
    self.num_replicas = self.strategy.num_replicas_in_sync
    if cfg.batch_size % self.num_replicas:
      raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the "
                       f"{self.num_replicas} replicas")
    self.loss_fn = losses_lib.RateDistortionLoss(cfg.lmbda, cfg.metric)
    self.schedule = step_lib.StepDecay(cfg.learning_rate, cfg.decay_step)
    # Non-chief workers write their (identical) checkpoints to a temp dir.
    if self.is_chief:
      self.write_dir = cfg.model_path
    else:
      self.write_dir = tempfile.mkdtemp(
          prefix=f"dcae_{self.task_type}{self.task_id}_")
    tf.io.gfile.makedirs(self.write_dir)
    lineage = state_lib.check_model_dir(cfg)
    self.init_from, self.precision = lineage.init_from, lineage.precision
    self.data = pipeline.RunData(cfg)
    self.state = None
    self.train_iterator = self.val_dataset = None

  def meta(self, step):
    """model.json: the model, and how it was trained (for its model card)."""
    cfg = self.cfg
    return {"preset": cfg.preset,
            "config": self.model_config.to_dict(),
            "lmbda": cfg.lmbda, "metric": cfg.metric,
            "step": int(step),
            "train_data": (f"{cfg.train_glob or cfg.tfds_dataset}"
                           f" ({self.data.describe()})"),
            "crop_size": cfg.crop_size,
            "batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate,
            "precision": self.precision,
            "init_from": self.init_from}

  # -- the parts of a run, in the order train() calls them ------------------

  def create_state(self):
    self.state = state_lib.TrainState(
        self.model_config, self.precision, self.strategy, self.schedule,
        self.write_dir, self.cfg.keep_checkpoints, self.cfg.seed)
    return self.state

  @property
  def model(self):
    return self.state.model

  @property
  def optimizer(self):
    return self.state.optimizer

  def restore(self):
    """Resumes, or starts from init_from; returns the step it starts at."""
    if self.is_chief:
      state_lib.clean_partial_checkpoints(self.cfg.model_path)
    self.state.restore(self.cfg.model_path, self.cfg.init_from,
                       self.cfg.preset)
    return int(self.state.step)

  def make_datasets(self, start_step):
    self.train_iterator = self.data.train_iterator(self.strategy, start_step)
    self.val_dataset = self.data.validation_dataset(self.is_chief)

  def make_train_step(self):
    return step_lib.make_train_step(self.state, self.strategy, self.loss_fn,
                                    self.cfg)

  def save(self, step):
    path = self.state.save(step)
    if self.is_chief:
      ckpt_lib.write_meta(self.cfg.model_path, self.meta(step))
    return path

  def make_hooks(self, throughput):
    """The run's hooks: (hooks, validation hook or None)."""
    cfg = self.cfg
    show_bar = cfg.verbose and self.is_chief and sys.stdout.isatty()
    hooks = [
        hooks_lib.NonFiniteLossStop(self.state.manager),
        hooks_lib.Progress(
            cfg.log_every, hooks_lib.summary_writer(
                cfg.model_path, hooks_lib.TRAIN_SUMMARY_DIR, self.is_chief),
            self.schedule, throughput, show_bar)]
    validation = None
    if self.val_dataset is not None:
      validation = hooks_lib.Validation(
          self.state.model,
          step_lib.make_eval_step(self.state.model, self.loss_fn,
                                  cfg.crop_size),
          self.val_dataset, cfg.validate_every,
          hooks_lib.summary_writer(
              cfg.model_path, hooks_lib.VAL_SUMMARY_DIR, self.is_chief))
      hooks.append(validation)
    hooks.append(hooks_lib.Checkpointing(
        self.save, cfg.checkpoint_every,
        lambda: bool(self.state.manager.latest_checkpoint)))
    return hooks + list(self.extra_hooks), validation

  # -- the run ----------------------------------------------------------------

  def prepare(self):
    """Everything before the loop; returns (start step, train step).

    The train step is a tf.function of `self.train_iterator` (a benchmark
    calls it as the loop does, to time the very step a run takes).
    """
    self.create_state()
    start = self.restore()
    if self.is_chief:
      ckpt_lib.write_meta(self.cfg.model_path, self.meta(start))
    self._log_start(start)
    self.make_datasets(start)
    return start, self.make_train_step()

  def train(self):
    cfg = self.cfg
    start, train_step = self.prepare()
    throughput = hooks_lib.Throughput(cfg.batch_size)
    hooks, validation = self.make_hooks(throughput)
    loop = hooks_lib.Loop(start, cfg.steps)
    hooks_lib.run_hooks(hooks, "begin", loop, throughput)
    while loop.step < cfg.steps:
      out = train_step(self.train_iterator)
      loop.step += 1
      loop.metrics = {k: float(v) for k, v in out.items()}
      hooks_lib.run_hooks(hooks, "after_step", loop, throughput)
    hooks_lib.run_hooks(hooks, "end", loop, throughput)
    final = self._finish(loop.step)
    return TrainResult(
        self.state.model, self.state.optimizer, loop.step, loop.metrics,
        validation.last if validation and loop.step > start else {}, final,
        validation.history if validation else [])

  def _log_start(self, start):
    cfg = self.cfg
    logging.info(
        "training %s (lambda %g, %s, %s) on %s: steps %d -> %d, global batch "
        "%d over %d replica(s), crop %d, lr %g (x%g from step %s), clip %g",
        cfg.preset, cfg.lmbda, cfg.metric, self.precision,
        self.data.describe(), start, cfg.steps, cfg.batch_size,
        self.num_replicas, cfg.crop_size, cfg.learning_rate, LR_DECAY_FACTOR,
        self.schedule.decay_step, cfg.clip_norm)

  def _finish(self, step):
    """Removes a non-chief's scratch copy; returns the final checkpoint."""
    final = self.state.manager.latest_checkpoint
    if not self.is_chief:
      shutil.rmtree(self.write_dir, ignore_errors=True)
      # The chief's copy of this step's checkpoint (it may still be writing).
      final = os.path.join(self.cfg.model_path, os.path.basename(final))
    logging.info("%s", self.data.summary())
    logging.info(
        "done at step %d; final checkpoint %s. It is all an export needs: the "
        "codec builds its entropy-coding tables from these weights when it is "
        "constructed (bin/export.py --checkpoint %s).", step, final,
        self.cfg.model_path)
    return final


def train(cfg, extra_hooks=()):
  """Runs (or resumes) training; returns a TrainResult."""
  return Trainer(cfg, extra_hooks).train()
