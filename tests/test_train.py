"""Training end to end: real DCAE ("tiny"), real files, real subprocesses.

The model pads to multiples of 128, so 128x128 crops cost no more than
smaller ones. Every training process spends most of its time tracing the
train step once; the tests therefore run few, short processes, in parallel
where they are independent (2 cores).
"""
import dataclasses
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags
import tensorflow as tf

from dcae_tf import checkpoint as ckpt_lib
from dcae_tf import export
from dcae_tf import training
from dcae_tf.codec import DCAECodec
from dcae_tf.model import DCAE
from tests.test_data import write_images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "bin", "train.py")
CROP = 128
# Startup (tracing the train step) dominates; generous on a shared machine.
PROCESS_TIMEOUT = 600

# Runs training.train(TrainConfig(**json)) in a fresh process, optionally
# over N logical CPU devices (must be set before TF initializes), and dumps
# the model and optimizer variables.
RUNNER = r"""
import json, sys
import numpy as np
import tensorflow as tf
args = json.loads(sys.argv[1])
cpus = args.pop("logical_cpus", 0)
dump = args.pop("dump", None)
if cpus:
  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices("CPU")[0],
      [tf.config.LogicalDeviceConfiguration()] * cpus)
from absl import logging
logging.set_verbosity(logging.INFO)  # The run's log lines, as bin/train.py.
from dcae_tf import training
result = training.train(training.TrainConfig(**args))
if dump:
  values = [v.numpy() for v in result.model.weights]
  values += [v.numpy() for v in result.optimizer.variables]
  np.savez(dump, *values)
  with open(dump + ".json", "w") as f:
    json.dump({"step": result.step, "train": result.train_metrics,
               "num_weights": len(result.model.weights),
               "optimizer_variables": [v.name for v in
                                       result.optimizer.variables]}, f)
"""


def _env(**extra):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO,
             CUDA_VISIBLE_DEVICES="")
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def _start_runner(args, log_path, **env):
  log = open(log_path, "w")
  return subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(args)],
                          stdout=log, stderr=subprocess.STDOUT,
                          env=_env(**env), cwd=REPO)


def _wait(procs, logs):
  for proc, log in zip(procs, logs):
    try:
      proc.wait(timeout=PROCESS_TIMEOUT)
    finally:
      if proc.poll() is None:
        proc.kill()
    assert proc.returncode == 0, open(log).read()[-3000:]


def _load_dump(path):
  with np.load(path) as f:
    arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
  with open(path + ".json") as f:
    return arrays, json.load(f)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  root = tmp_path_factory.mktemp("images")
  write_images(str(root / "train"), count=8, size=(144, 160), seed=0)
  write_images(str(root / "val"), count=2, size=(128, 128), seed=1,
               corrupt=False, small=False)
  return str(root / "train" / "**" / "*"), str(root / "val")


def _config(model_path, train_glob, **kw):
  args = dict(model_path=str(model_path), lmbda=0.01, preset="tiny",
              train_glob=train_glob, batch_size=4, crop_size=CROP,
              verbose=False)
  args.update(kw)
  return args


def test_empty_glob_is_a_clear_cli_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, TRAIN_PY, "--lmbda", "0.01", "--preset", "tiny",
       "--train_glob", str(tmp_path / "**" / "*.png"),
       "--model_path", str(tmp_path / "run")],
      capture_output=True, text=True, env=_env(), timeout=120)
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("train.py: error: no image files")
  assert "Traceback" not in proc.stderr


def test_missing_required_flag_is_a_usage_error(tmp_path):
  proc = subprocess.run([sys.executable, TRAIN_PY, "--preset", "tiny"],
                        capture_output=True, text=True, env=_env(),
                        timeout=120)
  assert proc.returncode != 0
  assert "--lmbda" in proc.stderr and "Traceback" not in proc.stderr


