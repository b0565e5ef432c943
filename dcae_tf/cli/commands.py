"""`dcae-tf`: compress images to DCAE bitstreams and back (tfci-style).

  dcae-tf compress photo.png                 # -> photo.png.dcae
  dcae-tf decompress photo.png.dcae          # -> photo.png.dcae.png
  dcae-tf --target_bpp 0.3 compress photos/  # every image in a folder
  dcae-tf models                             # what is in --models_dir
  dcae-tf evaluate kodak/ --output results/  # RD against JPEG, WebP, ...
  dcae-tf --server localhost:8500 --model NAME compress photo.png

Models are exports under --models_dir (`saved_models/NAME/<version>/`, see
dcae_tf/export.py); --model takes a name there or a path. Decompression
finds the model that made a bitstream from its header, unless --model is
given. --target_bpp compresses each image with a binary search over the
models sorted by lambda (tfci's strategy), keeping the one whose actual bpp
on that image is closest to the target (--bpp_strict: the largest not above
it).

Errors are one line on stderr ("dcae-tf: error: ..."), exit code 1 (130 on
Ctrl-C); outputs are written atomically, so a failure never leaves a partial
file. In a folder or glob, a bad file is reported and the others go on; the
exit code is 1 if any failed. DCAE_TF_DEBUG=1 shows TensorFlow's logs and
tracebacks.

The codec comes from one function, `get_codec(flags, model)`: anything with
`.compress(uint8 HxWx3 array) -> bytes`, `.decompress(bytes) -> array` and a
`.metadata` dict (name, fingerprint, preset, lmbda, metric) works.
"""
import argparse
import glob
import json
import os
import sys
import warnings

from absl import app
from absl.flags import argparse_flags

from dcae_tf import bitstream
from dcae_tf import io as dio

PROG = "dcae-tf"
MODELS_DIR_NAME = "saved_models"
MODELS_DIR_ENV = "DCAE_TF_MODELS_DIR"
# In a models directory: the name of the model used when several are there
# and neither --model nor --target_bpp chooses.
DEFAULT_MODEL_FILE = "DEFAULT"
BITSTREAM_EXTENSION = ".dcae"
IMAGE_EXTENSION = ".png"
MODEL_CARD = "model_card.json"
EXPORT_METADATA = "metadata.json"
SAVED_MODEL_FILE = "saved_model.pb"
DEBUG_ENV = "DCAE_TF_DEBUG"
EXIT_FAILURE = 1
# Per request with --server: a large image on the paper model takes a while.
SERVER_TIMEOUT_SECONDS = 120.0
EXIT_INTERRUPTED = 130
BITS_PER_BYTE = 8
_GLOB_CHARS = "*?["
# TF's C++ logging level that hides everything but fatal errors.
_TF_QUIET_LOG_LEVEL = "3"


class CliError(Exception):
  """A user-facing error: printed as one line, exit code 1."""


def _debug():
  return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _import_tf():
  """Imports TensorFlow quietly (its C++ logs would break one-line errors)."""
  if not _debug():
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = _TF_QUIET_LOG_LEVEL
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not _debug():
    tf.get_logger().setLevel("ERROR")
  return tf


# --- models ------------------------------------------------------------------

def _read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    raise CliError(f"cannot read {path}: {e}") from None
  return value if isinstance(value, dict) else {}


def _versions(base):
  """Integer version subdirectories holding a SavedModel, sorted."""
  try:
    names = os.listdir(base)
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit() and os.path.isfile(
      os.path.join(base, n, SAVED_MODEL_FILE)))


