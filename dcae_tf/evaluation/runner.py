"""The evaluation loop: every codec setting on every image, then tables.

`run_evaluation` is the library entry point (bin/evaluate.py and the
`dcae-tf evaluate` subcommand call `main`, which wraps it with one-line
errors). Each image is read once and coded by every codec setting: anchors at
their quality sweeps and learned models. Per image we record the real encoded
size, bpp = bytes * 8 / (H * W), PSNR, MS-SSIM (+ dB) and the encode / decode
wall time. Learned codecs get one untimed warm-up round trip on the first
image, so tf.function tracing and SavedModel loading are not in the timings.
"""
import dataclasses
import math
import os
import shlex
import sys
import time
import warnings

import numpy as np
import tqdm

from dcae_tf.evaluation import anchors as anchors_lib
from dcae_tf.evaluation import bd as bd_lib
from dcae_tf.evaluation import images as images_lib
from dcae_tf.evaluation import metrics
from dcae_tf.evaluation import model_card
from dcae_tf.evaluation import models as models_lib
from dcae_tf.evaluation import report

PAPER_DATASETS = ("Kodak", "CLIC", "Tecnick")
BD_METRICS = ("psnr", "msssim_db")
# The paper's PSNR points come from MSE-trained models, its MS-SSIM points
# from MS-SSIM-trained ones.
PAPER_TRAINING = {"psnr": "MSE", "msssim_db": "MS-SSIM"}


@dataclasses.dataclass
class Measurement:
  """One codec setting on one image."""
  curve: str
  kind: str
  setting: str
  quality: float
  image: str
  height: int
  width: int
  num_bytes: int
  bpp: float
  psnr: float
  msssim: float
  msssim_db: float
  msssim_scales: int
  encode_seconds: float
  decode_seconds: float


def measure(codec, image, name):
  """Codes `image` with `codec` and measures rate, quality and time."""
  height, width = image.shape[:2]
  start = time.perf_counter()
  data = codec.compress(image)
  encoded = time.perf_counter()
  decoded_image = np.asarray(codec.decompress(data))
  decoded = time.perf_counter()
  if decoded_image.shape != image.shape or decoded_image.dtype != np.uint8:
    raise ValueError(
        f"{codec.curve} ({codec.setting}) decoded {name} to "
        f"{decoded_image.dtype} {decoded_image.shape}, expected uint8 "
        f"{image.shape}")
  ms, scales = metrics.msssim_with_scales(image, decoded_image)
  return Measurement(
      curve=codec.curve, kind=codec.kind, setting=codec.setting,
      quality=codec.quality, image=name, height=height, width=width,
      num_bytes=len(data), bpp=metrics.bits_per_pixel(len(data), height, width),
      psnr=metrics.psnr(image, decoded_image), msssim=ms,
      msssim_db=metrics.msssim_db(ms), msssim_scales=scales,
      encode_seconds=encoded - start, decode_seconds=decoded - encoded)


def _mean(values):
  values = [v for v in values if v is not None]
  if any(isinstance(v, float) and math.isnan(v) for v in values):
    values = [v for v in values if not math.isnan(v)]
  return float(np.mean(values)) if values else math.nan


def summarize(measurements, codecs):
  """Mean of every metric over images, one row per codec setting."""
  by_codec = {}
  for m in measurements:
    by_codec.setdefault((m.curve, m.kind, m.setting), []).append(m)
  rows = []
  for codec in codecs:
    group = by_codec.get((codec.curve, codec.kind, codec.setting), [])
    row = {"curve": codec.curve, "kind": codec.kind, "setting": codec.setting,
           "quality": codec.quality, "num_images": len(group)}
    for column in report.MEAN_COLUMNS:
      row[column] = _mean([getattr(m, column) for m in group])
    rows.append(row)
  return rows


def _curves(summary, kind):
  curves = {}
  for row in summary:
    if row["kind"] == kind:
      curves.setdefault(row["curve"], []).append(row)
  return curves


