#!/usr/bin/env python3
"""Plots held-out bpp and PSNR against steps for training runs.

  python bin/plot_learning_curves.py runs/a runs/b --output curves.png \
      [--csv curves.csv]
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from dcae_tf.evaluation import learning_curve

flags.DEFINE_string("output", None, "PNG to write.", required=True)
flags.DEFINE_string("csv", None, "Also write the points as CSV.")
FLAGS = flags.FLAGS


def main(argv):
  runs = argv[1:]
  if not runs:
    raise app.UsageError("give one or more training run directories")
  try:
    curves = learning_curve.learning_curves(runs, FLAGS.output, FLAGS.csv)
  except (ValueError, OSError) as e:
    print(f"plot_learning_curves.py: error: {e}", file=sys.stderr)
    sys.exit(1)
  for run, points in curves.items():
    last = max(points)
    print(f"{run}: {len(points)} validations, step {last}: "
          f"bpp {points[last]['bpp']:.4f}, PSNR {points[last]['psnr']:.2f} dB")
  print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
