"""Training end to end: real DCAE ("tiny"), real files, real processes.

One run (`run`, shared by the tests of this module) trains from a converted
checkpoint with validation; a second, through bin/train.py, is killed with
SIGKILL and resumed. What happens before the first step (restoring from a
shipped export, refusing a mismatch) is tested without tracing a step. Mixed
precision: tests/test_train_precision.py; several replicas and workers:
tests/test_train_distributed.py.
"""
import dataclasses
import json
import os
import signal
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags
import tensorflow as tf

from dcae_tf.codec import checkpoint as ckpt_lib
from dcae_tf import training
from dcae_tf import zoo
from dcae_tf.model import DCAE
from dcae_tf.runtime import weights_source
from tests.training_runs import CROP
from tests.training_runs import PROCESS_TIMEOUT
from tests.training_runs import REPO
from tests.training_runs import TRAIN_PY
from tests.training_runs import config
from tests.training_runs import env
from tests.training_runs import fixture_images  # pylint: disable=unused-import
from tests.training_runs import summary_steps

# The shared run: enough steps at a high learning rate for the validation
# loss to fall clearly between validations.
RUN_STEPS = 60
RUN_VALIDATE_EVERY = 30
RUN_LEARNING_RATE = 1e-3
RUN_DECAY_STEP = 50
SOURCE_SEED = 99  # Not the training run's seed (0).
SHIPPED_MODELS = os.path.join(REPO, "saved_models")


def test_empty_glob_is_a_clear_cli_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, TRAIN_PY, "--lmbda", "0.01", "--preset", "tiny",
       "--train_glob", str(tmp_path / "**" / "*.png"),
       "--model_path", str(tmp_path / "run")],
      capture_output=True, text=True, env=env(), timeout=120)
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("train.py: error: no image files")
  assert "Traceback" not in proc.stderr


def test_missing_required_flag_is_a_usage_error(tmp_path):
  proc = subprocess.run([sys.executable, TRAIN_PY, "--preset", "tiny"],
                        capture_output=True, text=True, env=env(),
                        timeout=120)
  assert proc.returncode != 0
  assert "--lmbda" in proc.stderr and "Traceback" not in proc.stderr


# runs/zoo.sh's command line and the TrainConfig it has always meant.
ZOO_ARGV = [
    "train.py", "--preset", "small", "--lmbda", "0.0067",
    "--train_glob", "data/zoo_train", "--val_glob", "data/test",
    "--model_path", "runs/zoo_b0067",
    "--init_from", "saved_models/dcae-small-mse-0018", "--steps", "200000",
    "--lr_decay_step", "0", "--batch_size", "8", "--crop_size", "128",
    "--learning_rate", "3e-4", "--checkpoint_every", "250",
    "--validate_every", "500", "--log_every", "50", "--keep_checkpoints", "2"]
ZOO_CONFIG = training.TrainConfig(
    model_path="runs/zoo_b0067", lmbda=0.0067, metric="mse", preset="small",
    train_glob="data/zoo_train", val_glob="data/test", tfds_dataset=None,
    tfds_data_dir=None, tfds_split="train", tfds_val_split=None,
    tfds_image_key="image", batch_size=8, val_batch_size=None, crop_size=128,
    max_val_images=64, steps=200000, learning_rate=3e-4, lr_decay_step=0,
    clip_norm=1.0, checkpoint_every=250, keep_checkpoints=2,
    validate_every=500, log_every=50, strategy="default", logical_cpus=0,
    init_from="saved_models/dcae-small-mse-0018", precision=None, seed=0,
    small_images="skip", verbose=True)


def test_every_config_field_is_a_flag_with_the_same_default():
  """bin/train.py --help explains every setting, a flag's default is the
  library's, and a command line means what it always meant."""
  values = flags.FlagValues()
  training.define_flags(values)
  fields = {f.name: f for f in dataclasses.fields(training.TrainConfig)}
  library_only = {"verbose"}
  assert set(values) == set(fields) - library_only
  for name in values:
    assert values[name].help, name
    default = fields[name].default
    assert values[name].default == (
        None if default is dataclasses.MISSING else default), name
  enums = {name: values[name].parser.enum_values for name in values
           if hasattr(values[name].parser, "enum_values")}
  assert enums == {"metric": ["mse", "ms-ssim"],
                   "preset": ["paper", "small", "tiny"],
                   "strategy": ["default", "mirrored", "multi_worker"],
                   "precision": ["float32", "mixed_bfloat16",
                                 "mixed_float16"],
                   "small_images": ["skip", "pad"]}
  values(ZOO_ARGV)
  assert training.config_from_flags(values) == ZOO_CONFIG
  values.unparse_flags()
  values(["train.py", "--lmbda", "0.01", "--model_path", "x",
          "--keep_checkpoints", "5", "--val_batch_size", "2"])
  cfg = training.config_from_flags(values)
  assert (cfg.keep_checkpoints, cfg.val_batch_size) == (5, 2)
  required = {name for name in values
              if fields[name].default is dataclasses.MISSING}
  assert required == {"lmbda", "model_path"}


