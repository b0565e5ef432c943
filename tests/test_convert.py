"""bin/convert.py on real .pth files in the official format."""
import builtins
import os
import subprocess
import sys

import numpy as np
import pytest

from dcae_tf.codec import checkpoint
from dcae_tf import convert
from dcae_tf.model import DCAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch = pytest.importorskip("torch")


def run_convert(*args):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "bin", "convert.py"), *args],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.fixture(scope="module")
def official_pth(tmp_path_factory):
  """A tiny-preset model saved as the official code saves checkpoints."""
  model = DCAE("tiny").build_weights()
  state = {"module." + k: torch.from_numpy(np.ascontiguousarray(v))
           for k, v in convert.to_official_state_dict(model).items()}
  # Derived buffers exist in real checkpoints; they must be skipped.
  state["module.gaussian_conditional.scale_table"] = torch.ones(64)
  path = str(tmp_path_factory.mktemp("pth") / "checkpoint_best.pth.tar")
  torch.save({"epoch": 3, "state_dict": state}, path)
  return path, model


def test_convert_writes_a_loadable_model_dir(official_pth, tmp_path):
  path, model = official_pth
  out = tmp_path / "converted"
  result = run_convert("--checkpoint", path, "--preset", "tiny",
                       "--lmbda", "0.0067", "--output", str(out))
  assert result.returncode == 0, result.stderr
  assert "skipped 1 derived buffers" in result.stdout
  loaded, meta = checkpoint.load_model(str(out))
  assert meta["preset"] == "tiny" and meta["lmbda"] == 0.0067
  for a, b in zip(model.variables, loaded.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_convert_names_the_bad_key(official_pth, tmp_path):
  path, _ = official_pth
  state = torch.load(path, weights_only=True)["state_dict"]
  state["module.g_a.0.conv.weight"] = torch.zeros(1, 2, 3, 4)
  bad = str(tmp_path / "bad.pth")
  torch.save({"state_dict": state}, bad)
  result = run_convert("--checkpoint", bad, "--preset", "tiny",
                       "--output", str(tmp_path / "x"))
  assert result.returncode != 0
  assert "g_a.0.conv.weight" in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "x").exists()


def test_convert_refuses_a_missing_file(tmp_path):
  result = run_convert("--checkpoint", str(tmp_path / "nope.pth"),
                       "--preset", "tiny", "--output", str(tmp_path / "x"))
  assert result.returncode != 0
  assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_missing_torch_says_how_to_install(monkeypatch):
  real_import = builtins.__import__

  def no_torch(name, *args, **kwargs):
    if name == "torch":
      raise ImportError("no torch")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_torch)
  with pytest.raises(convert.WeightsError, match=r"pip install"):
    convert.read_torch_checkpoint("whatever.pth")
