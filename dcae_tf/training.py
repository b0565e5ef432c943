"""Distributed training of DCAE: the official recipe on tf.distribute.

Recipe (official `train.py` / README): Adam, learning rate 1e-4, multiplied
by 0.1 late in training (epoch 46 of 50, i.e. at 92% of the steps), gradient
clipping to global norm 1.0, batch 8 of random 256x256 crops, loss
bpp + lambda * distortion (see `losses.py`).

The loop is a custom one (strategy.run over a distributed dataset) rather
than `Model.fit`, because the clipping has to see the *aggregated* gradient:
every replica computes its part of the global-batch mean loss
(`tf.nn.compute_average_loss`), the gradients are summed across replicas
(`ReplicaContext.all_reduce`), then clipped, then applied without further
aggregation. One device and N devices therefore take the same step for the
same global batch, as the official DDP code does (DDP averages gradients in
backward, clipping comes after).

A model directory (`dcae_tf/checkpoint.py`) holds `model.json` and
the TF checkpoints `ckpt-<step>` written by a CheckpointManager every
`checkpoint_every` steps and at the end; rerunning with the same
`model_path` resumes from the newest one. TF writes each checkpoint to a
temporary name and renames it, and updates the `checkpoint` index file
atomically after that, so a run killed at any moment (kill -9) leaves the
previous checkpoint intact. TensorBoard summaries go to `model_path/train`
and `model_path/validation`.
"""
import dataclasses
import glob
import math
import os
import shutil
import sys
import tempfile
import time

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from dcae_tf import checkpoint as ckpt_lib
from dcae_tf import config as config_lib
from dcae_tf import data as data_lib
from dcae_tf import losses as losses_lib
from dcae_tf import model as model_lib
from dcae_tf.runtime import weights_source

STRATEGIES = ("default", "mirrored", "multi_worker")
# Official schedule: MultiStepLR(milestones=[46], gamma=0.1) over 50 epochs.
LR_DECAY_FRACTION = 46 / 50
LR_DECAY_FACTOR = 0.1
CHECKPOINT_NAME = "ckpt"
TRAIN_SUMMARY_DIR = "train"
VAL_SUMMARY_DIR = "validation"
# Reconstructions shown in TensorBoard at every validation.
NUM_SUMMARY_IMAGES = 3


