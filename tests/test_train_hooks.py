"""The training loop's hooks on their own: a fake clock and fake saves,
no model (what a real run does with them: tests/test_train.py)."""
import pytest

from dcae_tf.training import hooks


class _Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_throughput_leaves_out_the_first_step_and_paused_time():
  clock = _Clock()
  meter = hooks.Throughput(batch_size=4, clock=clock)
  clock.now = 100.0  # The first step traces: not throughput.
  meter.step_done()
  assert meter.take() is None  # Nothing timed yet.
  clock.now += 2.0
  meter.step_done()
  with meter.paused():
    clock.now += 50.0  # Validation or a checkpoint.
  clock.now += 2.0
  meter.step_done()
  assert meter.take() == pytest.approx(8 / 4.0)
  clock.now += 1.0
  meter.step_done()
  assert meter.take() == pytest.approx(4 / 1.0)


def test_periodic_work_is_due_every_n_steps_and_at_the_end():
  loop = hooks.Loop(start=0, steps=7)
  due = []
  for step in range(1, 8):
    loop.step = step
    due.append(loop.due(3))
  assert due == [False, False, True, False, False, True, True]


class _Recorder(hooks.Hook):
  def __init__(self, name, calls, pauses_clock=False):
    self.name, self.calls, self.pauses_clock = name, calls, pauses_clock

  def after_step(self, loop):
    self.calls.append((self.name, loop.step))


def test_hooks_run_in_order_and_checkpoints_once_at_the_end():
  saved, calls = [], []
  checkpointing = hooks.Checkpointing(saved.append, checkpoint_every=2,
                                      has_checkpoint=lambda: False)
  order = [_Recorder("first", calls), checkpointing,
           _Recorder("last", calls, pauses_clock=True)]
  meter = hooks.Throughput(batch_size=1, clock=_Clock())
  loop = hooks.Loop(start=0, steps=3)
  hooks.run_hooks(order, "begin", loop, meter)
  for step in (1, 2, 3):
    loop.step = step
    hooks.run_hooks(order, "after_step", loop, meter)
  hooks.run_hooks(order, "end", loop, meter)
  assert saved == [2, 3]
  assert calls == [("first", 1), ("last", 1), ("first", 2), ("last", 2),
                   ("first", 3), ("last", 3)]


def test_a_resumed_run_with_nothing_to_train_saves_nothing():
  saved = []
  checkpointing = hooks.Checkpointing(saved.append, checkpoint_every=2,
                                      has_checkpoint=lambda: True)
  loop = hooks.Loop(start=5, steps=5)
  checkpointing.begin(loop)
  checkpointing.end(loop)
  assert not saved


def test_a_non_finite_loss_stops_the_run_naming_the_last_checkpoint():
  class _Manager:
    latest_checkpoint = "run/ckpt-4"
  loop = hooks.Loop(start=0, steps=9)
  loop.step, loop.metrics = 5, {"loss": float("nan")}
  with pytest.raises(FloatingPointError, match="at step 5; last checkpoint: "
                     "run/ckpt-4"):
    hooks.NonFiniteLossStop(_Manager()).after_step(loop)
