"""Learning curves read a run's real validation summaries and plot them."""
import csv
import os
import subprocess
import sys

from PIL import Image
import pytest
import tensorflow as tf

from dcae_tf.evaluation import learning_curve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOT_PY = os.path.join(REPO, "bin", "plot_learning_curves.py")


def _write_run(path, points, extra_tag=True):
  """Validation summaries as training.Trainer writes them (tf.summary)."""
  writer = tf.summary.create_file_writer(
      os.path.join(path, learning_curve.VALIDATION_DIR))
  with writer.as_default():
    for step, (bpp, psnr) in points.items():
      tf.summary.scalar("bpp", bpp, step=step)
      tf.summary.scalar("psnr", psnr, step=step)
      if extra_tag:
        tf.summary.scalar("loss", 1.0, step=step)
  writer.flush()
  writer.close()


def test_curves_from_resumed_runs(tmp_path):
  run = str(tmp_path / "zoo_a")
  _write_run(run, {0: (5.0, 10.0), 1000: (0.5, 24.0)})
  # A resumed run writes a second event file; step 1000 validated again.
  _write_run(run, {1000: (0.45, 24.5), 2000: (0.4, 26.0)}, extra_tag=False)
  other = str(tmp_path / "zoo_b")
  _write_run(other, {0: (4.0, 11.0), 500: (0.3, 22.0)})
  png, table = str(tmp_path / "c.png"), str(tmp_path / "c.csv")
  curves = learning_curve.learning_curves([run, other], png, table)
  assert list(curves["zoo_a"]) == [0, 1000, 2000]
  assert curves["zoo_a"][1000] == pytest.approx({"bpp": 0.45, "psnr": 24.5})
  assert Image.open(png).size == tuple(
      int(s * learning_curve.PLOT_DPI) for s in learning_curve.PLOT_SIZE_INCHES)
  with open(table) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 5
  assert rows[-1] == {"run": "zoo_b", "step": "500", "bpp": "0.3",
                      "psnr": "22"}


def test_run_without_validation_is_a_one_line_error(tmp_path):
  (tmp_path / "run").mkdir()
  proc = subprocess.run(
      [sys.executable, PLOT_PY, str(tmp_path / "run"), "--output",
       str(tmp_path / "x.png")], capture_output=True, text=True,
      env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "plot_learning_curves.py: error: ")
  assert "no validation summaries" in proc.stderr
  assert not (tmp_path / "x.png").exists()