class ModelInfo:
  """What is known about an export without loading it."""

  def __init__(self, name, path):
    self.dir_name = name
    self.path = path
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
      self.version_dir = path
      base = os.path.dirname(os.path.normpath(path))
    else:
      versions = _versions(path)
      if not versions:
        raise CliError(f"{path}: not a model export (no integer version "
                       f"directory with {SAVED_MODEL_FILE})")
      self.version_dir = os.path.join(path, str(versions[-1]))
      base = path
    meta = _read_json(os.path.join(self.version_dir, EXPORT_METADATA))
    meta.update(_read_json(os.path.join(base, MODEL_CARD)))
    self.meta = meta
    self.name = meta.get("name") or name

  def get(self, key):
    if key == "lmbda":
      value = self.meta.get("lmbda", self.meta.get("lambda"))
    else:
      value = self.meta.get(key)
    return value

  @property
  def bpp_range(self):
    value = self.meta.get("bpp_range")
    if (isinstance(value, (list, tuple)) and len(value) == 2 and
        all(isinstance(v, (int, float)) for v in value)):
      return tuple(float(v) for v in value)
    return None

  def sort_key(self):
    """Models sorted by rate: lambda, else measured bpp, else name."""
    lmbda = self.get("lmbda")
    bpp = self.bpp_range
    return (lmbda is None, lmbda or 0.0,
            sum(bpp) / 2 if bpp else float("inf"), self.name)


def default_models_dir():
  """$DCAE_TF_MODELS_DIR, else ./saved_models, else the shipped models.

  The shipped models live in the repository's saved_models/, beside the
  package (an editable install), so `dcae-tf compress photo.png` works from
  any directory.
  """
  if os.environ.get(MODELS_DIR_ENV):
    return os.environ[MODELS_DIR_ENV]
  if os.path.isdir(MODELS_DIR_NAME):
    return MODELS_DIR_NAME
  shipped = os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), MODELS_DIR_NAME)
  return shipped if os.path.isdir(shipped) else MODELS_DIR_NAME


def _default_model(models_dir, models):
  """The model named in models_dir/DEFAULT, if that file names one."""
  try:
    with open(os.path.join(models_dir, DEFAULT_MODEL_FILE),
              encoding="utf-8") as f:
      name = f.read().strip()
  except OSError:
    return None
  return next((m for m in models if m.dir_name == name), None)


def list_models(models_dir):
  """ModelInfo of every export under `models_dir`, by name."""
  if not os.path.isdir(models_dir):
    raise CliError(f"models directory {models_dir} does not exist "
                   "(set --models_dir)")
  models = []
  for name in sorted(os.listdir(models_dir)):
    path = os.path.join(models_dir, name)
    if name.startswith(".") or not _versions(path):
      continue
    models.append(ModelInfo(name, path))
  return models


def _names(models):
  return ", ".join(m.dir_name for m in models) or "none"


def resolve_model(flags, model=None):
  """ModelInfo of --model (or `model`): a name in --models_dir or a path."""
  model = model or flags.model
  if model is None:
    models = list_models(flags.models_dir)
    if len(models) == 1:
      return models[0]
    default = _default_model(flags.models_dir, models)
    if default is not None:
      return default
    if not models:
      raise CliError(f"no models in {flags.models_dir}")
    raise CliError(f"{len(models)} models in {flags.models_dir} "
                   f"({_names(models)}): choose one with --model NAME or use "
                   "--target_bpp")
  if isinstance(model, ModelInfo):
    return model
  candidate = os.path.join(flags.models_dir, model)
  if os.path.isdir(candidate):
    return ModelInfo(model, candidate)
  if os.path.isdir(model):
    return ModelInfo(os.path.basename(os.path.normpath(model)), model)
  try:
    available = _names(list_models(flags.models_dir))
  except CliError:
    available = "none"
  raise CliError(f"unknown model {model}: not in {flags.models_dir} "
                 f"(available: {available}) and not a directory")


_CODECS = {}


def get_codec(flags, model=None):
  """The codec of --model (or of `model`, a name, path or ModelInfo).

  Returns an object with .compress(np.uint8 HxWx3) -> bytes,
  .decompress(bytes) -> np.uint8 HxWx3 and .metadata (dict). Loaded codecs
  are cached, so a folder loads each model once. A remote-server branch
  belongs here.
  """
  if getattr(flags, "server", None):
    return _remote_codec(flags, model)
  info = resolve_model(flags, model)
  key = os.path.realpath(info.version_dir)
  if key not in _CODECS:
    _import_tf()
    from dcae_tf import export  # pylint: disable=import-outside-toplevel
    try:
      _CODECS[key] = export.load_exported(info.version_dir)
    except (ValueError, OSError) as e:
      raise CliError(f"cannot load model {info.dir_name}: {e}") from None
  return _CODECS[key]