def test_every_config_field_is_a_flag_with_the_same_default():
  """bin/train.py --help explains every setting, and a flag's default is
  the library's."""
  values = flags.FlagValues()
  training.define_flags(values)
  fields = {f.name: f.default for f in dataclasses.fields(
      training.TrainConfig)}
  assert set(training.FLAG_NAMES) == set(fields) - set(training.NOT_FLAGS)
  for name in training.FLAG_NAMES:
    assert values[name].help, name
    default = fields[name]
    if default is not dataclasses.MISSING:
      assert values[name].default == default, name
  values(["train.py", "--lmbda", "0.01", "--model_path", "x",
          "--keep_checkpoints", "5", "--val_batch_size", "2"])
  cfg = training.config_from_flags(values)
  assert (cfg.keep_checkpoints, cfg.val_batch_size) == (5, 2)


@pytest.mark.slow
def test_validation_loss_falls(tmp_path, images):
  train_glob, val_glob = images
  cfg = training.TrainConfig(**_config(
      tmp_path / "run", train_glob, val_glob=val_glob, steps=120,
      validate_every=60, checkpoint_every=1000, log_every=20,
      learning_rate=1e-3, lr_decay_step=100))
  result = training.train(cfg)
  steps = [s for s, _ in result.val_history]
  assert steps == [0, 60, 120]
  losses = [m["loss"] for _, m in result.val_history]
  psnrs = [m["psnr"] for _, m in result.val_history]
  assert losses[2] < losses[1] < losses[0]
  assert losses[2] < 0.5 * losses[0]
  assert psnrs[2] > psnrs[0] + 3.0
  # Final checkpoint, meta and TensorBoard logs are in the model directory.
  assert result.step == 120
  assert result.checkpoint.endswith("ckpt-120")
  with open(tmp_path / "run" / "model.json") as f:
    meta = json.load(f)
  assert meta["preset"] == "tiny" and meta["step"] == 120
  assert meta["lmbda"] == 0.01 and meta["metric"] == "mse"
  assert meta["config"]["latent_channels"] == 40
  tags = set()
  for sub in ("train", "validation"):
    for event_file in tf.io.gfile.glob(str(tmp_path / "run" / sub / "*")):
      for event in tf.compat.v1.train.summary_iterator(event_file):
        tags.update(v.tag for v in event.summary.value)
  assert {"loss", "bpp", "bpp_y", "bpp_z", "mse", "psnr", "learning_rate",
          "images_per_second", "original_vs_reconstruction"} <= tags


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32"])
def test_mirrored_two_devices_match_one_device(tmp_path, images, precision):
  """Same global batch on 1 and on 2 replicas -> the same update.

  (mixed_bfloat16 is not held to this yet: measured 2026-12-01 on a Zen 3
  EPYC, its one-step metrics differed by 1.7 % between 1 and 2 replicas,
  bfloat16 rounding flipping straight-through roundings of the latents;
  its tolerance needs measuring first.)

  Clipping is active (small clip_norm): it would differ if a replica clipped
  its own partial gradient. The Adam moments are compared too: they reveal a
  wrongly scaled or unsummed gradient that Adam's normalized update hides.

  One step, not several: rates use straight-through rounding here, and a
  freshly initialized model has latents of magnitude ~1e3, so the 1e-7
  relative differences of batch-4 vs batch-2 convolutions flip a few
  roundings; from the second step on the runs then legitimately diverge
  (measured 2026-11-26: step-1 weights within 3e-5·lr, step-2 within
  0.4·lr, step-3 loss 0.6 % apart).
  """
  train_glob, _ = images
  lr = 1e-3
  common = dict(steps=1, deterministic=True, clip_norm=0.05,
                learning_rate=lr, checkpoint_every=1000, precision=precision)
  procs, logs, dumps = [], [], []
  for name, cpus, strategy in (("one", 0, "default"),
                               ("two", 2, "mirrored")):
    dump = str(tmp_path / f"{name}.npz")
    args = _config(tmp_path / name, train_glob, strategy=strategy, dump=dump,
                   logical_cpus=cpus, **common)
    logs.append(str(tmp_path / f"{name}.log"))
    procs.append(_start_runner(args, logs[-1]))
    dumps.append(dump)
  _wait(procs, logs)
  assert "over 2 replica(s)" in open(logs[1]).read()
  (one, one_meta), (two, two_meta) = map(_load_dump, dumps)
  assert one_meta["step"] == two_meta["step"] == 1
  for key in ("loss", "bpp", "mse", "grad_norm"):
    assert one_meta["train"][key] == pytest.approx(two_meta["train"][key],
                                                   rel=1e-5)
  # Clipping was active (the norm before clipping exceeded clip_norm).
  assert one_meta["train"]["grad_norm"] > 0.05
  assert len(one) == len(two)
  n = one_meta["num_weights"]
  assert n == two_meta["num_weights"] and 0 < n < len(one)
  # Weights: every element within a thousandth of a step (Adam's first
  # step moves each by ~lr).
  for a, b in zip(one[:n], two[:n]):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3 * lr)
  # Optimizer state: the iteration, then each variable's first (m/...) and
  # second (v/...) moments. Each moment array is compared to within 1e-4 of
  # the largest moment of its kind: a per-array scale would make parameters
  # whose gradient is zero in theory (an attention key's bias: softmax
  # ignores it) demand agreement of their rounding noise.
  names = one_meta["optimizer_variables"]
  assert names == two_meta["optimizer_variables"]
  assert names[0].startswith("iteration") and len(names) == len(one) - n
  for kind in ("m/", "v/"):
    pairs = [(a, b) for name, a, b in zip(names, one[n:], two[n:])
             if name.startswith(kind)]
    assert len(pairs) == (len(names) - 1) // 2
    scale = max(float(np.abs(a).max()) for a, _ in pairs)
    assert scale > 0
    for a, b in pairs:
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale)
  np.testing.assert_array_equal(one[n], two[n])  # iteration


