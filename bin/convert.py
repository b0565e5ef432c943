"""Converts an official PyTorch DCAE checkpoint into a dcae_tf model dir.

  python bin/convert.py --checkpoint 0.0018checkpoint_best.pth.tar \
      --preset paper --lmbda 0.0018 --output runs/official_0018
"""
import sys

from absl import app
from absl import flags

flags.DEFINE_string("checkpoint", None, "Official .pth / .pth.tar file.",
                    required=True)
flags.DEFINE_string("output", None, "Model directory to write.",
                    required=True)
flags.DEFINE_string("preset", "paper", "Architecture preset of the weights.")
flags.DEFINE_float("lmbda", None, "Lambda the checkpoint was trained with "
                   "(recorded for export).")
flags.DEFINE_enum("metric", "mse", ["mse", "ms-ssim"],
                  "Distortion metric the checkpoint was trained for.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from dcae_tf import convert  # pylint: disable=import-outside-toplevel
  try:
    report = convert.convert_checkpoint(FLAGS.checkpoint, FLAGS.preset,
                                        FLAGS.output, FLAGS.lmbda,
                                        FLAGS.metric)
  except (convert.WeightsError, ValueError, OSError) as e:
    sys.exit(f"convert: error: {e}")
  print(f"loaded {len(report['loaded'])} tensors "
        f"({report['learned_values']:,} values), skipped "
        f"{len(report['skipped_buffers'])} derived buffers -> {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