def _remote_codec(flags, model=None):
  """The codec of a model served at --server (TF Serving's gRPC API).

  The model is named by --model (or `model`); nothing is loaded locally.
  """
  model = model or flags.model
  name = model.dir_name if isinstance(model, ModelInfo) else model
  if not name:
    raise CliError("with --server, name the served model with --model NAME")
  key = ("grpc", flags.server, name)
  if key not in _CODECS:
    _import_tf()
    from dcae_tf.serving import client  # pylint: disable=import-outside-toplevel
    try:
      _CODECS[key] = client.remote_codec(
          flags.server, name, timeout=flags.server_timeout)
    except ValueError as e:
      raise CliError(str(e)) from None
  return _CODECS[key]


# --- compress / decompress ---------------------------------------------------

def _codec_call(fn, *args):
  """Runs a codec call, turning TF errors into one-line ValueErrors.

  (A --server codec's failed RPC is already one: `ServingError` is a
  ValueError.)
  """
  tf = _import_tf()
  try:
    return fn(*args)
  except tf.errors.OpError as e:
    raise ValueError(bitstream.error_message(e)) from None


def _read_image(path, flags):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", dio.ImageWarning)
    image = dio.read_image(path, max_pixels=flags.max_pixels)
  for w in caught:
    if issubclass(w.category, dio.ImageWarning):
      _print_err(f"warning: {w.message}")
  return image


def _bpp(data, image):
  return BITS_PER_BYTE * len(data) / (image.shape[0] * image.shape[1])


def _compress_to_target(flags, image):
  """Binary search over models by rate for the target bpp on this image.

  Assumes bpp grows with lambda (models sorted by `ModelInfo.sort_key`).
  Returns (ModelInfo, bitstream, bpp).
  """
  models = list_models(flags.models_dir)
  if flags.metric:
    models = [m for m in models if m.get("metric") == flags.metric]
  if not models:
    raise CliError(f"no models in {flags.models_dir}"
                   + (f" with metric {flags.metric}" if flags.metric else ""))
  models.sort(key=ModelInfo.sort_key)
  target = flags.target_bpp
  tried = {}
  lo, hi = 0, len(models) - 1
  while lo <= hi:
    mid = (lo + hi) // 2
    data = _codec_call(get_codec(flags, models[mid]).compress, image)
    tried[mid] = (data, _bpp(data, image))
    if tried[mid][1] <= target:
      lo = mid + 1
    else:
      hi = mid - 1
  if flags.bpp_strict:
    fitting = [i for i, (_, bpp) in tried.items() if bpp <= target]
    if not fitting:
      lowest = min(bpp for _, bpp in tried.values())
      raise ValueError(f"no model reaches {target} bpp or less on this image "
                       f"(lowest: {lowest:.4f} bpp with {models[0].dir_name})")
    best = max(fitting, key=lambda i: tried[i][1])
  else:
    best = min(tried, key=lambda i: (abs(tried[i][1] - target), i))
  return models[best], tried[best][0], tried[best][1]


def compress_file(flags, path, out):
  """Compresses one image; returns (bytes in, bytes out, bpp)."""
  image = _read_image(path, flags)
  if flags.target_bpp is not None:
    info, data, bpp = _compress_to_target(flags, image)
    name = info.dir_name
  else:
    codec = get_codec(flags)
    data = _codec_call(codec.compress, image)
    bpp = _bpp(data, image)
    name = codec.metadata.get("name", "?")
  dio.write_bytes_atomic(out, data)
  _print(f"{path} -> {out}: {len(data)} bytes, {bpp:.4f} bpp "
         f"({image.shape[1]}x{image.shape[0]}, model {name})")
  return os.path.getsize(path), len(data), bpp


