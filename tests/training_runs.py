"""Helpers of the training tests (tests/test_train*.py): images, configs,
training processes.

The model pads to multiples of 128, so 128x128 crops cost no more than
smaller ones. A training run spends most of its time tracing and optimising
its train step once; the tests therefore share runs where they can, observe
a run through its hooks instead of running it again, check what happens
before the first step (restoring, refusing) without tracing a step, and run
independent processes in parallel (2 cores). The tests are spread over three
files so that CI's workers (pytest-xdist, by file) take them in parallel.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.test_data import write_images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(REPO, "bin", "train.py")
CROP = 128
# Startup (tracing the train step) dominates; generous on a shared machine.
PROCESS_TIMEOUT = 600
# Of a failed process's log, the end is shown.
LOG_TAIL_CHARS = 3000

# Runs training.train(TrainConfig(**json)) in a fresh process, optionally
# over N logical CPU devices (must be set before TF initializes), and dumps
# the model and optimizer variables. With "round_rates", the run's model is
# a DCAE whose rate terms read the rounded latents instead of noisy ones
# (`DCAE.rate_point`), so that a step has no randomness: runs that must take
# the same step compare exactly.
RUNNER = r"""
import json, sys
import numpy as np
import tensorflow as tf
args = json.loads(sys.argv[1])
cpus = args.pop("logical_cpus", 0)
dump = args.pop("dump", None)
round_rates = args.pop("round_rates", False)
if cpus:
  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices("CPU")[0],
      [tf.config.LogicalDeviceConfiguration()] * cpus)
from absl import logging
logging.set_verbosity(logging.INFO)  # The run's log lines, as bin/train.py.
from dcae_tf import model as model_lib
from dcae_tf import training
if round_rates:
  class RoundingDCAE(model_lib.DCAE):
    def rate_point(self, value, quantized, training):
      return quantized
  model_lib.DCAE = RoundingDCAE  # The class training.state builds.
result = training.train(training.TrainConfig(**args))
if dump:
  values = [v.numpy() for v in result.model.weights]
  values += [v.numpy() for v in result.optimizer.variables]
  np.savez(dump, *values)
  with open(dump + ".json", "w") as f:
    json.dump({"step": result.step, "train": result.train_metrics,
               "model_class": type(result.model).__name__,
               "num_weights": len(result.model.weights),
               "optimizer_variables": [v.name for v in
                                       result.optimizer.variables]}, f)
"""


def env(**extra):
  out = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO,
             CUDA_VISIBLE_DEVICES="")
  out.pop("TF_CONFIG", None)
  out.update(extra)
  return out


def start_runner(args, log_path, **extra_env):
  with open(log_path, "w") as log:
    return subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(args)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env=env(**extra_env), cwd=REPO)


def wait(procs, logs):
  for proc, log in zip(procs, logs):
    try:
      proc.wait(timeout=PROCESS_TIMEOUT)
    finally:
      if proc.poll() is None:
        proc.kill()
    with open(log) as f:
      assert proc.returncode == 0, f.read()[-LOG_TAIL_CHARS:]


def load_dump(path):
  with np.load(path) as f:
    arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
  with open(path + ".json") as f:
    return arrays, json.load(f)


def write_run_images(root):
  """(train glob, validation directory): 8 training images (and a corrupt
  and a too-small file, which the pipeline skips), 2 validation images."""
  write_images(str(root / "train"), count=8, size=(144, 160), seed=0)
  write_images(str(root / "val"), count=2, size=(128, 128), seed=1,
               corrupt=False, small=False)
  return str(root / "train" / "**" / "*"), str(root / "val")


@pytest.fixture(scope="module", name="images")
def fixture_images(tmp_path_factory):
  return write_run_images(tmp_path_factory.mktemp("images"))


def config(model_path, train_glob, **kw):
  """TrainConfig arguments of a tiny run."""
  args = dict(model_path=str(model_path), lmbda=0.01, preset="tiny",
              train_glob=train_glob, batch_size=4, crop_size=CROP,
              verbose=False)
  args.update(kw)
  return args


def summary_steps(event_files, tag):
  """Steps at which `tag` was written, over the given event files."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return [event.step for path in event_files
          for event in tf.compat.v1.train.summary_iterator(path)
          for value in event.summary.value if value.tag == tag]
