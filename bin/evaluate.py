"""RD evaluation of exported DCAE models against JPEG / WebP / AVIF / JPEG XL.

  python bin/evaluate.py --models saved_models/A saved_models/B --images kodak/ \
      --output results/ [--anchors jpeg,webp,avif,jxl] [--qualities 10,30,50] \
      [--paper_points]
"""

from absl import app
from absl import flags

from dcae_tf.evaluation import anchors
from dcae_tf.evaluation import bd
from dcae_tf.evaluation import runner

flags.DEFINE_list("models", [], "Exported model dirs ('path' or 'LABEL=path'); "
                  "comma-separated, and/or space-separated after --models.")
flags.DEFINE_string("images", None, "Folder of test images.", required=True)
flags.DEFINE_string("output", None, "Directory for results.", required=True)
flags.DEFINE_list("anchors", list(anchors.ANCHOR_NAMES),
                  "Classical codecs to compare with (empty for none).")
flags.DEFINE_list("qualities", None, "Anchor quality sweep (0..100) for all "
                  "anchors; default: each anchor's own sweep.")
flags.DEFINE_bool("paper_points", False, "Draw the paper's published DCAE "
                  "points and use them as an extra BD curve.")
flags.DEFINE_enum("paper_dataset", "Kodak", runner.PAPER_DATASETS,
                  "Which published curve --paper_points uses.")
flags.DEFINE_bool("recursive", False, "Look for images in sub-folders too.")
flags.DEFINE_enum("bd_method", bd.DEFAULT_METHOD, bd.BD_METHODS,
                  "Interpolation of the Bjontegaard deltas.")
flags.DEFINE_integer("max_images", None, "Only the first N images.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool("model_cards", False, "Write each model's card "
                  "(model_card.json, MODEL_CARD.md) next to its versions "
                  "from this run.")
FLAGS = flags.FLAGS


def main(argv):
  return runner.main(
      FLAGS.models + argv[1:], FLAGS.images, FLAGS.output,
      anchors=FLAGS.anchors, qualities=FLAGS.qualities,
      recursive=FLAGS.recursive, bd_method=FLAGS.bd_method,
      paper_points=FLAGS.paper_dataset if FLAGS.paper_points else None,
      max_images=FLAGS.max_images, progress=FLAGS.progress,
      model_cards=FLAGS.model_cards)


if __name__ == "__main__":
  app.run(main)