def _find_model_for(flags, header, path):
  """The model in --models_dir that made a bitstream (by header name)."""
  made_by = (f"{path} was made by model {header['model_name']} "
             f"(fingerprint {header['fingerprint']})")
  try:
    models = list_models(flags.models_dir)
  except CliError:
    models = []
  same_name = [m for m in models if header["model_name"] in (m.name,
                                                               m.dir_name)]
  exact = [m for m in same_name
           if m.get("fingerprint") == header["fingerprint"]]
  if exact or same_name:
    return (exact or same_name)[0]
  raise CliError(f"{made_by}, which is not in {flags.models_dir} "
                 f"(available: {_names(models)}); use --model or "
                 "--models_dir")


def decompress_file(flags, path, out):
  """Decompresses one bitstream; returns (bytes in, bytes out, bpp)."""
  data = _read_bytes(path)
  try:
    header = bitstream.read_header(data)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  pixels = header["height"] * header["width"]
  if pixels > flags.max_pixels:
    raise ValueError(f"{path}: image {header['height']}x{header['width']} "
                     f"exceeds --max_pixels {flags.max_pixels}")
  if getattr(flags, "server", None):
    # The server's decoder checks the header's model itself.
    info = flags.model or header["model_name"]
  elif flags.model:
    info = resolve_model(flags)
    # The export's metadata.json says who it is without loading TensorFlow.
    meta = info.meta if "fingerprint" in info.meta else get_codec(
        flags, info).metadata
    if (meta.get("name"), meta.get("fingerprint")) != (
        header["model_name"], header["fingerprint"]):
      raise ValueError(
          f"{path} was made by model {header['model_name']} (fingerprint "
          f"{header['fingerprint']}); --model {flags.model} is model "
          f"{meta.get('name')} (fingerprint {meta.get('fingerprint')})")
  else:
    info = _find_model_for(flags, header, path)
  codec = get_codec(flags, info)
  try:
    image = _codec_call(codec.decompress, data)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  dio.write_image(out, image)
  quality = _compare(flags, image, data)
  _print(f"{path} -> {out}: {image.shape[1]}x{image.shape[0]} "
         f"(model {header['model_name']}){quality}")
  return len(data), os.path.getsize(out), _bpp(data, image)


def _compare(flags, image, data):
  """', X bpp, PSNR Y dB, MS-SSIM Z dB against --compare_to' or ''."""
  reference_path = getattr(flags, "compare_to", None)
  if not reference_path:
    return ""
  reference = _read_image(reference_path, flags)
  if reference.shape != image.shape:
    raise ValueError(f"--compare_to {reference_path} is "
                     f"{reference.shape[1]}x{reference.shape[0]}, the decoded "
                     f"image {image.shape[1]}x{image.shape[0]}")
  from dcae_tf.evaluation import metrics  # pylint: disable=import-outside-toplevel
  return (f", {_bpp(data, image):.4f} bpp, PSNR "
          f"{metrics.psnr(reference, image):.2f} dB, MS-SSIM "
          f"{metrics.msssim_db(metrics.msssim(reference, image)):.2f} dB "
          f"against {reference_path}")


def _read_bytes(path):
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise ValueError(f"{path}: no such file") from None
  except IsADirectoryError:
    raise ValueError(f"{path}: is a directory") from None
  except OSError as e:
    raise ValueError(f"{path}: {e.strerror or e}") from None


def expand_inputs(pattern, extensions):
  """(files, is_batch) for a file, a folder or a glob pattern."""
  if os.path.isdir(pattern):
    files = sorted(
        os.path.join(pattern, n) for n in os.listdir(pattern)
        if not n.startswith(".") and n.lower().endswith(extensions)
        and os.path.isfile(os.path.join(pattern, n)))
    if not files:
      raise CliError(f"no {'/'.join(extensions)} files in folder {pattern}")
    return files, True
  if any(c in pattern for c in _GLOB_CHARS) and not os.path.exists(pattern):
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    if not files:
      raise CliError(f"no files match {pattern}")
    return files, True
  return [pattern], False


def _output_path(path, out, batch, extension):
  if not batch:
    return out or path + extension
  if out is None:
    return path + extension
  return os.path.join(out, os.path.basename(path) + extension)