@pytest.mark.slow
def test_init_from_starts_from_a_converted_checkpoint(tmp_path, images):
  """--init_from loads a model directory's weights (what bin/convert.py
  writes from an official checkpoint) and records where they came from."""
  train_glob, _ = images
  source = str(tmp_path / "converted")
  tf.keras.utils.set_random_seed(99)  # Not the training run's seed (0).
  model = DCAE("tiny").build_weights()
  ckpt_lib.save_model(model, source, ckpt_lib.make_meta(model.config, 0.01))
  # A negligible learning rate: the weights after one step are the source's.
  result = training.train(training.TrainConfig(**_config(
      tmp_path / "run", train_glob, steps=1, init_from=source,
      learning_rate=1e-12, checkpoint_every=1000)))
  assert result.step == 1
  for a, b in zip(model.trainable_variables,
                  result.model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-9)
  with open(tmp_path / "run" / "model.json") as f:
    assert json.load(f)["init_from"] == source
  # A resumed run without the flag still says where the weights came from.
  training.train(training.TrainConfig(**_config(
      tmp_path / "run", train_glob, steps=3, learning_rate=1e-12,
      checkpoint_every=1000, log_every=1)))
  with open(tmp_path / "run" / "model.json") as f:
    meta = json.load(f)
  assert meta["step"] == 3 and meta["init_from"] == source
  # Throughput leaves out each run's first step (it traces the step): the
  # first run (step 1) and the resumed run's first (step 2) log none.
  throughput_steps = [
      event.step
      for event_file in tf.io.gfile.glob(str(tmp_path / "run" / "train" / "*"))
      for event in tf.compat.v1.train.summary_iterator(event_file)
      for value in event.summary.value if value.tag == "images_per_second"]
  assert throughput_steps == [3]
  # Weights of another preset are refused before any training.
  other = str(tmp_path / "other")
  ckpt_lib.write_meta(other, dict(ckpt_lib.read_meta(source), preset="small"))
  for name in os.listdir(source):
    if name.startswith(("ckpt", "checkpoint")):
      shutil.copy(os.path.join(source, name), other)
  with pytest.raises(ValueError, match="is a 'small' model, not 'tiny'"):
    training.train(training.TrainConfig(**_config(
        tmp_path / "run2", train_glob, steps=1, init_from=other)))


