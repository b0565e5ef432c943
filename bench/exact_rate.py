"""What exact entropy parameters cost in rate: exact against float numerics.

  python bench/exact_rate.py [--models saved_models/NAME ...]
      [--images data/test] [--output exact_rate.json]

For each export (default: every model in saved_models/) the script builds
two codecs of its weights, stored as the export stores them, that differ
only in how they compute the entropy parameters (`DCAECodec(numerics=)`):
"exact" (`layers.exact`, what every codec now uses) and "float" (the
float32 arithmetic of training, what codecs used before). Each photograph
is compressed by both and decoded; the script prints actual bitstream
sizes and PSNR per image, the worst per-image size change, and the
BD-rate (PSNR) of the zoo's exact curve against its float curve (every
model's mean bpp and PSNR one point), against the targets: BD-rate at most
TARGET_BD_RATE_PERCENT, no image more than TARGET_IMAGE_PERCENT larger.
"""
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (os.path.dirname(BENCH), BENCH)
                if p not in sys.path]

# pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402

import machine  # noqa: E402
import zoo_inputs  # noqa: E402
from dcae_tf.codec import build  # noqa: E402
from dcae_tf.codec import numerics as numerics_lib  # noqa: E402
from dcae_tf.evaluation import bd  # noqa: E402
from dcae_tf.evaluation import metrics  # noqa: E402
from dcae_tf.runtime import weights_source  # noqa: E402

TARGET_BD_RATE_PERCENT = 0.5
TARGET_IMAGE_PERCENT = 1.0


def coded(codec, image):
  """(bpp, PSNR) of one photograph's actual bitstream through `codec`."""
  data = codec.compress(tf.constant(image)).numpy()
  decoded = codec.decompress(data).numpy()
  return (len(data) * 8 / (image.shape[0] * image.shape[1]),
          metrics.psnr(image, decoded))


def measure_model(path, photos):
  """{image: {numerics: (bpp, psnr)}} of one export's weights."""
  model, meta = weights_source.load_model(path)
  rows = {name: {} for name, _ in photos}
  for numerics in numerics_lib.NUMERICS:
    codec = build.codec_from_model(model, meta,
                                   weight_dtype=meta["weight_dtype"],
                                   numerics=numerics)
    for name, image in photos:
      rows[name][numerics] = coded(codec, image)
  return rows


def growth_percent(row):
  return 100. * (row[numerics_lib.EXACT][0] / row[numerics_lib.FLOAT][0] - 1.)


def main():
  args, photos = zoo_inputs.parse(__doc__.splitlines()[0])
  print(f"{machine.machine_info()['date']}, {machine.cpu_model()}; targets: "
        f"BD-rate <= {TARGET_BD_RATE_PERCENT} %, every image <= "
        f"{TARGET_IMAGE_PERCENT} % larger")
  results, curve = {}, {n: [] for n in numerics_lib.NUMERICS}
  for path in args.models:
    name = os.path.basename(os.path.normpath(path))
    try:
      rows = measure_model(path, photos)
    except (OSError, ValueError) as e:
      sys.exit(f"error: {path}: {e}")
    print(f"\n{name}\n  {'image':<40} {'bpp float -> exact':>22} {'d %':>7} "
          f"{'PSNR float -> exact':>21}")
    for image_name, row in rows.items():
      (bf, pf), (be, pe) = row[numerics_lib.FLOAT], row[numerics_lib.EXACT]
      print(f"  {image_name:<40} {bf:.5f} -> {be:.5f} "
            f"{growth_percent(row):+7.3f} {pf:8.3f} -> {pe:8.3f}", flush=True)
    for numerics in numerics_lib.NUMERICS:
      curve[numerics].append(np.mean([r[numerics] for r in rows.values()],
                                     axis=0))
    results[name] = dict(
        images=rows,
        worst_growth_percent=max(growth_percent(r) for r in rows.values()))
  exact_curve, float_curve = (np.array(curve[n]) for n in
                              (numerics_lib.EXACT, numerics_lib.FLOAT))
  result = bd.bd(exact_curve[:, 0], exact_curve[:, 1], float_curve[:, 0],
                 float_curve[:, 1], test="exact", anchor="float")
  worst = max(r["worst_growth_percent"] for r in results.values())
  print(f"\nBD-rate (PSNR) of exact against float: {result.bd_rate:+.3f} % "
        f"({result.note or 'full overlap'}); largest growth of one image: "
        f"{worst:+.3f} %: "
        f"{'within' if result.bd_rate <= TARGET_BD_RATE_PERCENT and worst <= TARGET_IMAGE_PERCENT else 'OUTSIDE'}"
        " the targets")
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(dict(machine=machine.machine_info(), results=results,
                     bd_rate_percent=result.bd_rate,
                     worst_growth_percent=worst), f, indent=1)


if __name__ == "__main__":
  main()
