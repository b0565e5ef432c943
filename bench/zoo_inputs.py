"""What the per-model accuracy benches share: their flags and inputs.

bench/transform_dtype_accuracy.py and bench/exact_rate.py both compare two
codecs of each export's weights on a folder of photographs; this module
parses their common flags (--models, default every model in
saved_models/; --images, default data/test; --output) and reads the
photographs, each failure one line and a non-zero exit.
"""
import argparse
import glob
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH)
MODELS_GLOB = os.path.join(REPO_ROOT, "saved_models", "dcae-*")


def parse(description):
  """(args, [(image name, uint8 pixels)]) of the command line."""
  # pylint: disable-next=import-outside-toplevel
  from dcae_tf.evaluation import images as images_lib
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--models", nargs="+",
                      default=sorted(glob.glob(MODELS_GLOB)))
  parser.add_argument("--images", default=os.path.join(REPO_ROOT, "data",
                                                        "test"))
  parser.add_argument("--output", help="also write the results as JSON")
  args = parser.parse_args()
  try:
    paths = images_lib.list_images(args.images)
    photos = [(images_lib.image_name(p, args.images),
               images_lib.read_image(p)) for p in paths]
  except ValueError as e:
    sys.exit(f"error: {e}")
  if not args.models:
    sys.exit("error: no models (pass --models)")
  return args, photos