@pytest.mark.slow
def test_init_from_starts_from_an_export(tmp_path, images):
  """--init_from also takes an export (saved_models/NAME): a model's weights
  are kept once, in its export, and a fine-tune starts from there."""
  train_glob, _ = images
  tf.keras.utils.set_random_seed(98)
  model = DCAE("tiny").build_weights()
  source = str(tmp_path / "exports" / "source")
  export.save_versioned(DCAECodec(model, name="source"), source)
  result = training.train(training.TrainConfig(**_config(
      tmp_path / "run", train_glob, steps=1, init_from=source,
      learning_rate=1e-12, checkpoint_every=1000)))
  for a, b in zip(model.trainable_variables,
                  result.model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-9)
  with pytest.raises(ValueError, match="is a 'tiny' model, not 'small'"):
    training.train(training.TrainConfig(**_config(
        tmp_path / "run2", train_glob, steps=1, init_from=source,
        preset="small")))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_run_resumes_in_its_policy(tmp_path, images,
                                                   precision):
  """A mixed-precision run computes its transforms in the reduced dtype and
  everything that decides the rate in float32; a resumed run keeps the
  policy (and float16's loss scale), another policy is refused, and the
  weights load as an ordinary float32 model for export.

  The resume is tested with float16 only: the policy is restored the same
  way for both, and float16 has the extra state (a traced mixed step is
  the costly part of this test)."""
  train_glob, _ = images
  model_path = tmp_path / "run"
  args = _config(model_path, train_glob, steps=2, checkpoint_every=1000)
  result = training.train(training.TrainConfig(**args, precision=precision))
  compute = "bfloat16" if precision == "mixed_bfloat16" else "float16"
  model = result.model
  for transform in (model.g_a, model.g_s, model.h_a, model.h_s_scales,
                    model.h_s_means):
    assert transform.compute_dtype == compute
  assert model.compute_dtype == model.slices.compute_dtype == "float32"
  assert all(v.dtype == tf.float32 for v in model.weights)
  out = model(tf.random.uniform((1, CROP, CROP, 3)), training=True)
  assert all(v.dtype == tf.float32 for v in out.values())
  scaled = isinstance(result.optimizer,
                      tf.keras.mixed_precision.LossScaleOptimizer)
  assert scaled == (precision == "mixed_float16")
  with open(model_path / "model.json") as f:
    assert json.load(f)["precision"] == precision
  def loss_scale_state(optimizer):
    return float(optimizer.loss_scale), int(optimizer.dynamic_counter)
  state = loss_scale_state(result.optimizer) if scaled else None

  resumed = result
  if scaled:
    # Resumed without --precision: the run's own policy and state.
    resumed = training.train(training.TrainConfig(**dict(args, steps=3)))
    assert resumed.step == 3
    assert resumed.model.g_a.compute_dtype == compute
    # Restored, not re-initialised: one more step either counts one more
    # good step at the same scale or halves the scale after an overflow
    # (a fresh scale would restart the good-step count at 0).
    scale, good_steps = state
    assert loss_scale_state(resumed.optimizer) in {(scale, good_steps + 1),
                                                   (scale / 2, 0)}
    assert good_steps > 0 or scale < 2 ** 15
  with pytest.raises(ValueError, match=f"was trained with precision "
                     f"'{precision}'; this run asks for 'float32'"):
    training.train(training.TrainConfig(**dict(args, steps=4),
                                        precision="float32"))
  # The checkpoint is an ordinary model directory: an export builds a
  # float32 model from it, with the trained weights.
  loaded, meta = ckpt_lib.load_model(str(model_path))
  assert meta["precision"] == precision
  assert loaded.g_a.compute_dtype == "float32"
  for a, b in zip(loaded.trainable_variables,
                  resumed.model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_unknown_precision_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="precision must be one of"):
    training.TrainConfig(model_path=str(tmp_path), lmbda=0.01,
                         train_glob="x", precision="float64").validate()


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


