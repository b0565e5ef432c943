"""The zoo's training photographs, written from unpacked packages.

`bin/prepare_training_data.py` is its command line. Modules:
  containers  where packages keep photographs: image files, Qt resource
              members, jigzo puzzles; decoding them to RGB
  selection   the sources file, the size rule, near-duplicate thumbnails
  prepare     decode, resize, deduplicate, write PNGs and MANIFEST.tsv

Free of TensorFlow (numpy and Pillow).
"""