def test_unknown_precision_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="precision must be one of"):
    training.TrainConfig(model_path=str(tmp_path), lmbda=0.01,
                         train_glob="x", precision="float64").validate()


def _converted_checkpoint(path):
  """A model directory as bin/convert.py writes it; returns its model."""
  tf.keras.utils.set_random_seed(SOURCE_SEED)
  model = DCAE("tiny").build_weights()
  ckpt_lib.save_model(model, path, ckpt_lib.make_meta(model.config, 0.01))
  return model


class _WeightsAtBegin(training.Hook):
  """The model's weights when the loop begins (after restoring)."""

  def __init__(self):
    self.trainer = None
    self.weights = None

  def begin(self, loop):
    self.weights = [v.numpy()
                    for v in self.trainer.model.trainable_variables]


@dataclasses.dataclass
class _Run:
  source: str
  source_model: tf.keras.Model
  model_path: str
  result: training.TrainResult
  weights_at_begin: list


@pytest.fixture(name="run", scope="module")
def fixture_run(tmp_path_factory, images):
  """A fresh run from a converted checkpoint, with validation."""
  tmp = tmp_path_factory.mktemp("run")
  train_glob, val_glob = images
  source = str(tmp / "converted")
  source_model = _converted_checkpoint(source)
  cfg = training.TrainConfig(**config(
      tmp / "run", train_glob, val_glob=val_glob, steps=RUN_STEPS,
      validate_every=RUN_VALIDATE_EVERY, checkpoint_every=1000, log_every=1,
      learning_rate=RUN_LEARNING_RATE, lr_decay_step=RUN_DECAY_STEP,
      init_from=source))
  hook = _WeightsAtBegin()
  trainer = training.Trainer(cfg, extra_hooks=[hook])
  hook.trainer = trainer
  return _Run(source, source_model, str(tmp / "run"), trainer.train(),
              hook.weights)


@pytest.mark.slow
def test_validation_loss_falls(run):
  result = run.result
  steps = [s for s, _ in result.val_history]
  assert steps == [0, RUN_VALIDATE_EVERY, RUN_STEPS]
  losses = [m["loss"] for _, m in result.val_history]
  psnrs = [m["psnr"] for _, m in result.val_history]
  assert losses[2] < losses[1] < losses[0]
  assert losses[2] < 0.5 * losses[0]
  assert psnrs[2] > psnrs[0] + 3.0
  assert result.val_metrics == result.val_history[-1][1]
  # Final checkpoint, meta and TensorBoard logs are in the model directory.
  assert result.step == RUN_STEPS
  assert result.checkpoint.endswith(f"ckpt-{RUN_STEPS}")
  with open(os.path.join(run.model_path, "model.json")) as f:
    meta = json.load(f)
  assert meta["preset"] == "tiny" and meta["step"] == RUN_STEPS
  assert meta["lmbda"] == 0.01 and meta["metric"] == "mse"
  assert meta["config"]["latent_channels"] == 40
  tags = set()
  for sub in ("train", "validation"):
    for event_file in tf.io.gfile.glob(os.path.join(run.model_path, sub, "*")):
      for event in tf.compat.v1.train.summary_iterator(event_file):
        tags.update(v.tag for v in event.summary.value)
  assert {"loss", "bpp", "bpp_y", "bpp_z", "mse", "psnr", "learning_rate",
          "images_per_second", "original_vs_reconstruction"} <= tags


@pytest.mark.slow
def test_init_from_starts_from_a_converted_checkpoint(run, images, tmp_path):
  """--init_from loads a model directory's weights (what bin/convert.py
  writes from an official checkpoint) and records where they came from
  (tests/test_train.py::test_resume_after_sigkill: also when resumed)."""
  assert len(run.weights_at_begin) == len(
      run.source_model.trainable_variables)
  for a, b in zip(run.source_model.trainable_variables, run.weights_at_begin):
    np.testing.assert_array_equal(a.numpy(), b)
  with open(os.path.join(run.model_path, "model.json")) as f:
    assert json.load(f)["init_from"] == run.source
  # Throughput leaves out the run's first step (it traces the step).
  event_files = tf.io.gfile.glob(os.path.join(run.model_path, "train", "*"))
  assert summary_steps(event_files, "images_per_second") == list(
      range(2, RUN_STEPS + 1))
  # Weights of another preset are refused before any training.
  train_glob, _ = images
  other = str(tmp_path / "other")
  ckpt_lib.write_meta(other, dict(ckpt_lib.read_meta(run.source),
                                  preset="small"))
  for name in os.listdir(run.source):
    if name.startswith(("ckpt", "checkpoint")):
      shutil.copy(os.path.join(run.source, name), other)
  with pytest.raises(ValueError, match="is a 'small' model, not 'tiny'"):
    training.train(training.TrainConfig(**config(
        tmp_path / "run2", train_glob, steps=1, init_from=other)))


