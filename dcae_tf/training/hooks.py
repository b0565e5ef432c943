"""The periodic work around the train step, one small hook per job.

`Trainer.train` is a loop that calls the step, then every hook's
`after_step`; `begin` runs once before the first step of a run (fresh or
resumed) and `end` once after its last. Hooks run in list order: the loss
check, progress and summaries, validation, checkpointing. A hook whose work
is not training (`pauses_clock`) is timed out of the throughput.
"""
import contextlib
import math
import os
import sys
import time

from absl import logging
import tensorflow as tf

from dcae_tf.training import step as step_lib

TRAIN_SUMMARY_DIR = "train"
VAL_SUMMARY_DIR = "validation"
# Metrics the progress bar shows, when the step reports them.
PROGRESS_METRICS = ("loss", "bpp", "psnr", "ms_ssim")


class Loop:
  """Where the loop is: this run's first step, the target, the last step."""

  def __init__(self, start, steps):
    self.start = start
    self.steps = steps
    self.step = start
    # Python floats of the last step's metrics.
    self.metrics = {}

  def due(self, every):
    """Whether periodic work of period `every` is due (always at the end)."""
    return self.step % every == 0 or self.step == self.steps


class Hook:
  """Does nothing; subclasses override what they need."""
  # True: its time is left out of images_per_second.
  pauses_clock = False

  def begin(self, loop):
    pass

  def after_step(self, loop):
    pass

  def end(self, loop):
    pass


class Throughput:
  """Images per second of the steps of a window.

  Leaves out this run's first step, which traces and optimises the step's
  graph (seconds to minutes), and the time hooks spend on other work
  (`paused`): throughput only.
  """

  def __init__(self, batch_size, clock=time.perf_counter):
    self.batch_size = batch_size
    self._clock = clock
    self._images = 0
    self._first = True
    self._start = clock()

  def step_done(self):
    if self._first:
      self._first, self._start = False, self._clock()
    else:
      self._images += self.batch_size

  @contextlib.contextmanager
  def paused(self):
    begin = self._clock()
    try:
      yield
    finally:
      self._start += self._clock() - begin

  def take(self):
    """images/s since the last `take` (None: no timed step); restarts."""
    rate = None
    if self._images:
      rate = self._images / (self._clock() - self._start)
    self._images, self._start = 0, self._clock()
    return rate


def summary_writer(model_path, subdir, is_chief):
  """TensorBoard writer of model_path/subdir; only the chief writes."""
  if not is_chief:
    return tf.summary.create_noop_writer()
  return tf.summary.create_file_writer(os.path.join(model_path, subdir))


def format_metrics(metrics):
  return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))


class NonFiniteLossStop(Hook):
  """Stops at a non-finite loss, naming the checkpoint to go back to."""

  def __init__(self, manager):
    self.manager = manager

  def after_step(self, loop):
    loss = loop.metrics["loss"]
    if not math.isfinite(loss):
      raise FloatingPointError(
          f"loss is {loss} at step {loop.step}; last checkpoint: "
          f"{self.manager.latest_checkpoint}")


class Progress(Hook):
  """Progress bar, and per `log_every` window the mean metrics, throughput
  and learning rate as summaries (and as a log line when stdout is not a
  terminal, where the bar does not redraw)."""

  def __init__(self, log_every, writer, schedule, throughput, show_bar):
    self.log_every = log_every
    self.writer = writer
    self.schedule = schedule
    self.throughput = throughput
    self.show_bar = show_bar
    self._sums, self._count, self._bar = {}, 0, None

  def begin(self, loop):
    self._bar = tf.keras.utils.Progbar(
        loop.steps, stateful_metrics=None, verbose=1 if self.show_bar else 0)
    if loop.start:
      self._bar.update(loop.start)

  def after_step(self, loop):
    self.throughput.step_done()
    for k, v in loop.metrics.items():
      self._sums[k] = self._sums.get(k, 0.0) + v
    self._count += 1
    self._bar.update(loop.step, [(k, loop.metrics[k]) for k in
                                 PROGRESS_METRICS if k in loop.metrics])
    if loop.due(self.log_every):
      self._write_window(loop.step)

  def _write_window(self, step):
    means = {k: v / self._count for k, v in self._sums.items()}
    rate = self.throughput.take()
    if rate is not None:
      means["images_per_second"] = rate
    with self.writer.as_default(step=step):
      for k, v in means.items():
        tf.summary.scalar(k, v)
      tf.summary.scalar("learning_rate", self.schedule.value(step - 1))
    if not sys.stdout.isatty():
      logging.info("step %d: %s", step, format_metrics(means))
    self._sums, self._count = {}, 0

  def end(self, loop):
    self.writer.flush()


class Validation(Hook):
  """Validates at the start of a fresh run, every `validate_every` steps and
  at the end; keeps the (step, metrics) history."""
  pauses_clock = True

  def __init__(self, model, eval_step, dataset, validate_every, writer):
    self.model = model
    self.eval_step = eval_step
    self.dataset = dataset
    self.validate_every = validate_every
    self.writer = writer
    self.history = []

  @property
  def last(self):
    return self.history[-1][1] if self.history else {}

  def run(self, at_step):
    # Evaluate z quantisation as a checkpoint of this step will.
    self.model.hyperprior.refresh_offset()
    metrics, images = step_lib.evaluate(self.eval_step, self.dataset)
    with self.writer.as_default(step=at_step):
      for k, v in metrics.items():
        tf.summary.scalar(k, v)
      tf.summary.image("original_vs_reconstruction", images,
                       max_outputs=step_lib.NUM_SUMMARY_IMAGES)
    logging.info("step %d validation: %s", at_step, format_metrics(metrics))
    self.history.append((at_step, metrics))

  def begin(self, loop):
    # A fresh run records where it starts from.
    if loop.start == 0:
      self.run(0)

  def after_step(self, loop):
    if loop.due(self.validate_every):
      self.run(loop.step)

  def end(self, loop):
    self.writer.flush()


class Checkpointing(Hook):
  """Saves every `checkpoint_every` steps, and at the end unless the last
  step was just saved (or nothing was trained since the newest one)."""
  pauses_clock = True

  def __init__(self, save, checkpoint_every, has_checkpoint):
    self.save = save
    self.checkpoint_every = checkpoint_every
    self.has_checkpoint = has_checkpoint
    self.last_saved = None

  def begin(self, loop):
    self.last_saved = loop.start if self.has_checkpoint() else None

  def after_step(self, loop):
    if loop.step % self.checkpoint_every == 0:
      self.save(loop.step)
      self.last_saved = loop.step

  def end(self, loop):
    if self.last_saved != loop.step:
      self.save(loop.step)
      self.last_saved = loop.step


def run_hooks(hooks, method, loop, throughput):
  """Calls `method` of every hook in order, pausing the clock for those
  whose work is not training."""
  for hook in hooks:
    call = getattr(hook, method)
    if hook.pauses_clock:
      with throughput.paused():
        call(loop)
    else:
      call(loop)