def bd_table(summary, method=bd_lib.DEFAULT_METHOD, paper_dataset=None):
  """BD results: each model curve (and the paper's) against each anchor."""
  anchor_curves = _curves(summary, "anchor")
  test_curves = {name: {metric: ([r["bpp"] for r in rows],
                                 [r[metric] for r in rows])
                        for metric in BD_METRICS}
                 for name, rows in _curves(summary, "model").items()}
  results = []
  paper_name = f"DCAE paper ({paper_dataset})"
  for test, curve in test_curves.items():
    for anchor, rows in anchor_curves.items():
      for metric in BD_METRICS:
        results.append(bd_lib.bd(
            *curve[metric], [r["bpp"] for r in rows], [r[metric] for r in rows],
            method=method, test=test, anchor=anchor, metric=metric))
    if paper_dataset:
      for metric in BD_METRICS:
        paper = report.paper_curve(metric, paper_dataset)
        if paper:
          result = bd_lib.bd(*curve[metric], *paper, method=method, test=test,
                             anchor=paper_name, metric=metric)
          result.note = "; ".join(filter(None, [
              result.note, f"paper numbers are on {paper_dataset}, from "
                           f"{PAPER_TRAINING[metric]}-trained models"]))
          results.append(result)
  if paper_dataset:
    for anchor, rows in anchor_curves.items():
      for metric in BD_METRICS:
        paper = report.paper_curve(metric, paper_dataset)
        if paper:
          result = bd_lib.bd(*paper, [r["bpp"] for r in rows],
                             [r[metric] for r in rows], method=method,
                             test=paper_name, anchor=anchor, metric=metric)
          result.note = "; ".join(filter(None, [
              result.note, f"paper numbers are on {paper_dataset}, anchor "
                           f"on the evaluated images"]))
          results.append(result)
  return results


def run_evaluation(images, output, models=(), codecs=(),
                   anchors=anchors_lib.ANCHOR_NAMES, qualities=None,
                   paper_points=None, recursive=False,
                   bd_method=bd_lib.DEFAULT_METHOD, max_images=None,
                   progress=True):
  """Evaluates codecs on a folder of images and writes tables and plots.

  Args:
    images: folder of test images (png/jpg/...).
    output: directory for the result files (created if missing).
    models: exported model directories, each 'path' or 'LABEL=path'.
    codecs: codec objects (compress/decompress/metadata) or ImageCodecs.
    anchors: names from anchors.ANCHOR_NAMES; unavailable ones are skipped
      with a warning.
    qualities: anchor quality sweep: None (defaults), a sequence for all
      anchors, or a dict anchor name -> sequence.
    paper_points: None, or a dataset name in PAPER_DATASETS whose published
      DCAE points are drawn on the plots and used as an extra BD curve.
    recursive: look for images in sub-folders too.
    bd_method: interpolation for BD deltas ('akima', 'pchip', 'cubic').
    max_images: evaluate only the first N images (sorted by path).
    progress: show a tqdm progress bar over images x codec settings.

  Returns:
    dict with "summary" (rows), "bd" (BDResults), "per_image"
    (Measurements), "files" (written paths) and run information.

  Raises:
    ValueError: bad folder / no images / unreadable image or model / nothing
      to evaluate / a codec that returns a wrong image.
  """
  if paper_points and paper_points not in PAPER_DATASETS:
    raise ValueError(f"unknown paper data set {paper_points!r}; choose from "
                     f"{', '.join(PAPER_DATASETS)}")
  if bd_method not in bd_lib.BD_METHODS:
    raise ValueError(f"unknown BD method {bd_method!r}; choose from "
                     f"{', '.join(bd_lib.BD_METHODS)}")
  paths = images_lib.list_images(images, recursive=recursive)
  if max_images is not None:
    if max_images < 1:
      raise ValueError(f"max_images must be >= 1, got {max_images}")
    paths = paths[:max_images]
  all_codecs = [models_lib.load_model_codec(spec) for spec in models]
  all_codecs += [c if isinstance(c, anchors_lib.ImageCodec)
                 else models_lib.model_codec(c) for c in codecs]
  all_codecs += anchors_lib.anchor_codecs(anchors, qualities)
  if not all_codecs:
    raise ValueError("nothing to evaluate: no models, codecs or anchors")
  keys = [(c.curve, c.kind, c.setting) for c in all_codecs]
  if len(set(keys)) != len(keys):
    raise ValueError("two codecs have the same curve and setting; give models "
                     "distinct labels ('LABEL=path')")
  try:
    os.makedirs(output, exist_ok=True)
  except OSError as e:
    raise ValueError(f"cannot create output directory {output!r}: "
                     f"{e.strerror}") from None

  measurements = []
  warmed_up = set()
  bar = tqdm.tqdm(total=len(paths) * len(all_codecs), unit="code",
                  disable=not progress, desc="evaluate")
  with bar:
    for path in paths:
      name = images_lib.image_name(path, images)
      image = images_lib.read_image(path)
      for index, codec in enumerate(all_codecs):
        bar.set_postfix_str(f"{name} {codec.curve} {codec.setting}"[-60:],
                            refresh=False)
        if codec.kind == "model" and index not in warmed_up:
          codec.decompress(codec.compress(image))
          warmed_up.add(index)
        measurements.append(measure(codec, image, name))
        bar.update()

  summary = summarize(measurements, all_codecs)
  bd_results = bd_table(summary, bd_method, paper_points)
  files = {name: os.path.join(output, name) for name in (
      "per_image.csv", "per_image.json", "summary.csv", "summary.json",
      "bd.csv", "bd.json", report.PLOT_FILES["psnr"],
      report.PLOT_FILES["msssim_db"])}
  info = {"images": os.path.abspath(images), "num_images": len(paths),
          "bd_method": bd_method, "paper_points": paper_points,
          "msssim": "tf.image.ssim_multiscale, max_val=255; dB = "
                    "-10 log10(1 - MS-SSIM); fewer scales for small images "
                    "(see msssim_scales)"}
  report.write_csv(files["per_image.csv"], measurements,
                   report.PER_IMAGE_COLUMNS)
  report.write_json(files["per_image.json"], measurements)
  report.write_csv(files["summary.csv"], summary, report.SUMMARY_COLUMNS)
  report.write_json(files["summary.json"],
                    dict(info, summary=summary, bd=bd_results))
  report.write_csv(files["bd.csv"], bd_results, report.BD_COLUMNS)
  report.write_json(files["bd.json"], bd_results)
  dataset = os.path.basename(os.path.normpath(os.path.abspath(images)))
  for metric, filename in report.PLOT_FILES.items():
    paper = report.paper_curve(metric, paper_points) if paper_points else None
    report.plot_rd(
        files[filename], summary, metric,
        f"{report.METRIC_LABELS[metric]} vs rate, {dataset} "
        f"({len(paths)} images)",
        paper=paper, paper_label=f"DCAE paper ({paper_points}, "
                                 f"{PAPER_TRAINING[metric]} models)")
  return dict(info, summary=summary, bd=bd_results, per_image=measurements,
              files=files)


