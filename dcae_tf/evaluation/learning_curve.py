"""Learning curves: held-out bpp and PSNR of training runs against steps.

A training run validates every `--validate_every` steps and writes the mean
metrics of its validation set as TensorBoard scalars under
`<model_path>/validation`. This module reads them back (every event file of
the directory, resumed runs included; a step validated twice keeps its last
value) and draws one figure: bpp and PSNR against the step, one line per
run, so how far a run got and whether it still improves can be seen at a
glance (docs/training.md shows the zoo's).
"""
import csv
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

VALIDATION_DIR = "validation"
# The validation scalars a curve shows, with their axis labels.
METRICS = (("bpp", "bpp (held-out)"), ("psnr", "PSNR (dB, held-out)"))
CSV_COLUMNS = ("run", "step") + tuple(name for name, _ in METRICS)
PLOT_SIZE_INCHES = (10.0, 4.0)
PLOT_DPI = 110


def read_validation(model_path):
  """{step: {metric: value}} of a run's validation scalars, by step.

  Raises:
    ValueError: the run has no validation summaries.
  """
  pattern = os.path.join(model_path, VALIDATION_DIR, "events.out.tfevents.*")
  files = sorted(tf.io.gfile.glob(pattern))
  wanted = {name for name, _ in METRICS}
  by_step = {}
  for path in files:
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag in wanted:
          scalar = float(tf.make_ndarray(value.tensor)) if value.HasField(
              "tensor") else value.simple_value
          by_step.setdefault(int(event.step), {})[value.tag] = scalar
  complete = {s: m for s, m in by_step.items() if set(m) == wanted}
  if not complete:
    raise ValueError(f"{model_path}: no validation summaries with "
                     f"{sorted(wanted)} (was the run given --val_glob?)")
  return dict(sorted(complete.items()))


def run_label(model_path):
  return os.path.basename(os.path.normpath(model_path))


def plot(curves, path):
  """Draws {label: {step: metrics}} as bpp and PSNR panels into `path`."""
  fig, axes = plt.subplots(1, len(METRICS), figsize=PLOT_SIZE_INCHES)
  for ax, (name, label) in zip(axes, METRICS):
    for run, points in curves.items():
      steps = list(points)
      ax.plot(steps, [points[s][name] for s in steps], marker=".", label=run)
    ax.set_xlabel("training step")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
  axes[-1].legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=PLOT_DPI)
  plt.close(fig)


def write_csv(curves, path):
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for run, points in curves.items():
      for step, metrics in points.items():
        writer.writerow([run, step] + [f"{metrics[n]:.6g}"
                                       for n, _ in METRICS])


def learning_curves(model_paths, output_png, output_csv=None):
  """Reads every run, writes the figure (and a CSV); returns the curves."""
  curves = {run_label(p): read_validation(p) for p in model_paths}
  if len(curves) != len(model_paths):
    raise ValueError("two runs have the same directory name; the legend "
                     "could not tell them apart")
  plot(curves, output_png)
  if output_csv:
    write_csv(curves, output_csv)
  return curves