def _shipped_export():
  """The default shipped model's folder (saved_models/NAME)."""
  model = zoo.default_model(SHIPPED_MODELS)
  if model is None:
    pytest.skip(f"no default model in {SHIPPED_MODELS}")
  return model.path


@pytest.mark.slow
def test_init_from_starts_from_an_export(tmp_path, images):
  """--init_from also takes an export (saved_models/NAME): a model's weights
  are kept once, in its export, and a fine-tune starts from there. Checked
  where the run starts: after restoring, before the first step (that an
  export's weights read back exactly: tests/test_weights_source.py)."""
  train_glob, _ = images
  source = _shipped_export()
  expected, meta = weights_source.load_model(source)
  trainer = training.Trainer(training.TrainConfig(**config(
      tmp_path / "run", train_glob, steps=1, init_from=source,
      preset=meta["preset"])))
  trainer.create_state()
  assert trainer.restore() == 0
  assert len(trainer.model.variables) == len(expected.variables)
  for a, b in zip(expected.variables, trainer.model.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert trainer.meta(0)["init_from"] == source
  other = "tiny" if meta["preset"] != "tiny" else "small"
  with pytest.raises(ValueError, match=f"is a '{meta['preset']}' model, "
                     f"not '{other}'"):
    training.train(training.TrainConfig(**config(
        tmp_path / "run2", train_glob, steps=1, init_from=source,
        preset=other)))


def _checkpoint_step(model_path):
  latest = tf.train.latest_checkpoint(str(model_path))
  if not latest:
    return 0
  return int(tf.train.load_checkpoint(latest).get_tensor(
      "step/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, images):
  """bin/train.py killed with SIGKILL resumes from its newest checkpoint:
  the same command line, --init_from given once and still recorded."""
  train_glob, _ = images
  model_path = tmp_path / "run"
  source = str(tmp_path / "converted")
  _converted_checkpoint(source)
  cmd = [sys.executable, TRAIN_PY, "--lmbda", "0.01", "--preset", "tiny",
         "--train_glob", train_glob, "--model_path", str(model_path),
         "--batch_size", "2", "--crop_size", str(CROP),
         "--checkpoint_every", "1", "--log_every", "1"]
  log1 = open(tmp_path / "first.log", "w")
  proc = subprocess.Popen(cmd + ["--steps", "100000", "--init_from", source],
                          stdout=log1, stderr=subprocess.STDOUT, env=env())
  deadline = time.time() + PROCESS_TIMEOUT
  try:
    # Kill it right after its second checkpoint, likely while it writes
    # summaries or the next checkpoint.
    while (not os.path.exists(model_path / "ckpt-2.index") and
           time.time() < deadline and proc.poll() is None):
      time.sleep(0.2)
    time.sleep(0.3)
    assert proc.poll() is None, open(tmp_path / "first.log").read()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == -signal.SIGKILL
  killed_at = _checkpoint_step(model_path)
  assert killed_at >= 2
  # The newest checkpoint restores completely.
  restored = tf.train.load_checkpoint(tf.train.latest_checkpoint(
      str(model_path)))
  assert any(k.startswith("model/") for k in
             restored.get_variable_to_shape_map())
  # Leftovers of an interrupted write are ignored / cleaned up.
  (model_path / f"ckpt-{killed_at + 1}_temp").mkdir()
  (model_path / f"ckpt-{killed_at + 1}_temp" / "part-00000").write_bytes(
      b"\x00" * 10)
  first_events = set(tf.io.gfile.glob(str(model_path / "train" / "*")))

  proc = subprocess.run(cmd + ["--steps", str(killed_at + 2)],
                        capture_output=True, text=True, env=env(),
                        timeout=PROCESS_TIMEOUT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"at step {killed_at}" in proc.stderr
  assert "resumed from" in proc.stderr
  assert _checkpoint_step(model_path) == killed_at + 2
  assert tf.train.latest_checkpoint(str(model_path)).endswith(
      f"ckpt-{killed_at + 2}")
  assert not (model_path / f"ckpt-{killed_at + 1}_temp").exists()
  with open(model_path / "model.json") as f:
    meta = json.load(f)
  # Resumed without the flag, it still says where the weights came from.
  assert meta["step"] == killed_at + 2 and meta["init_from"] == source
  # Throughput leaves out the resumed run's first step too (it traces).
  resumed_events = sorted(
      set(tf.io.gfile.glob(str(model_path / "train" / "*"))) - first_events)
  assert len(resumed_events) == 1
  assert summary_steps(resumed_events, "images_per_second") == [
      killed_at + 2]