def _run_files(flags, fn, extensions, out_extension, verb):
  files, batch = expand_inputs(flags.input, extensions)
  if batch and flags.output:
    if os.path.exists(flags.output) and not os.path.isdir(flags.output):
      raise CliError(f"output {flags.output} must be a folder for "
                     "several inputs")
    os.makedirs(flags.output, exist_ok=True)
  if verb == "decompressed":
    for path in files:
      target = _output_path(path, flags.output, batch, out_extension)
      if not target.lower().endswith(IMAGE_EXTENSION):
        raise CliError(f"output {target} must end with {IMAGE_EXTENSION} "
                       "(decompress writes PNG)")
  if not batch:
    fn(flags, files[0], _output_path(files[0], flags.output, False,
                                     out_extension))
    return 0
  import tqdm  # pylint: disable=import-outside-toplevel
  ok, failed, bytes_in, bytes_out, bpps = 0, 0, 0, 0, []
  progress = tqdm.tqdm(files, unit="file", disable=None, file=sys.stderr,
                       dynamic_ncols=True)
  global _WRITE  # pylint: disable=global-statement
  _WRITE = progress.write
  try:
    for path in progress:
      try:
        n_in, n_out, bpp = fn(flags, path, _output_path(
            path, flags.output, True, out_extension))
      except (ValueError, OSError) as e:
        failed += 1
        _print_err(f"error: {_one_line(e)}")
        continue
      ok += 1
      bytes_in += n_in
      bytes_out += n_out
      bpps.append(bpp)
  finally:
    _WRITE = None
    progress.close()
  mean = f"{sum(bpps) / len(bpps):.4f}" if bpps else "-"
  _print(f"{verb} {ok} of {len(files)} files ({failed} failed): "
         f"{bytes_in} bytes in, {bytes_out} bytes out, mean {mean} bpp")
  return EXIT_FAILURE if failed else 0


def run_compress(flags):
  if flags.target_bpp is not None:
    if flags.model:
      raise CliError("use either --model or --target_bpp, not both")
    if flags.target_bpp <= 0:
      raise CliError("--target_bpp must be positive")
  return _run_files(flags, compress_file, dio.IMAGE_EXTENSIONS,
                    BITSTREAM_EXTENSION, "compressed")


def run_decompress(flags):
  if flags.compare_to and expand_inputs(flags.input,
                                        (BITSTREAM_EXTENSION,))[1]:
    raise CliError("--compare_to takes one bitstream, not a folder or glob")
  return _run_files(flags, decompress_file, (BITSTREAM_EXTENSION,),
                    IMAGE_EXTENSION, "decompressed")


def run_evaluate(flags):
  _import_tf()
  from dcae_tf.evaluation import runner  # pylint: disable=import-outside-toplevel
  models = flags.models or [m.path for m in list_models(flags.models_dir)]
  kwargs = {}
  if flags.anchors is not None:
    kwargs["anchors"] = [a for a in flags.anchors.split(",") if a]
  return runner.main(models, flags.images, flags.output, **kwargs,
                     paper_points=flags.paper_points,
                     model_cards=flags.model_cards)


def _fmt(value, spec=""):
  if value is None:
    return "-"
  return format(value, spec) if spec else str(value)


