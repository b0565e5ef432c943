"""`dcae-tf`: compress images to DCAE bitstreams and back (tfci-style).

  dcae-tf compress photo.png                 # -> photo.png.dcae
  dcae-tf decompress photo.png.dcae          # -> photo.png.dcae.png
  dcae-tf --target_bpp 0.3 compress photos/  # every image in a folder
  dcae-tf models                             # what is in --models_dir
  dcae-tf evaluate kodak/ --output results/  # RD against JPEG, WebP, ...
  dcae-tf --server localhost:8500 --model NAME compress photo.png

Models are exports under --models_dir (`saved_models/NAME/<version>/`, see
dcae_tf/zoo); --model takes a name there or a path. Decompression
finds the model that made a bitstream from its header, unless --model is
given. --target_bpp compresses each image with a binary search over the
models sorted by lambda (tfci's strategy), keeping the one whose actual bpp
on that image is closest to the target (--bpp_strict: the largest not above
it). A model's first call in a process optimises its graph, which takes
seconds; the optimised graph is kept in a per-machine store that later runs
read (--graph_cache: on by default, "off" disables it).

Errors are one line on stderr ("dcae-tf: error: ..."), exit code 1 (130 on
Ctrl-C); outputs are written atomically, so a failure never leaves a partial
file. In a folder or glob, a bad file is reported and the others go on; the
exit code is 1 if any failed. DCAE_TF_DEBUG=1 shows TensorFlow's logs and
tracebacks.

The command line is a package: `args` (this usage and the flags),
`models` (models from the store, the codec cache), `commands` (what each
command does) and `output` (one-line errors, the progress bar).
"""
import argparse
import sys

from absl.flags import argparse_flags

from dcae_tf.codec import container
from dcae_tf import zoo
from dcae_tf.cli import commands
from dcae_tf.cli.output import EXIT_FAILURE, PROG, show_error
from dcae_tf.runtime import graph_cache

# Per request with --server: a large image on the paper model takes a while.
SERVER_TIMEOUT_SECONDS = 120.0


class _Parser(argparse_flags.ArgumentParser):
  """Usage errors as one line and exit code 1, like every other error."""

  def error(self, message):
    show_error(f"error: {message} (see {PROG} --help)")
    sys.exit(EXIT_FAILURE)


def _add_options(parser, defaults):
  """Options accepted before and after the subcommand.

  The subcommand parsers get them with SUPPRESS defaults so that an option
  given before the subcommand is not reset by the subparser.
  """
  def default(value):
    return value if defaults else argparse.SUPPRESS
  parser.add_argument(
      "--models_dir", default=default(zoo.default_models_dir()),
      help=f"folder of exported models (NAME/VERSION/); default "
           f"${zoo.MODELS_DIR_ENV}, else ./{zoo.MODELS_DIR_NAME}, else the shipped "
           "models.")
  parser.add_argument(
      "--model", default=default(None),
      help="model name under --models_dir, or path of an export. Default: "
           f"the only model there, or the one named in its {zoo.DEFAULT_MODEL_FILE}"
           " file (compress) / the model named in the bitstream "
           "(decompress).")
  parser.add_argument(
      "--target_bpp", type=float, default=default(None),
      help="compress each image with the model whose bpp on it is closest "
           "to this (binary search over models sorted by lambda).")
  parser.add_argument(
      "--bpp_strict", action="store_true", default=default(False),
      help="with --target_bpp: never exceed the target.")
  parser.add_argument(
      "--metric", default=default(None),
      help="with --target_bpp: only models trained for this metric "
           "(mse, ms-ssim).")
  parser.add_argument(
      "--server", default=default(None), metavar="HOST:PORT",
      help="compress / decompress on a model server speaking TF Serving's "
           "gRPC API (dcae-tf-server or tensorflow_model_server) instead of "
           "loading the model here; --model names the served model "
           "(decompress: default the model named in the bitstream).")
  parser.add_argument(
      "--server_timeout", type=float, default=default(SERVER_TIMEOUT_SECONDS),
      help="seconds per request with --server.")
  parser.add_argument(
      "--graph_cache", metavar="DIR|off",
      default=default(graph_cache.default_root() or graph_cache.OFF),
      help="store of the graphs TensorFlow optimised for a model on this "
           "machine: compress and decompress read them instead of "
           "optimising again (first call in seconds; same bytes) and write "
           "them when missing; 'off' for none (every first call optimises). "
           f"Default ${graph_cache.CACHE_ENV}, else "
           f"$XDG_CACHE_HOME/{graph_cache.USER_CACHE_SUBDIR} (default "
           f"~/.cache/{graph_cache.USER_CACHE_SUBDIR}). While a first call "
           f"runs it sets ${graph_cache.TF_CACHE_ENV} in this process, "
           "which is how TensorFlow is told where to read and write.")
  parser.add_argument(
      "--max_pixels", type=int, default=default(container.DEFAULT_MAX_PIXELS),
      help="largest height*width accepted, for images and bitstreams "
           f"(default 2**25 = {container.DEFAULT_MAX_PIXELS}).")


