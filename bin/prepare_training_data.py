#!/usr/bin/env python3
"""Writes the zoo training photographs from unpacked packages.

  python bin/prepare_training_data.py --sources data/training_sources.tsv \
      --root /tmp/unpacked --out data/zoo_train --heldout_dir data/test

`--root` holds one directory per source package, laid out as the package
installs its files (`<root>/<package>/usr/share/...`), with the package
version in `<root>/<package>/.version`. `bin/get_training_data.sh` builds it.

Every selected file is decoded to RGB, resized with LANCZOS so that its long
side is `TARGET_LONG_SIDE` (never upscaled), and written as
`<package>__<name>.png`. A path `<file>::<member>` names a file inside a Qt
binary resource (`.rcc`, as GCompris ships its data), and a jigzo puzzle
(`.pzl`) gives the photograph its pieces were cut from. Images whose short
side would be below `MIN_SHORT_SIDE` are skipped, as are near-duplicates of
a held-out photograph or of an image already written (the rules and limits:
`dcae_tf/corpus/selection.py`). `MANIFEST.tsv` records each written file
with its provenance and the sha256 of the PNG. The selection is the
committed sources file, so a re-run picks the same files; a file missing
from a newer package version is reported and skipped.
"""
import argparse
import sys

from dcae_tf.corpus import prepare as prepare_lib
from dcae_tf.corpus import selection

PROG = "prepare_training_data.py"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sources", required=True, help="sources TSV")
  parser.add_argument("--root", required=True, help="unpacked packages")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--heldout_dir", default=None,
                      help="held-out images that must not be reproduced")
  parser.add_argument("--min_images", type=int,
                      default=prepare_lib.MIN_IMAGES)
  args = parser.parse_args(argv)
  try:
    prepare_lib.prepare(selection.read_sources(args.sources), args.root,
                        args.out, args.heldout_dir, args.min_images)
  except selection.PrepareError as e:
    print(f"{PROG}: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