@dataclasses.dataclass
class TrainConfig:
  """Everything a training run needs; mirrors the flags of bin/train.py."""
  model_path: str
  lmbda: float
  metric: str = "mse"
  preset: str = "paper"
  train_glob: str = None
  val_glob: str = None
  tfds_dataset: str = None
  tfds_data_dir: str = None
  tfds_split: str = "train"
  tfds_val_split: str = None
  tfds_image_key: str = "image"
  batch_size: int = 8
  val_batch_size: int = None
  crop_size: int = data_lib.DEFAULT_CROP_SIZE
  max_val_images: int = data_lib.DEFAULT_MAX_VAL_IMAGES
  steps: int = 1_000_000
  learning_rate: float = 1e-4
  lr_decay_step: int = None
  clip_norm: float = 1.0
  checkpoint_every: int = 5000
  keep_checkpoints: int = 3
  validate_every: int = 5000
  log_every: int = 100
  strategy: str = "default"
  # > 1: split the CPU into this many logical devices (replicas of
  # `mirrored` on a machine without GPUs).
  logical_cpus: int = 0
  init_from: str = None
  # Keras policy of the transforms (`model.PRECISIONS`); None: a new run's
  # float32, a resumed run's own.
  precision: str = None
  seed: int = 0
  small_images: str = "skip"
  # Straight-through rounding instead of uniform noise in the rate terms
  # (DCAE.call(deterministic=True)): only for reproducibility tests.
  deterministic: bool = False
  verbose: bool = True

  def validate(self):
    """Raises ValueError with a one-line reason for a bad configuration."""
    if not self.model_path:
      raise ValueError("model_path is required")
    if bool(self.train_glob) == bool(self.tfds_dataset):
      raise ValueError("give exactly one of train_glob or tfds_dataset")
    if self.metric not in losses_lib.METRICS:
      raise ValueError(f"metric must be one of {losses_lib.METRICS}")
    if self.strategy not in STRATEGIES:
      raise ValueError(f"strategy must be one of {STRATEGIES}, "
                       f"not {self.strategy!r}")
    if self.small_images not in data_lib.SMALL_IMAGE_POLICIES:
      raise ValueError(f"small_images must be one of "
                       f"{data_lib.SMALL_IMAGE_POLICIES}")
    for name in ("batch_size", "crop_size", "steps", "checkpoint_every",
                 "validate_every", "log_every", "keep_checkpoints",
                 "max_val_images"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
    if self.val_batch_size is not None and self.val_batch_size < 1:
      raise ValueError(f"val_batch_size must be >= 1, not "
                       f"{self.val_batch_size}")
    if not self.learning_rate > 0:
      raise ValueError("learning_rate must be > 0")
    if not self.clip_norm >= 0:
      raise ValueError("clip_norm must be >= 0 (0 disables clipping)")
    if self.metric == "ms-ssim":
      losses_lib.ms_ssim_power_factors(self.crop_size)  # Raises if too small.
    config_lib.get_config(self.preset)  # Raises for an unknown preset.
    if self.precision is not None:
      model_lib.check_precision(self.precision)

  @property
  def decay_step(self):
    """Step at which the learning rate drops; None: never."""
    if self.lr_decay_step is None:
      return int(round(LR_DECAY_FRACTION * self.steps))
    return self.lr_decay_step if self.lr_decay_step > 0 else None


class StepDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
  """Constant learning rate, times `factor` from `decay_step` on."""

  def __init__(self, learning_rate, decay_step, factor=LR_DECAY_FACTOR):
    super().__init__()
    self.learning_rate = float(learning_rate)
    self.decay_step = decay_step
    self.factor = float(factor)

  def __call__(self, step):
    lr = tf.constant(self.learning_rate, tf.float32)
    if self.decay_step is None:
      return lr
    return tf.where(tf.cast(step, tf.int64) >= self.decay_step,
                    lr * self.factor, lr)

  def value(self, step):
    """Python float, for logging."""
    if self.decay_step is not None and step >= self.decay_step:
      return self.learning_rate * self.factor
    return self.learning_rate

  def get_config(self):
    return dict(learning_rate=self.learning_rate, decay_step=self.decay_step,
                factor=self.factor)


def split_cpu(num_devices):
  """Makes the CPU appear as `num_devices` logical devices.

  Lets MirroredStrategy run (and be tested) with several replicas on a
  machine without GPUs. Must happen before TensorFlow initialises its
  devices, i.e. before the first op runs.
  """
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def make_strategy(name, logical_cpus=0):
  """default | mirrored (all local GPUs, else all CPUs) | multi_worker."""
  if logical_cpus > 1:
    split_cpu(logical_cpus)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    devices = (tf.config.list_logical_devices("GPU") or
               tf.config.list_logical_devices("CPU"))
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      logging.warning("strategy multi_worker without TF_CONFIG: one worker")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"strategy must be one of {STRATEGIES}, not {name!r}")