def parse_args(argv):
  parser = _Parser(
      prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
      description=__doc__.split("\n\n")[0] + "\n\n" +
      __doc__.split("\n\n")[1])
  _add_options(parser, defaults=True)
  subparsers = parser.add_subparsers(
      title="commands", dest="command", metavar="COMMAND",
      parser_class=_Parser)
  sub = subparsers.add_parser(
      "compress", help="image file(s) -> bitstream(s).",
      description="Compresses an image (PNG, JPEG, WebP, BMP, TIFF), or every "
                  "image in a folder or matching a glob.")
  _add_options(sub, defaults=False)
  sub.add_argument("input", help="image file, folder or quoted glob.")
  sub.add_argument("output", nargs="?",
                   help=f"output file (default INPUT{commands.BITSTREAM_EXTENSION}); "
                        "a folder for several inputs.")
  sub.set_defaults(run=commands.run_compress)
  sub = subparsers.add_parser(
      "decompress", help="bitstream(s) -> PNG image(s).",
      description=f"Decompresses a {commands.BITSTREAM_EXTENSION} bitstream, or every "
                  f"{commands.BITSTREAM_EXTENSION} file in a folder or glob, to PNG.")
  _add_options(sub, defaults=False)
  sub.add_argument("input", help="bitstream file, folder or quoted glob.")
  sub.add_argument("output", nargs="?",
                   help=f"output PNG (default INPUT{commands.IMAGE_EXTENSION}); a "
                        "folder for several inputs.")
  sub.add_argument("--compare_to", metavar="IMAGE", default=None,
                   help="the original image: also print bpp, PSNR and "
                        "MS-SSIM of the decoded image against it (one input "
                        "only).")
  sub.set_defaults(run=commands.run_decompress)
  sub = subparsers.add_parser(
      "evaluate", help="rate-distortion of models and classical codecs.",
      description="Evaluates models (default: every model in --models_dir) "
                  "and classical anchors on a folder of images: actual bpp, "
                  "PSNR, MS-SSIM, timings, BD-rates, RD plots (like "
                  "bin/evaluate.py).")
  _add_options(sub, defaults=False)
  sub.add_argument("images", help="folder of test images.")
  sub.add_argument("--models", nargs="+", default=None,
                   help="exports to evaluate ('path' or 'LABEL=path'); "
                        "default: all in --models_dir.")
  sub.add_argument("--output", default="results",
                   help="folder for the tables and plots (default results).")
  sub.add_argument("--anchors", default=None,
                   help="comma-separated classical codecs (default: jpeg, "
                        "webp, avif, jxl; empty: none).")
  sub.add_argument("--paper_points", default=None, metavar="DATASET",
                   help="draw the paper's published points (Kodak, CLIC, "
                        "Tecnick).")
  sub.add_argument("--model_cards", action="store_true",
                   help="write each model's card from this run.")
  sub.set_defaults(run=commands.run_evaluate)
  sub = subparsers.add_parser(
      "models", help="list the models in --models_dir.",
      description="Lists the models in --models_dir with preset, lambda, "
                  f"metric and measured bpp range ({zoo.MODEL_CARD_FILE} "
                  "'bpp_range' or export metadata; '-' when unknown).")
  _add_options(sub, defaults=False)
  sub.set_defaults(run=commands.run_models)
  args = parser.parse_args(argv[1:])
  if args.command is None:
    parser.error("missing command: compress, decompress or models")
  if args.max_pixels < 1:
    parser.error("--max_pixels must be positive")
  return args
