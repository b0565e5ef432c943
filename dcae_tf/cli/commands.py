"""The commands of `dcae-tf`: compress, decompress, evaluate, models.

In a folder or glob, a bad file is reported and the others go on; the exit
code is 1 if any failed. Outputs are written atomically, so a failure never
leaves a partial file.
"""
import glob
import os
import warnings

from dcae_tf import io as dio
from dcae_tf import zoo
from dcae_tf.cli import models as models_lib
from dcae_tf.cli.output import (
    EXIT_FAILURE, CliError, import_tf, one_line, progress, show, show_error)
from dcae_tf.codec import container

BITSTREAM_EXTENSION = ".dcae"
IMAGE_EXTENSION = ".png"
BITS_PER_BYTE = 8
_GLOB_CHARS = "*?["


def _read_image(path, flags):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", dio.ImageWarning)
    image = dio.read_image(path, max_pixels=flags.max_pixels)
  for w in caught:
    if issubclass(w.category, dio.ImageWarning):
      show_error(f"warning: {w.message}")
  return image


def _bpp(data, image):
  return BITS_PER_BYTE * len(data) / (image.shape[0] * image.shape[1])


def _compress_to_target(flags, image):
  """Binary search over models by rate for the target bpp on this image.

  Assumes bpp grows with lambda (models sorted by `zoo.ModelInfo.sort_key`).
  Returns (ModelInfo, bitstream, bpp).
  """
  models = models_lib.list_models(flags.models_dir)
  if flags.metric:
    models = [m for m in models if m.get("metric") == flags.metric]
  if not models:
    raise CliError(f"no models in {flags.models_dir}"
                   + (f" with metric {flags.metric}" if flags.metric else ""))
  models.sort(key=zoo.ModelInfo.sort_key)
  target = flags.target_bpp
  tried = {}
  lo, hi = 0, len(models) - 1
  while lo <= hi:
    mid = (lo + hi) // 2
    data = models_lib.codec_call(models_lib.get_codec(flags, models[mid]).compress, image)
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
    codec = models_lib.get_codec(flags)
    data = models_lib.codec_call(codec.compress, image)
    bpp = _bpp(data, image)
    name = codec.metadata.get("name", "?")
  dio.write_bytes_atomic(out, data)
  show(f"{path} -> {out}: {len(data)} bytes, {bpp:.4f} bpp "
         f"({image.shape[1]}x{image.shape[0]}, model {name})")
  return os.path.getsize(path), len(data), bpp


def decompress_file(flags, path, out):
  """Decompresses one bitstream; returns (bytes in, bytes out, bpp)."""
  data = _read_bytes(path)
  try:
    header = container.read_header(data)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  pixels = header["height"] * header["width"]
  if pixels > flags.max_pixels:
    raise ValueError(f"{path}: image {header['height']}x{header['width']} "
                     f"exceeds --max_pixels {flags.max_pixels}")
  if getattr(flags, "server", None):
    # The server's decoder checks the header's fingerprint itself.
    info = flags.model
  elif flags.model:
    info = models_lib.resolve_model(flags)
    # The export's metadata.json says who it is without loading TensorFlow.
    meta = info.meta if "fingerprint" in info.meta else models_lib.get_codec(
        flags, info).metadata
    if meta.get("fingerprint") != header["fingerprint"]:
      raise ValueError(
          f"{path} was made by the model with fingerprint "
          f"{header['fingerprint']}; --model {flags.model} is model "
          f"{meta.get('name')} (fingerprint {meta.get('fingerprint')})")
  else:
    info = models_lib.find_model_for(flags, header, path)
  name = info if isinstance(info, str) or info is None else info.dir_name
  codec = models_lib.get_codec(flags, info)
  try:
    image = models_lib.codec_call(codec.decompress, data)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  dio.write_image(out, image)
  quality = _compare(flags, image, data)
  show(f"{path} -> {out}: {image.shape[1]}x{image.shape[0]} "
         f"(model {name}){quality}")
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
  # Deliberately lazy: metrics import TensorFlow.
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
    files = dio.list_files(pattern, extensions)
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
  ok, failed, bytes_in, bytes_out, bpps = 0, 0, 0, 0, []
  with progress(files, unit="file") as bar:
    for path in bar:
      try:
        n_in, n_out, bpp = fn(flags, path, _output_path(
            path, flags.output, True, out_extension))
      except (ValueError, OSError) as e:
        failed += 1
        show_error(f"error: {one_line(e)}")
        continue
      ok += 1
      bytes_in += n_in
      bytes_out += n_out
      bpps.append(bpp)
  mean = f"{sum(bpps) / len(bpps):.4f}" if bpps else "-"
  show(f"{verb} {ok} of {len(files)} files ({failed} failed): "
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
  import_tf()
  # Deliberately lazy: evaluation imports TensorFlow and matplotlib.
  from dcae_tf.evaluation import runner  # pylint: disable=import-outside-toplevel
  models = flags.models or [m.path for m in models_lib.list_models(flags.models_dir)]
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
  models = models_lib.list_models(flags.models_dir)
  if not models:
    show(f"no models in {flags.models_dir}")
    return 0
  rows = [("NAME", "VERSION", "PRESET", "LAMBDA", "METRIC", "BPP")]
  for m in sorted(models, key=zoo.ModelInfo.sort_key):
    bpp = m.bpp_range
    rows.append((m.dir_name, m.version,
                 _fmt(m.get("preset")), _fmt(m.get("lmbda"), "g"),
                 _fmt(m.get("metric")),
                 f"{bpp[0]:.3f}-{bpp[1]:.3f}" if bpp else "-"))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  for row in rows:
    show("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
  return 0
