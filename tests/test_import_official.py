"""bin/import_official.sh: an official-format checkpoint to a working export."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dcae_tf import convert
from dcae_tf.model import DCAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bin", "import_official.sh")
torch = pytest.importorskip("torch")

# An official MS-SSIM lambda: the script must record metric ms-ssim for it.
MSSSIM_LAMBDA = "2.40"
# Tracing the export's four signatures takes minutes on a busy 2-core machine.
SUBPROCESS_TIMEOUT_SECONDS = 840


def run(args, cwd, **env):
  env = dict(dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHON=sys.executable,
                  PRESET="tiny"), **env)
  return subprocess.run(["bash", SCRIPT, *args], cwd=cwd, capture_output=True,
                        text=True, timeout=SUBPROCESS_TIMEOUT_SECONDS, env=env)


def assert_one_line_error(result, *words):
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("import_official: error:"), (
      result.stderr)
  for word in words:
    assert word in lines[0]


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory):
  """A tiny-preset model saved the way the official code saves checkpoints."""
  model = DCAE("tiny").build_weights()
  state = {"module." + k: torch.from_numpy(np.ascontiguousarray(v))
           for k, v in convert.to_official_state_dict(model).items()}
  path = str(tmp_path_factory.mktemp("pth") / "checkpoint_best.pth.tar")
  torch.save({"epoch": 1, "state_dict": state}, path)
  return path


def fake_python(tmp_path, fail_convert=False):
  """An interpreter that only records the bin/*.py calls, one per line."""
  log = tmp_path / "calls.txt"
  fake = tmp_path / "fake_python"
  fail = ('case "$1" in *convert.py) exit 3;; esac\n' if fail_convert else "")
  fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{fail}exit 0\n')
  fake.chmod(0o755)
  return str(fake), log


@pytest.mark.parametrize("lmbda, metric", [("0.0067", "mse"),
                                           (MSSSIM_LAMBDA, "ms-ssim")])
def test_runs_convert_then_export(lmbda, metric, official_pth, tmp_path):
  fake, log = fake_python(tmp_path)
  result = run([official_pth, lmbda, "dcae-x", "--weight_dtype", "float16"],
               tmp_path, PYTHON=fake)
  assert result.returncode == 0, result.stderr
  convert_call, export_call = log.read_text().splitlines()
  assert convert_call == (
      f"{ROOT}/bin/convert.py --checkpoint {official_pth} --preset tiny "
      f"--lmbda {lmbda} --metric {metric} --output runs/dcae-x")
  assert export_call == (f"{ROOT}/bin/export.py --checkpoint runs/dcae-x "
                         "--name dcae-x --weight_dtype float16")


def test_metric_from_the_environment_wins(official_pth, tmp_path):
  fake, log = fake_python(tmp_path)
  result = run([official_pth, MSSSIM_LAMBDA, "x"], tmp_path, PYTHON=fake,
               METRIC="mse", RUNS_DIR="elsewhere")
  assert result.returncode == 0, result.stderr
  assert "--metric mse --output elsewhere/x" in log.read_text()


def test_a_failed_conversion_stops_before_export(official_pth, tmp_path):
  fake, log = fake_python(tmp_path, fail_convert=True)
  result = run([official_pth, "0.0067", "x"], tmp_path, PYTHON=fake)
  assert result.returncode == 3
  assert len(log.read_text().splitlines()) == 1


@pytest.mark.slow
def test_import_gives_an_export_the_cli_lists(official_pth, tmp_path):
  result = run([official_pth, MSSSIM_LAMBDA, "dcae-tiny-import"], tmp_path)
  assert result.returncode == 0, result.stderr
  version = tmp_path / "saved_models" / "dcae-tiny-import" / "1"
  meta = json.loads((version / "metadata.json").read_text())
  assert meta["name"] == "dcae-tiny-import" and meta["preset"] == "tiny"
  assert meta["lmbda"] == float(MSSSIM_LAMBDA) and meta["metric"] == "ms-ssim"
  assert (tmp_path / "runs" / "dcae-tiny-import" / "model.json").is_file()
  listed = subprocess.run(
      [sys.executable, "-m", "dcae_tf", "--models_dir", "saved_models",
       "models"], cwd=tmp_path, capture_output=True, text=True,
      timeout=SUBPROCESS_TIMEOUT_SECONDS)
  assert listed.returncode == 0, listed.stderr
  assert "dcae-tiny-import" in listed.stdout and "ms-ssim" in listed.stdout

  again = run([official_pth, MSSSIM_LAMBDA, "dcae-tiny-import"], tmp_path)
  assert_one_line_error(again, "exists")


@pytest.mark.parametrize("args, words", [
    ([], ["usage"]),
    (["missing.pth.tar", "0.0067", "x"], ["not found", "missing.pth.tar"]),
])
def test_bad_arguments_are_one_line_errors(args, words, tmp_path):
  assert_one_line_error(run(args, tmp_path), *words)


@pytest.mark.parametrize("lmbda", ["abc", "-1", "0", "1e"])
def test_bad_lambda_is_refused(lmbda, official_pth, tmp_path):
  assert_one_line_error(run([official_pth, lmbda, "x"], tmp_path), "LAMBDA")


def test_bad_name_is_refused(official_pth, tmp_path):
  result = run([official_pth, "0.0067", "../x"], tmp_path)
  assert_one_line_error(result, "NAME")
  assert not (tmp_path / "runs").exists()
