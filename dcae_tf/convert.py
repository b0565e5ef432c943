"""Official PyTorch DCAE weights -> Keras model.

The official checkpoints store `{"state_dict": ...}` (keys optionally
prefixed with `module.` by DDP). Every learned value lands in a Keras
variable; the only partial use is `entropy_bottleneck.quantiles`, of which the
median column becomes the z quantisation offsets (the lower/upper quantiles
only bound CompressAI's CDF tables; TFC derives its own from the prior).
Buffers derived from learned values (CDF tables, scale table, bounds) are
skipped: TFC rebuilds them.
"""
import re

import numpy as np

from dcae_tf.codec import checkpoint as checkpoint_lib
from dcae_tf.layers import base
from dcae_tf.model import DCAE

DDP_PREFIX = "module."
# State-dict entries that are derived buffers, not learned parameters.
DERIVED_BUFFER_SUFFIXES = (
    "_offset", "_quantized_cdf", "_cdf_length", "target", "scale_table",
    "scale_bound", ".bound")
# Learned values deliberately not loaded: name -> why.
PARTIALLY_USED = {
    "entropy_bottleneck.quantiles":
        "only the medians [:, 0, 1] are used; the lower/upper quantiles bound "
        "CompressAI's CDF tables, which TFC derives from the prior instead",
}


class WeightsError(ValueError):
  """A state_dict that does not fit the model (names the key)."""


def is_derived_buffer(key):
  return key.endswith(DERIVED_BUFFER_SUFFIXES)


# CompressAI < 1.2 named the factorized prior's parameters `_matrix0`, ...
_LEGACY_PRIOR_NAMES = re.compile(r"^entropy_bottleneck\._(matrix|bias|factor)(\d+)$")
_PLURAL = {"matrix": "matrices", "bias": "biases", "factor": "factors"}


def _modern_key(key):
  m = _LEGACY_PRIOR_NAMES.match(key)
  if m:
    return f"entropy_bottleneck.{_PLURAL[m.group(1)]}.{m.group(2)}"
  return key


def strip_prefix(state_dict):
  """Drops the DDP `module.` prefix if every key has it; renames legacy
  CompressAI prior parameters."""
  keys = list(state_dict)
  if keys and all(k.startswith(DDP_PREFIX) for k in keys):
    state_dict = {k[len(DDP_PREFIX):]: v for k, v in state_dict.items()}
  return {_modern_key(k): v for k, v in state_dict.items()}


def read_torch_checkpoint(path):
  """Reads a `.pth` / `.pth.tar` file into a dict of numpy arrays."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise WeightsError(
        "reading .pth checkpoints needs PyTorch: pip install -e '.[torch]' "
        "(or pip install torch==2.13.0)") from None
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except FileNotFoundError:
    raise WeightsError(f"checkpoint not found: {path}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise WeightsError(f"cannot read checkpoint {path}: {e}") from None
  if isinstance(obj, dict) and "state_dict" in obj:
    obj = obj["state_dict"]
  if not isinstance(obj, dict):
    raise WeightsError(f"{path} holds no state_dict")
  return {k: v.detach().cpu().numpy() for k, v in obj.items()
          if hasattr(v, "detach")}


def load_official_weights(model, state_dict):
  """Assigns an official state_dict to a built `DCAE`.

  Args:
    model: a `DCAE` whose variables exist (`build_weights()`).
    state_dict: mapping of official keys to arrays (optionally `module.`
      prefixed); or a path to a `.pth`/`.pth.tar` file.

  Returns:
    A dict report: `loaded` keys, `learned_values` loaded, `skipped_buffers`.

  Raises:
    WeightsError naming the first missing, unexpected or mis-shaped key.
  """
  if isinstance(state_dict, str):
    state_dict = read_torch_checkpoint(state_dict)
  state_dict = strip_prefix(state_dict)
  targets = {key: (var, kind) for key, var, kind in model.torch_variables()}
  learned = {k: v for k, v in state_dict.items() if not is_derived_buffer(k)}
  missing = sorted(set(targets) - set(learned))
  if missing:
    raise WeightsError(f"missing key {missing[0]!r} "
                       f"({len(missing)} missing in all)")
  unexpected = sorted(set(learned) - set(targets))
  if unexpected:
    raise WeightsError(f"unexpected key {unexpected[0]!r} "
                       f"({len(unexpected)} unexpected in all)")
  values = {}
  for key, (var, kind) in targets.items():
    array = np.asarray(learned[key], dtype=np.float32)
    try:
      value = base.from_official_layout(kind, array)
    except (ValueError, IndexError):
      value = None
    if value is None or tuple(value.shape) != tuple(var.shape):
      raise WeightsError(
          f"key {key!r} has shape {tuple(array.shape)}, which does not fit "
          f"the model's {tuple(var.shape)} ({kind} layout)")
    values[key] = value
  for key, (var, _) in targets.items():
    var.assign(values[key])
  return dict(
      loaded=sorted(targets),
      learned_values=int(sum(np.asarray(learned[k]).size for k in targets)),
      skipped_buffers=sorted(k for k in state_dict if is_derived_buffer(k)))


def to_official_state_dict(model):
  """The model's weights under official keys and layouts (numpy arrays).

  Lets a model trained here be loaded by the official PyTorch code
  (`torch.from_numpy` each array; CompressAI rebuilds its CDF buffers with
  `update()`).
  """
  return {key: base.to_official_layout(kind, var.numpy())
          for key, var, kind in model.torch_variables()}


def convert_checkpoint(checkpoint, preset, output, lmbda=None, metric="mse"):
  """Official `.pth` (or a dict) -> model directory for training / export.

  Returns the report of `load_official_weights`.
  """
  model = DCAE(preset).build_weights()
  report = load_official_weights(model, checkpoint)
  meta = checkpoint_lib.make_meta(model.config, lmbda=lmbda, metric=metric,
                                  source=str(checkpoint) if isinstance(
                                      checkpoint, str) else "state_dict")
  checkpoint_lib.save_model(model, output, meta)
  return report
