"""What bfloat16 transforms cost in rate and PSNR, per model and photograph.

  python bench/transform_dtype_accuracy.py [--models saved_models/NAME ...]
      [--images data/test] [--output accuracy.json]

For each export (default: every model in saved_models/) the script builds
two codecs of its weights, stored as the export stores them: float32
transforms and bfloat16 transforms (`codec.transform_dtype`). Each
photograph is compressed by both; the table prints the actual bitstream
sizes in bpp and the PSNR of the decoded images, bfloat16 against float32,
with the mean and the worst image per model, against the targets (PSNR
within TARGET_DB, bpp within TARGET_BPP_PERCENT). It also checks, on every
image, what makes bfloat16 transforms safe to ship: the bfloat16 decoder
reproduces the encoder's reconstruction exactly, and a float32 codec
decodes the bfloat16 bitstream to the same latents.

Accuracy, not speed: on a CPU without AVX512_BF16 or AMX TensorFlow
emulates bfloat16, and the figures are the same (bench/latency.py
--transform_dtype measures speed).
"""
import json
import os
import sys

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH)
for path in (REPO_ROOT, BENCH):
  if path not in sys.path:
    sys.path.insert(0, path)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402

import machine  # noqa: E402
import zoo_inputs  # noqa: E402
from dcae_tf.codec import build  # noqa: E402
from dcae_tf.codec import metadata as metadata_lib  # noqa: E402
from dcae_tf.evaluation import metrics  # noqa: E402
from dcae_tf.runtime import weights_source  # noqa: E402

TARGET_DB = 0.05
TARGET_BPP_PERCENT = 0.5


def codecs_of(path):
  """(float32, bfloat16) codecs of an export's weights, stored as it does."""
  model, meta = weights_source.load_model(path)
  return tuple(
      build.codec_from_model(model, meta, weight_dtype=meta["weight_dtype"],
                             transform_dtype=dtype)
      for dtype in (metadata_lib.FLOAT32, metadata_lib.BFLOAT16))


def measure(f32, bf16, image):
  """One photograph through both codecs: bpp, PSNR and the exactness checks."""
  pixels = image.shape[0] * image.shape[1]
  tensor = tf.constant(image)
  data32 = f32.compress(tensor).numpy()
  decoded32 = f32.decompress(data32).numpy()
  data16, y_hat, reconstruction = bf16.compress_with_reconstruction(tensor)
  decoded16 = bf16.decompress(data16).numpy()
  float32_y, _ = f32.decompress_with_latents(data16)
  return dict(
      bpp_float32=len(data32) * 8 / pixels,
      bpp_bfloat16=len(data16.numpy()) * 8 / pixels,
      psnr_float32=metrics.psnr(image, decoded32),
      psnr_bfloat16=metrics.psnr(image, decoded16),
      decode_is_reconstruction=bool(
          np.array_equal(decoded16, reconstruction.numpy())),
      float32_decodes_same_latents=bool(
          np.array_equal(float32_y.numpy(), y_hat.numpy())))


def deltas(row):
  return (100.0 * (row["bpp_bfloat16"] / row["bpp_float32"] - 1.0),
          row["psnr_bfloat16"] - row["psnr_float32"])


def summarise(rows):
  """Mean and worst (largest |delta|) bpp % and PSNR dB over the images."""
  d = np.array([deltas(r) for r in rows])
  worst = np.abs(d).max(axis=0)
  return dict(mean_bpp_percent=float(d[:, 0].mean()),
              mean_db=float(d[:, 1].mean()),
              worst_bpp_percent=float(worst[0]), worst_db=float(worst[1]),
              within_targets=bool(worst[0] <= TARGET_BPP_PERCENT and
                                  worst[1] <= TARGET_DB),
              exact=all(r["decode_is_reconstruction"] and
                        r["float32_decodes_same_latents"] for r in rows))


def main():
  args, photos = zoo_inputs.parse(__doc__.splitlines()[0])
  print(f"{machine.machine_info()['date']}, {machine.cpu_model()}; targets: "
        f"|dPSNR| <= {TARGET_DB} dB, |dbpp| <= {TARGET_BPP_PERCENT} %")
  results = {}
  for path in args.models:
    name = os.path.basename(os.path.normpath(path))
    try:
      f32, bf16 = codecs_of(path)
    except (OSError, ValueError) as e:
      sys.exit(f"error: {path}: {e}")
    rows = {}
    print(f"\n{name}\n  {'image':<40} {'bpp f32 -> bf16':>21} {'d %':>7} "
          f"{'PSNR f32 -> bf16':>19} {'d dB':>7}  exact")
    for image_name, image in photos:
      row = rows[image_name] = measure(f32, bf16, image)
      d_bpp, d_db = deltas(row)
      exact = (row["decode_is_reconstruction"] and
               row["float32_decodes_same_latents"])
      print(f"  {image_name:<40} {row['bpp_float32']:.5f} -> "
            f"{row['bpp_bfloat16']:.5f} {d_bpp:+7.2f} "
            f"{row['psnr_float32']:7.3f} -> {row['psnr_bfloat16']:7.3f} "
            f"{d_db:+7.3f}  {'yes' if exact else 'NO'}", flush=True)
    summary = summarise(list(rows.values()))
    print(f"  mean {summary['mean_bpp_percent']:+.2f} % "
          f"{summary['mean_db']:+.3f} dB; worst "
          f"{summary['worst_bpp_percent']:.2f} % {summary['worst_db']:.3f} dB"
          f": {'within' if summary['within_targets'] else 'OUTSIDE'} the "
          f"targets; {'exact' if summary['exact'] else 'NOT EXACT'}")
    results[name] = dict(images=rows, summary=summary)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(dict(machine=machine.machine_info(), results=results), f,
                indent=1)


if __name__ == "__main__":
  main()