def run_models(flags):
  models = list_models(flags.models_dir)
  if not models:
    _print(f"no models in {flags.models_dir}")
    return 0
  rows = [("NAME", "VERSION", "PRESET", "LAMBDA", "METRIC", "BPP")]
  for m in sorted(models, key=ModelInfo.sort_key):
    bpp = m.bpp_range
    rows.append((m.dir_name, os.path.basename(m.version_dir),
                 _fmt(m.get("preset")), _fmt(m.get("lmbda"), "g"),
                 _fmt(m.get("metric")),
                 f"{bpp[0]:.3f}-{bpp[1]:.3f}" if bpp else "-"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  for row in rows:
    _print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
  return 0


# --- output ------------------------------------------------------------------

_WRITE = None  # tqdm's write while a progress bar is shown.


def _print(text):
  if _WRITE:
    _WRITE(text, file=sys.stdout)
  else:
    print(text, flush=True)


def _print_err(text):
  line = f"{PROG}: {text}"
  if _WRITE:
    _WRITE(line, file=sys.stderr)
  else:
    print(line, file=sys.stderr, flush=True)


def _one_line(error):
  text = str(error) or type(error).__name__
  return " ".join(text.split())


# --- flags -------------------------------------------------------------------

class _Parser(argparse_flags.ArgumentParser):
  """Usage errors as one line and exit code 1, like every other error."""

  def error(self, message):
    _print_err(f"error: {message} (see {PROG} --help)")
    sys.exit(EXIT_FAILURE)


def _add_options(parser, defaults):
  """Options accepted before and after the subcommand.

  The subcommand parsers get them with SUPPRESS defaults so that an option
  given before the subcommand is not reset by the subparser.
  """
  def default(value):
    return value if defaults else argparse.SUPPRESS
  parser.add_argument(
      "--models_dir", default=default(default_models_dir()),
      help=f"folder of exported models (NAME/VERSION/); default "
           f"${MODELS_DIR_ENV}, else ./{MODELS_DIR_NAME}, else the shipped "
           "models.")
  parser.add_argument(
      "--model", default=default(None),
      help="model name under --models_dir, or path of an export. Default: "
           f"the only model there, or the one named in its {DEFAULT_MODEL_FILE}"
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
      "--max_pixels", type=int, default=default(dio.DEFAULT_MAX_PIXELS),
      help="largest height*width accepted, for images and bitstreams "
           f"(default 2**25 = {dio.DEFAULT_MAX_PIXELS}).")


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
                   help=f"output file (default INPUT{BITSTREAM_EXTENSION}); "
                        "a folder for several inputs.")
  sub.set_defaults(run=run_compress)
  sub = subparsers.add_parser(
      "decompress", help="bitstream(s) -> PNG image(s).",
      description=f"Decompresses a {BITSTREAM_EXTENSION} bitstream, or every "
                  f"{BITSTREAM_EXTENSION} file in a folder or glob, to PNG.")
  _add_options(sub, defaults=False)
  sub.add_argument("input", help="bitstream file, folder or quoted glob.")
  sub.add_argument("output", nargs="?",
                   help=f"output PNG (default INPUT{IMAGE_EXTENSION}); a "
                        "folder for several inputs.")
  sub.add_argument("--compare_to", metavar="IMAGE", default=None,
                   help="the original image: also print bpp, PSNR and "
                        "MS-SSIM of the decoded image against it (one input "
                        "only).")
  sub.set_defaults(run=run_decompress)
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
  sub.set_defaults(run=run_evaluate)
  sub = subparsers.add_parser(
      "models", help="list the models in --models_dir.",
      description="Lists the models in --models_dir with preset, lambda, "
                  f"metric and measured bpp range ({MODEL_CARD} "
                  "'bpp_range' or export metadata; '-' when unknown).")
  _add_options(sub, defaults=False)
  sub.set_defaults(run=run_models)
  args = parser.parse_args(argv[1:])
  if args.command is None:
    parser.error("missing command: compress, decompress or models")
  if args.max_pixels < 1:
    parser.error("--max_pixels must be positive")
  return args


def main(args):
  try:
    return args.run(args)
  except KeyboardInterrupt:
    _print_err("interrupted")
    return EXIT_INTERRUPTED
  except (CliError, ValueError, OSError) as e:
    if _debug():
      raise
    _print_err(f"error: {_one_line(e)}")
    return EXIT_FAILURE
  except Exception as e:  # pylint: disable=broad-except
    if _debug():
      raise
    _print_err(f"error: {type(e).__name__}: {_one_line(e)}")
    return EXIT_FAILURE


def run_main(argv=None):
  """Console-script entry point (`dcae-tf`)."""
  try:
    app.run(main, argv=argv, flags_parser=parse_args)
  except KeyboardInterrupt:
    _print_err("interrupted")
    sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
  run_main()