def worker_role(strategy):
  """(is_chief, task_type, task_id) of this process."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True, None, None
  task_type, task_id = resolver.task_type, resolver.task_id
  cluster = resolver.cluster_spec().as_dict()
  chief = (task_type == "chief" or
           (task_type == "worker" and task_id == 0 and "chief" not in cluster))
  return chief, task_type, task_id


def _read_meta(model_path):
  """model.json of model_path, or None for a new model directory."""
  try:
    return ckpt_lib.read_meta(model_path)
  except FileNotFoundError:
    return None


def _clean_partial_checkpoints(model_path):
  """Removes temp files of a checkpoint write interrupted by a kill."""
  for path in glob.glob(os.path.join(model_path, CHECKPOINT_NAME + "-*_temp*")):
    logging.info("removing partial checkpoint %s", path)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      os.remove(path)


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
  """One training run: strategy, data, model, optimizer, checkpoints, logs."""

  def __init__(self, cfg):
    cfg.validate()
    self.cfg = cfg
    self.model_config = config_lib.get_config(cfg.preset)
    self.strategy = make_strategy(cfg.strategy, cfg.logical_cpus)
    self.is_chief, self.task_type, self.task_id = worker_role(self.strategy)
    self.num_replicas = self.strategy.num_replicas_in_sync
    if cfg.batch_size % self.num_replicas:
      raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the "
                       f"{self.num_replicas} replicas")
    self.loss_fn = losses_lib.RateDistortionLoss(cfg.lmbda, cfg.metric)
    self.schedule = StepDecay(cfg.learning_rate, cfg.decay_step)
    # Non-chief workers write their (identical) checkpoints to a temp dir.
    if self.is_chief:
      self.write_dir = cfg.model_path
    else:
      self.write_dir = tempfile.mkdtemp(
          prefix=f"dcae_{self.task_type}{self.task_id}_")
    tf.io.gfile.makedirs(self.write_dir)
    self._check_model_dir()
    self.train_source = data_lib.ImageSource(
        cfg.train_glob, cfg.tfds_dataset, cfg.tfds_data_dir, cfg.tfds_split,
        cfg.tfds_image_key)
    self.val_source = None
    if cfg.val_glob or (cfg.tfds_dataset and cfg.tfds_val_split):
      self.val_source = data_lib.ImageSource(
          cfg.val_glob, None if cfg.val_glob else cfg.tfds_dataset,
          cfg.tfds_data_dir, cfg.tfds_val_split, cfg.tfds_image_key)
    self.train_decoder = data_lib.ImageDecoder(
        cfg.crop_size, cfg.small_images, "train data")
    self.val_decoder = data_lib.ImageDecoder(
        cfg.crop_size, cfg.small_images, "validation data")

  def _check_model_dir(self):
    meta = _read_meta(self.cfg.model_path)
    # Where a resumed run's weights first came from (its first run's flag).
    self.init_from = (meta or {}).get("init_from") or self.cfg.init_from
    # A run keeps its precision: float16's loss-scaling optimizer has other
    # checkpointed state than plain Adam.
    stored = (meta or {}).get("precision")
    if stored and self.cfg.precision not in (None, stored):
      raise ValueError(
          f"{self.cfg.model_path} was trained with precision {stored!r}; "
          f"this run asks for {self.cfg.precision!r} (use another "
          f"model_path, or --init_from to start from its weights)")
    self.precision = stored or self.cfg.precision or model_lib.FLOAT32
    if meta is None:
      return
    if meta.get("preset") not in (None, self.cfg.preset):
      raise ValueError(
          f"{self.cfg.model_path} holds a {meta['preset']!r} model; this run "
          f"asks for preset {self.cfg.preset!r} (use another model_path, or "
          f"--init_from to start from its weights)")
    for key in ("lmbda", "metric"):
      if meta.get(key) not in (None, getattr(self.cfg, key)):
        logging.warning("%s: %s was %r, continuing with %r",
                        self.cfg.model_path, key, meta[key],
                        getattr(self.cfg, key))

  def meta(self, step):
    return {"preset": self.cfg.preset,
            "config": self.model_config.to_dict(),
            "lmbda": self.cfg.lmbda, "metric": self.cfg.metric,
            "step": int(step),
            # How it was trained, for the model card of an export.
            "train_data": (f"{self.cfg.train_glob or self.cfg.tfds_dataset}"
                           f" ({self.train_source.describe()})"),
            "crop_size": self.cfg.crop_size,
            "batch_size": self.cfg.batch_size,
            "learning_rate": self.cfg.learning_rate,
            "precision": self.precision,
            "init_from": self.init_from}

  # -- setup -----------------------------------------------------------------

  def _create_state(self):
    # Same initial weights in every worker / run with the same seed.
    tf.keras.utils.set_random_seed(self.cfg.seed)
    with self.strategy.scope():
      self.model = model_lib.DCAE(
          self.model_config, precision=self.precision).build_weights()
      self.optimizer = tf.keras.optimizers.Adam(learning_rate=self.schedule)
      if self.precision == model_lib.MIXED_FLOAT16:
        # float16 gradients underflow without it; bfloat16 has float32's
        # exponent range and needs none.
        self.optimizer = tf.keras.mixed_precision.LossScaleOptimizer(
            self.optimizer)
      self.optimizer.build(self.model.trainable_variables)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, step=self.step)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, self.write_dir, max_to_keep=self.cfg.keep_checkpoints,
        checkpoint_name=CHECKPOINT_NAME)

  def _restore(self):
    """Resumes from model_path, else initializes from init_from, if given."""
    cfg = self.cfg
    if self.is_chief:
      _clean_partial_checkpoints(cfg.model_path)
    latest = tf.train.latest_checkpoint(cfg.model_path)
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info("resumed from %s at step %d", latest, int(self.step))
      if cfg.init_from:
        logging.info("ignoring init_from=%s: resuming %s", cfg.init_from,
                     cfg.model_path)
      return
    if cfg.init_from and weights_source.is_export(cfg.init_from):
      self._init_from_export(cfg.init_from)
    elif cfg.init_from:
      source = tf.train.latest_checkpoint(cfg.init_from)
      if not source:
        raise ValueError(f"init_from: no checkpoint in {cfg.init_from}")
      meta = _read_meta(cfg.init_from) or {}
      if meta.get("preset") not in (None, cfg.preset):
        raise ValueError(f"init_from {cfg.init_from} is a {meta['preset']!r} "
                         f"model, not {cfg.preset!r}")
      status = tf.train.Checkpoint(model=self.model).restore(source)
      status.expect_partial()
      try:
        status.assert_existing_objects_matched()
      except AssertionError as e:
        raise ValueError(f"init_from {source}: weights do not match the "
                         f"{cfg.preset!r} model: {str(e)[:300]}") from e
      logging.info("initialized model weights from %s", source)

  def _init_from_export(self, path):
    """Starts from the weights of an export (`runtime.weights_source`)."""
    try:
      source, meta = weights_source.load_model(path)
    except (OSError, ValueError) as e:
      raise ValueError(f"init_from {path}: {e}") from None
    if meta["preset"] != self.cfg.preset:
      raise ValueError(f"init_from {path} is a {meta['preset']!r} model, "
                       f"not {self.cfg.preset!r}")
    if len(self.model.variables) != len(source.variables):
      raise ValueError(f"init_from {path}: {len(source.variables)} variables, "
                       f"this model has {len(self.model.variables)}")
    for target, value in zip(self.model.variables, source.variables):
      if (target.name, target.shape) != (value.name, value.shape):
        raise ValueError(f"init_from {path}: variable {value.name} does not "
                         f"match {target.name} of this model")
      target.assign(value)
    logging.info("initialized model weights from export %s",
                 meta["version_dir"])

  def _datasets(self, start_step):
    cfg = self.cfg
    # A resumed run reshuffles with another seed instead of replaying the
    # first run's data order.
    seed = cfg.seed + start_step
    train = data_lib.train_dataset(
        self.train_source, cfg.batch_size, cfg.crop_size, cfg.small_images,
        seed=seed, decoder=self.train_decoder)
    options = tf.data.Options()
    # DATA sharding: works for any number of files (even one); every worker
    # sees the same shuffled order (same seed) and takes its share.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    train = train.with_options(options)
    self.train_iterator = iter(
        self.strategy.experimental_distribute_dataset(train))
    self.val_dataset = None
    if self.val_source is not None and self.is_chief:
      self.val_dataset = data_lib.validation_dataset(
          self.val_source, cfg.val_batch_size or cfg.batch_size,
          cfg.crop_size, cfg.small_images, cfg.max_val_images,
          decoder=self.val_decoder)

  # -- steps -----------------------------------------------------------------

  def _model_out(self, x, training):
    if self.cfg.deterministic and training:
      return self.model(x, training=True, deterministic=True)
    return self.model(x, training=training)

  def _make_train_step(self):
    cfg = self.cfg
    global_batch = cfg.batch_size
    variables = self.model.trainable_variables
    scaled = isinstance(self.optimizer,
                        tf.keras.mixed_precision.LossScaleOptimizer)

    def replica_step(x):
      with tf.GradientTape() as tape:
        metrics = self.loss_fn(x, self._model_out(x, training=True))
        loss = tf.nn.compute_average_loss(metrics["loss"],
                                          global_batch_size=global_batch)
        if self.model.losses:
          loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        if scaled:
          loss = self.optimizer.get_scaled_loss(loss)
      grads = tape.gradient(loss, variables)
      if scaled:
        # Non-finite gradients stay non-finite: the optimizer then skips
        # the step and lowers the scale.
        grads = self.optimizer.get_unscaled_gradients(grads)
      pairs = [(tf.convert_to_tensor(g), v)
               for g, v in zip(grads, variables) if g is not None]
      grads = [g for g, _ in pairs]
      # Sum of the replicas' parts = gradient of the global-batch mean.
      grads = tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, grads)
      if cfg.clip_norm > 0:
        grads, norm = tf.clip_by_global_norm(grads, cfg.clip_norm)
      else:
        norm = tf.linalg.global_norm(grads)
      self.optimizer.apply_gradients(
          zip(grads, [v for _, v in pairs]), skip_gradients_aggregation=True)
      out = {k: tf.nn.compute_average_loss(v, global_batch_size=global_batch)
             for k, v in metrics.items()}
      out["grad_norm"] = norm / self.num_replicas
      return out

    @tf.function
    def train_step(iterator):
      per_replica = self.strategy.run(replica_step, args=(next(iterator),))
      self.step.assign_add(1)
      return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for k, v in per_replica.items()}
    return train_step

  def _make_eval_step(self):
    crop = self.cfg.crop_size

    @tf.function(input_signature=[
        tf.TensorSpec([None, crop, crop, 3], tf.float32)])
    def eval_step(x):
      out = self._model_out(x, training=False)
      metrics = self.loss_fn(x, out)
      return metrics, tf.clip_by_value(out["x_hat"], 0.0, 1.0)
    return eval_step

  def validate(self, eval_step):
    """Mean metrics over the validation set and a few reconstructions."""
    sums, count, images = {}, 0, None
    for x in self.val_dataset:
      metrics, x_hat = eval_step(x)
      for k, v in metrics.items():
        sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
      count += int(x.shape[0])
      if images is None:
        n = NUM_SUMMARY_IMAGES
        images = tf.concat([x[:n], x_hat[:n]], axis=2)  # side by side
    if not count:
      raise ValueError("the validation set yielded no image (see warnings "
                       "about unreadable / too small files)")
    return {k: v / count for k, v in sums.items()}, images

  # -- loop ------------------------------------------------------------------

  def _save(self, step):
    # z is quantised around the prior's medians (the official model learns
    # them with an auxiliary loss; TFC reads them off the density). Refreshed
    # at every checkpoint, so a checkpoint is always ready for the codec.
    self.model.hyperprior.refresh_offset()
    path = self.manager.save(checkpoint_number=step)
    if self.is_chief:
      ckpt_lib.write_meta(self.cfg.model_path, self.meta(step))
    return path

  def train(self):
    cfg = self.cfg
    self._create_state()
    self._restore()
    start = int(self.step)
    if self.is_chief:
      ckpt_lib.write_meta(cfg.model_path, self.meta(start))
    logging.info(
        "training %s (lambda %g, %s, %s) on %s: steps %d -> %d, global batch "
        "%d over %d replica(s), crop %d, lr %g (x%g from step %s), clip %g",
        cfg.preset, cfg.lmbda, cfg.metric, self.precision,
        self.train_source.describe(),
        start, cfg.steps, cfg.batch_size, self.num_replicas, cfg.crop_size,
        cfg.learning_rate, LR_DECAY_FACTOR, self.schedule.decay_step,
        cfg.clip_norm)
    self._datasets(start)
    train_step = self._make_train_step()
    eval_step = self._make_eval_step()
    if self.is_chief:
      train_writer = tf.summary.create_file_writer(
          os.path.join(cfg.model_path, TRAIN_SUMMARY_DIR))
      val_writer = tf.summary.create_file_writer(
          os.path.join(cfg.model_path, VAL_SUMMARY_DIR))
    else:
      train_writer = val_writer = tf.summary.create_noop_writer()
    progbar = tf.keras.utils.Progbar(
        cfg.steps, stateful_metrics=None,
        # A log file gets a line per --log_every window instead (below).
        verbose=1 if (cfg.verbose and self.is_chief and sys.stdout.isatty())
        else 0)
    if start:
      progbar.update(start)

    history = []

    def run_validation(at_step):
      # Evaluate z quantisation as a checkpoint of this step will.
      self.model.hyperprior.refresh_offset()
      val_metrics, images = self.validate(eval_step)
      with val_writer.as_default(step=at_step):
        for k, v in val_metrics.items():
          tf.summary.scalar(k, v)
        tf.summary.image("original_vs_reconstruction", images,
                         max_outputs=NUM_SUMMARY_IMAGES)
      logging.info("step %d validation: %s", at_step, _fmt(val_metrics))
      history.append((at_step, val_metrics))
      return val_metrics

    # A fresh run records where it starts from.
    if self.val_dataset is not None and start == 0:
      run_validation(0)
    step, last_saved = start, (start if self.manager.latest_checkpoint
                               else None)
    metrics, val_metrics = {}, {}
    window, window_images, window_start = {}, 0, time.perf_counter()
    # images_per_second leaves out this run's first step, which traces and
    # optimises the step's graph (seconds to minutes): throughput only.
    timed_images, first_step = 0, True
    while step < cfg.steps:
      out = train_step(self.train_iterator)
      step += 1
      if first_step:
        first_step, window_start = False, time.perf_counter()
      else:
        timed_images += cfg.batch_size
      metrics = {k: float(v) for k, v in out.items()}
      if not math.isfinite(metrics["loss"]):
        raise FloatingPointError(
            f"loss is {metrics['loss']} at step {step}; last checkpoint: "
            f"{self.manager.latest_checkpoint}")
      for k, v in metrics.items():
        window[k] = window.get(k, 0.0) + v
      window_images += cfg.batch_size
      progbar.update(step, [(k, metrics[k]) for k in
                            ("loss", "bpp", "psnr", "ms_ssim") if k in metrics])
      if step % cfg.log_every == 0 or step == cfg.steps:
        elapsed = time.perf_counter() - window_start
        steps_in_window = window_images // cfg.batch_size
        means = {k: v / steps_in_window for k, v in window.items()}
        if timed_images:
          means["images_per_second"] = timed_images / elapsed
        with train_writer.as_default(step=step):
          for k, v in means.items():
            tf.summary.scalar(k, v)
          tf.summary.scalar("learning_rate", self.schedule.value(step - 1))
        if not sys.stdout.isatty():
          # The progress bar only redraws on a terminal; a log file gets
          # a line per window instead.
          logging.info("step %d: %s", step, _fmt(means))
        window, window_images, timed_images = {}, 0, 0
        window_start = time.perf_counter()
      if self.val_dataset is not None and (step % cfg.validate_every == 0 or
                                           step == cfg.steps):
        t = time.perf_counter()
        val_metrics = run_validation(step)
        window_start += time.perf_counter() - t  # Not training throughput.
      if step % cfg.checkpoint_every == 0:
        t = time.perf_counter()
        self._save(step)
        last_saved = step
        window_start += time.perf_counter() - t
    if last_saved != step:
      self._save(step)
    train_writer.flush()
    val_writer.flush()
    final = self.manager.latest_checkpoint
    if not self.is_chief:
      shutil.rmtree(self.write_dir, ignore_errors=True)
      # The chief's copy of this step's checkpoint (it may still be writing).
      final = os.path.join(cfg.model_path, os.path.basename(final))
    logging.info("%s", self.train_decoder.summary())
    logging.info(
        "done at step %d; final checkpoint %s. It is all an export needs: the "
        "codec builds its entropy-coding tables from these weights when it is "
        "constructed (bin/export.py --checkpoint %s).", step, final,
        cfg.model_path)
    return TrainResult(self.model, self.optimizer, step, metrics, val_metrics, final,
                       history)


def _fmt(metrics):
  return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))


def train(cfg):
  """Runs (or resumes) training; returns a TrainResult."""
  return Trainer(cfg).train()


# -- command line ---------------------------------------------------------------


def define_flags(flag_values=flags.FLAGS):
  """Flags of bin/train.py; each one is a TrainConfig field."""
  d = TrainConfig
  f = dict(flag_values=flag_values)
  flags.DEFINE_float("lmbda", None, "Rate-distortion trade-off lambda "
                     "(official: 0.0018 0.0035 0.0067 0.013 0.025 0.05 for mse; "
                     "2.40 4.58 8.73 16.64 31.73 60.5 for ms-ssim).", **f)
  flags.DEFINE_enum("metric", d.metric, list(losses_lib.METRICS),
                    "Distortion: loss = bpp + lmbda*255^2*MSE, or bpp + "
                    "lmbda*(1-MS-SSIM).", **f)
  flags.DEFINE_enum("preset", d.preset, sorted(config_lib.PRESETS),
                    "Architecture preset (dcae_tf/config.py).", **f)
  flags.DEFINE_string("train_glob", None, "Training images: glob(s), comma "
                      "separated, '**' recursive, or directories "
                      "(png/jpg/jpeg/webp/bmp/tif/tiff).", **f)
  flags.DEFINE_string("val_glob", None, "Validation images (center crops); "
                      "no validation if unset.", **f)
  flags.DEFINE_string("tfds_dataset", None, "Train on this locally prepared "
                      "TensorFlow Datasets dataset instead of train_glob "
                      "(never downloads).", **f)
  flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir holding it.", **f)
  flags.DEFINE_string("tfds_split", d.tfds_split, "TFDS training split.", **f)
  flags.DEFINE_string("tfds_val_split", None, "TFDS validation split (if no "
                      "val_glob).", **f)
  flags.DEFINE_string("tfds_image_key", d.tfds_image_key, "Feature of the "
                      "TFDS examples that holds the image.", **f)
  flags.DEFINE_string("model_path", None, "Model directory: checkpoints, "
                      "model.json, TensorBoard logs; rerun to resume.", **f)
  flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size (split "
                       "over all replicas).", **f)
  flags.DEFINE_integer("crop_size", d.crop_size, "Side of the random "
                       "training / center validation crops.", **f)
  flags.DEFINE_integer("val_batch_size", None, "Validation batch size "
                       "(default: --batch_size).", **f)
  flags.DEFINE_integer("max_val_images", d.max_val_images, "Validate on at "
                       "most this many images (their center crops).", **f)
  flags.DEFINE_integer("steps", d.steps, "Train until this global step.", **f)
  flags.DEFINE_float("learning_rate", d.learning_rate, "Adam learning "
                     "rate.", **f)
  flags.DEFINE_integer("lr_decay_step", None, "Step from which the learning "
                       "rate is x0.1; default round(0.92 * --steps) "
                       "(official: epoch 46 of 50); <= 0 never.", **f)
  flags.DEFINE_float("clip_norm", d.clip_norm, "Clip the aggregated gradient "
                     "to this global norm; 0 disables.", **f)
  flags.DEFINE_integer("checkpoint_every", d.checkpoint_every, "Checkpoint "
                       "every N steps (and at the end).", **f)
  flags.DEFINE_integer("keep_checkpoints", d.keep_checkpoints, "Keep the "
                       "newest N checkpoints.", **f)
  flags.DEFINE_integer("validate_every", d.validate_every, "Validate every N "
                       "steps (and at the end).", **f)
  flags.DEFINE_integer("log_every", d.log_every, "Write training summaries "
                       "every N steps.", **f)
  flags.DEFINE_enum("strategy", d.strategy, list(STRATEGIES), "default: one "
                    "device; mirrored: all local GPUs (else CPUs); "
                    "multi_worker: workers from TF_CONFIG.", **f)
  flags.DEFINE_integer("logical_cpus", d.logical_cpus, "Split the CPU into "
                       "this many logical devices, so --strategy mirrored has "
                       "that many replicas without GPUs (0: do not split).",
                       **f)
  flags.DEFINE_string("init_from", None, "Start from the weights of this model "
                      "directory (e.g. a converted official checkpoint) or "
                      "export (saved_models/NAME); ignored when model_path "
                      "already has a checkpoint.", **f)
  flags.DEFINE_enum("precision", None, list(model_lib.PRECISIONS),
                    "Keras policy of the transforms: float32, or mixed "
                    "bfloat16 / float16 (float32 variables; the entropy "
                    "models, likelihoods and rates stay float32; float16 "
                    "with loss scaling). Default: float32 for a new run, "
                    "the run's own when resuming.", **f)
  flags.DEFINE_integer("seed", d.seed, "Seed of weights, shuffling, crops.",
                       **f)
  flags.DEFINE_enum("small_images", d.small_images,
                    list(data_lib.SMALL_IMAGE_POLICIES), "Images smaller than "
                    "the crop: skip them, or pad (symmetric).", **f)
  flags.mark_flags_as_required(["lmbda", "model_path"], flag_values)


FLAG_NAMES = (
    "lmbda", "metric", "preset", "train_glob", "val_glob", "tfds_dataset",
    "tfds_data_dir", "tfds_split", "tfds_val_split", "tfds_image_key",
    "model_path", "batch_size", "crop_size", "val_batch_size",
    "max_val_images", "steps", "learning_rate", "lr_decay_step", "clip_norm",
    "checkpoint_every", "keep_checkpoints", "validate_every", "log_every",
    "strategy", "logical_cpus", "init_from", "precision", "seed",
    "small_images")
# TrainConfig fields for tests and library callers only.
NOT_FLAGS = ("deterministic", "verbose")


def config_from_flags(flag_values=flags.FLAGS):
  """TrainConfig from the flags defined by define_flags."""
  return TrainConfig(**{name: flag_values[name].value for name in FLAG_NAMES})