@pytest.mark.slow
def test_multi_worker_ends_with_identical_weights(tmp_path, images):
  train_glob, _ = images
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  model_path = tmp_path / "run"
  procs, logs, dumps = [], [], []
  for index in range(2):
    tf_config = json.dumps({"cluster": {"worker": workers},
                            "task": {"type": "worker", "index": index}})
    dump = str(tmp_path / f"worker{index}.npz")
    args = _config(model_path, train_glob, strategy="multi_worker", steps=3,
                   checkpoint_every=2, dump=dump)
    logs.append(str(tmp_path / f"worker{index}.log"))
    procs.append(_start_runner(args, logs[-1], TF_CONFIG=tf_config))
    dumps.append(dump)
  _wait(procs, logs)
  (w0, meta0), (w1, meta1) = map(_load_dump, dumps)
  assert meta0["step"] == meta1["step"] == 3
  assert "over 2 replica(s)" in open(logs[0]).read()
  for a, b in zip(w0, w1):
    np.testing.assert_array_equal(a, b)
  # Only the chief (worker 0) wrote to the model directory.
  assert tf.train.latest_checkpoint(str(model_path)).endswith("ckpt-3")
  names = sorted(os.listdir(model_path))
  assert all(n.startswith(("ckpt-", "checkpoint", "model.json", "train",
                           "validation")) for n in names), names
  reader = tf.train.load_checkpoint(str(model_path))
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 3


def _checkpoint_step(model_path):
  latest = tf.train.latest_checkpoint(str(model_path))
  if not latest:
    return 0
  return int(tf.train.load_checkpoint(latest).get_tensor(
      "step/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, images):
  train_glob, _ = images
  model_path = tmp_path / "run"
  cmd = [sys.executable, TRAIN_PY, "--lmbda", "0.01", "--preset", "tiny",
         "--train_glob", train_glob, "--model_path", str(model_path),
         "--batch_size", "2", "--crop_size", str(CROP),
         "--checkpoint_every", "2", "--log_every", "2"]
  log1 = open(tmp_path / "first.log", "w")
  proc = subprocess.Popen(cmd + ["--steps", "100000"], stdout=log1,
                          stderr=subprocess.STDOUT, env=_env())
  deadline = time.time() + PROCESS_TIMEOUT
  try:
    # Kill it right after its second checkpoint, likely while it writes
    # summaries or the next checkpoint.
    while (not os.path.exists(model_path / "ckpt-4.index") and
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
  assert killed_at >= 4 and killed_at % 2 == 0
  # The newest checkpoint restores completely.
  restored = tf.train.load_checkpoint(tf.train.latest_checkpoint(
      str(model_path)))
  assert any(k.startswith("model/") for k in
             restored.get_variable_to_shape_map())
  # Leftovers of an interrupted write are ignored / cleaned up.
  (model_path / f"ckpt-{killed_at + 1}_temp").mkdir()
  (model_path / f"ckpt-{killed_at + 1}_temp" / "part-00000").write_bytes(
      b"\x00" * 10)

  proc = subprocess.run(cmd + ["--steps", str(killed_at + 2)],
                        capture_output=True, text=True, env=_env(),
                        timeout=PROCESS_TIMEOUT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"at step {killed_at}" in proc.stderr
  assert "resumed from" in proc.stderr
  assert _checkpoint_step(model_path) == killed_at + 2
  assert tf.train.latest_checkpoint(str(model_path)).endswith(
      f"ckpt-{killed_at + 2}")
  assert not (model_path / f"ckpt-{killed_at + 1}_temp").exists()
  with open(model_path / "model.json") as f:
    assert json.load(f)["step"] == killed_at + 2
