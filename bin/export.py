"""Exports a model directory as a versioned SavedModel for TF Serving.

  python bin/export.py --checkpoint runs/x --name dcae-small-0067
  -> saved_models/dcae-small-0067/<next version>/

`--checkpoint` may also be an export (a model folder or version directory):
its weights are re-exported with this code's signatures and format, so a
model's weights live in one place (`runtime.weights_source`).
"""
import os
import sys

from absl import app
from absl import flags

flags.DEFINE_string("checkpoint", None, "Model directory (bin/train.py "
                    "--model_path or bin/convert.py --output), or an export "
                    "to re-export.", required=True)
flags.DEFINE_string("name", None, "Model name (default: the directory's "
                    "name); also recorded in every bitstream header.")
flags.DEFINE_string("models_dir", "saved_models", "Where exports live.")
flags.DEFINE_integer("version", None, "Version number (default: next).")
flags.DEFINE_integer("max_pixels", None, "Largest image (H*W) the exported "
                     "signatures accept.")
flags.DEFINE_float("lmbda", None, "Override the recorded lambda.")
flags.DEFINE_enum("metric", None, ["mse", "ms-ssim"],
                  "Override the recorded metric.")
flags.DEFINE_enum("weight_dtype", "float32", ["float32", "float16"],
                  "How the export stores its layer weights: float16 halves "
                  "the weights' size; computation stays float32 (the "
                  "rounding moved the shipped models' PSNR by at most "
                  "0.013 dB, see dcae_tf/codec/weights.py).")
flags.DEFINE_enum("transform_dtype", "float32", ["float32", "bfloat16"],
                  "What g_a and g_s compute in: bfloat16 is faster on CPUs "
                  "with bfloat16 instructions; the hyperprior, slices and "
                  "every entropy parameter stay float32, so the "
                  "fingerprint does not change (dcae_tf/codec/"
                  "transform_dtype.py).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  # pylint: disable=import-outside-toplevel
  from dcae_tf import codec as codec_lib
  from dcae_tf import export
  from dcae_tf.codec import checkpoint
  from dcae_tf.runtime import weights_source
  name = FLAGS.name or os.path.basename(os.path.normpath(FLAGS.checkpoint))
  kwargs = {}
  if FLAGS.max_pixels:
    kwargs["max_pixels"] = FLAGS.max_pixels
  try:
    if weights_source.is_export(FLAGS.checkpoint):
      model, meta = weights_source.load_model(FLAGS.checkpoint)
    else:
      model, meta = checkpoint.load_model(FLAGS.checkpoint)
    codec = codec_lib.codec_from_model(
        model, meta, name=name, lmbda=FLAGS.lmbda, metric=FLAGS.metric,
        weight_dtype=FLAGS.weight_dtype,
        transform_dtype=FLAGS.transform_dtype, **kwargs)
    path = export.save_versioned(codec, os.path.join(FLAGS.models_dir, name),
                                 FLAGS.version)
  except (OSError, ValueError) as e:
    sys.exit(f"export: error: {e}")
  print(f"exported {name} (fingerprint {codec.fingerprint}) -> {path}")


if __name__ == "__main__":
  app.run(main)
