#!/usr/bin/env python3
"""Trains (or resumes training of) a DCAE model.

  python bin/train.py --lmbda 0.0067 --preset paper
      --train_glob 'data/**/*.png' --val_glob 'kodak/*.png' --model_path runs/x

Rerun the same command to resume from the newest checkpoint in --model_path.
TensorBoard: tensorboard --logdir runs/x. Multi-worker: set TF_CONFIG in
every worker and pass --strategy multi_worker (docs/training.md).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from dcae_tf import training

training.define_flags()
# `--help` lists them (they are defined in dcae_tf.training.flags).
flags.adopt_module_key_flags(training.flags)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  try:
    training.train(training.config_from_flags())
  except (ValueError, FloatingPointError) as e:
    print(f"train.py: error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