def format_results(results):
  """Short text tables of the summary and BD results (for the console)."""
  lines = [f"{'curve':<24} {'setting':<24} {'bpp':>7} {'PSNR':>7} "
           f"{'MS-SSIM dB':>10} {'enc ms':>8} {'dec ms':>8}"]
  for r in results["summary"]:
    lines.append(f"{r['curve'][:24]:<24} {str(r['setting'])[-24:]:<24} "
                 f"{r['bpp']:7.4f} {r['psnr']:7.2f} {r['msssim_db']:10.2f} "
                 f"{1e3 * r['encode_seconds']:8.1f} "
                 f"{1e3 * r['decode_seconds']:8.1f}")
  if results["bd"]:
    lines.append("")
    lines.append(f"{'test':<24} {'anchor':<20} {'metric':<10} "
                 f"{'BD-rate %':>9} {'BD-dB':>7}  note")
    for b in results["bd"]:
      lines.append(f"{b.test[:24]:<24} {b.anchor[:20]:<20} {b.metric:<10} "
                   f"{b.bd_rate:9.2f} {b.bd_metric:7.3f}  {b.note}")
  lines.append("")
  lines.append("wrote " + ", ".join(sorted(results["files"].values())))
  return "\n".join(lines)


def main(models, images, output, anchors=anchors_lib.ANCHOR_NAMES,
         qualities=None, paper_points=None, recursive=False,
         bd_method=bd_lib.DEFAULT_METHOD, max_images=None, progress=True,
         model_cards=False):
  """Command-line entry: runs the evaluation, prints tables; exit status.

  `qualities` may be strings (from flags). With `model_cards`, every model
  gets its card (model_card.py) from this run, with this command line as
  the way to reproduce it. Returns 0 on success; on bad input prints one
  line "error: ..." to stderr and returns 1 (the caller passes it to
  sys.exit).
  """
  try:
    if qualities is not None and not isinstance(qualities, dict):
      qualities = _parse_qualities(qualities)
    with warnings.catch_warnings():
      warnings.showwarning = _show_one_line_warning
      results = run_evaluation(
          images, output, models=models, anchors=anchors, qualities=qualities,
          paper_points=paper_points, recursive=recursive, bd_method=bd_method,
          max_images=max_images, progress=progress)
    if model_cards:
      written = model_card.write_model_cards(
          results, models, " ".join(shlex.quote(a) for a in sys.argv))
      results["files"].update({path: path for path in written})
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(format_results(results))
  return 0


def _parse_qualities(values):
  try:
    return [int(q) for q in values]
  except (TypeError, ValueError):
    raise ValueError(f"qualities must be integers 0..100, got "
                     f"{list(values)}") from None


def _show_one_line_warning(message, category, *unused_args, **unused_kwargs):
  print(f"warning: {message} ({category.__name__})", file=sys.stderr)
