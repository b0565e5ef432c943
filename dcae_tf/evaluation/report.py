"""Writing evaluation results: CSV / JSON tables and RD plots.

Files written to the output directory:
  per_image.csv / per_image.json  one row per (codec setting, image)
  summary.csv / summary.json      one row per codec setting: means over images
                                  (summary.json also holds BD results and run info)
  bd.csv / bd.json                BD-rate / BD-metric of every test curve
                                  against every anchor curve
  rd_psnr.png, rd_msssim.png      RD plots: PSNR and MS-SSIM (dB) against bpp
Non-finite numbers (a lossless PSNR = inf, an MS-SSIM of an image too small
for it = NaN) are written as "inf"/"nan" in CSV and as null in JSON (strict
JSON has neither).
"""
import csv
import dataclasses
import json
import math
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

PER_IMAGE_COLUMNS = ("curve", "kind", "setting", "quality", "image", "height",
                     "width", "num_bytes", "bpp", "psnr", "msssim", "msssim_db",
                     "msssim_scales", "encode_seconds", "decode_seconds")
MEAN_COLUMNS = ("bpp", "psnr", "msssim", "msssim_db", "encode_seconds",
                "decode_seconds")
SUMMARY_COLUMNS = ("curve", "kind", "setting", "quality", "num_images") + \
    MEAN_COLUMNS
BD_COLUMNS = ("test", "anchor", "metric", "bd_rate", "bd_metric", "method",
              "test_points", "anchor_points", "note")
METRIC_LABELS = {"psnr": "PSNR (dB)", "msssim_db": "MS-SSIM (dB)"}
PLOT_FILES = {"psnr": "rd_psnr.png", "msssim_db": "rd_msssim.png"}
PLOT_SIZE_INCHES = (7.0, 5.0)
PLOT_DPI = 120
PAPER_POINTS_FILE = os.path.join(os.path.dirname(__file__),
                                 "paper_points.json")


def _json_value(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _rows(records):
  return [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r)
          for r in records]


def write_csv(path, records, columns):
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in _rows(records):
      writer.writerow({k: "" if row.get(k) is None else row.get(k)
                       for k in columns})


def to_json(obj):
  """Replaces non-finite floats by None, recursively (strict JSON)."""
  if isinstance(obj, dict):
    return {k: to_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_json(v) for v in obj]
  if dataclasses.is_dataclass(obj):
    return to_json(dataclasses.asdict(obj))
  return _json_value(obj)


def write_json(path, obj):
  with open(path, "w", encoding="utf-8") as f:
    json.dump(to_json(obj), f, indent=1, allow_nan=False)
    f.write("\n")


def load_paper_points():
  """The published DCAE RD points: {metric: {dataset: {bpp, value}}}."""
  with open(PAPER_POINTS_FILE, encoding="utf-8") as f:
    return json.load(f)


def paper_curve(metric, dataset):
  """(bpp list, value list) of the paper for metric/dataset, or None."""
  points = load_paper_points().get(metric, {}).get(dataset)
  return (points["bpp"], points["value"]) if points else None


def _finite_points(rows, metric):
  points = sorted((r["bpp"], r[metric]) for r in rows
                  if r[metric] is not None and math.isfinite(r["bpp"])
                  and math.isfinite(r[metric]))
  return [p[0] for p in points], [p[1] for p in points]


def plot_rd(path, summary, metric, title, paper=None, paper_label=None):
  """One RD plot: a line per curve (anchors thin, models thick)."""
  fig, ax = plt.subplots(figsize=PLOT_SIZE_INCHES)
  curves = {}
  for row in _rows(summary):
    curves.setdefault((row["kind"], row["curve"]), []).append(row)
  for (kind, curve), rows in sorted(curves.items()):
    bpp, values = _finite_points(rows, metric)
    if not bpp:
      continue
    if kind == "anchor":
      ax.plot(bpp, values, "o-", markersize=3, linewidth=1, label=curve)
    else:
      ax.plot(bpp, values, "s-", markersize=6, linewidth=2, label=curve)
  if paper:
    ax.plot(paper[0], paper[1], "kx--", markersize=7, linewidth=1,
            label=paper_label)
  ax.set_xlabel("bits per pixel (bpp)")
  ax.set_ylabel(METRIC_LABELS[metric])
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=PLOT_DPI)
  plt.close(fig)
