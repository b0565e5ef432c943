"""The model store: the exports under a models directory (no TensorFlow).

    from dcae_tf import zoo
    for info in zoo.list_models(zoo.default_models_dir()):
      print(info.dir_name, info.get("lmbda"), info.bpp_range)
    codec = zoo.load("dcae-small-mse-0035")   # an ExportedCodec

A models directory (`saved_models/`) holds one folder per model, each an
export in the versioned layout of `dcae_tf.runtime.layout` plus the model's
card (`model_card.json` for tools, `MODEL_CARD.md` for people, written by
`dcae_tf.evaluation.model_card`); a file `DEFAULT` names the model used when
several are there and nobody chooses. Everything a tool needs to know about
a model before loading it (name, fingerprint, preset, lambda, metric, bpp
range) is read here from those JSON files, so listing models or matching a
bitstream's header to the model that made it never imports TensorFlow; only
`load` does.

The command line, the model server, evaluation and model cards ask this
module; nothing else knows the layout of a models directory.
"""
import json
import os

from dcae_tf.runtime import layout

MODELS_DIR_NAME = "saved_models"
MODELS_DIR_ENV = "DCAE_TF_MODELS_DIR"
# In a models directory: the name of the model used when several are there
# and nobody chooses.
DEFAULT_MODEL_FILE = "DEFAULT"
MODEL_CARD_FILE = "model_card.json"
MODEL_CARD_MARKDOWN_FILE = "MODEL_CARD.md"
# Where the repository's own models are: beside the package.
_SHIPPED_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), MODELS_DIR_NAME)


class ZooError(ValueError):
  """A models directory or model that is missing or unreadable."""


class ModelsDirNotFound(ZooError):
  """The models directory itself does not exist."""


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
  return _SHIPPED_DIR if os.path.isdir(_SHIPPED_DIR) else MODELS_DIR_NAME


def _read_json(path):
  """A JSON object file as a dict; {} if missing or not an object."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    raise ZooError(f"cannot read {path}: {e}") from None
  return value if isinstance(value, dict) else {}


def _newest_version(path):
  """(model base path, version directory) of a model folder (its newest
  complete version) or of a version directory."""
  try:
    version_dir = layout.newest_version_dir(path)
  except layout.ExportError as e:
    raise ZooError(f"not a model export: {e}") from None
  base = layout.base_path(path) if version_dir == path else path
  return base, version_dir


class ModelInfo:
  """What is known about an export without loading it.

  Attributes:
    dir_name: the model's folder name (what --model takes).
    path: the model's folder, or the version directory given.
    version_dir: its newest complete version (or the version given).
    meta: the model's card, updated by the version's metadata.json.
    name: the model name its bitstreams carry (else dir_name).
  """

  def __init__(self, name, path):
    self.dir_name = name
    self.path = path
    self.base_path, self.version_dir = _newest_version(path)
    # The card adds measurements; the export's own metadata (identity:
    # name, fingerprint, format) wins over a card written for another
    # version.
    meta = _read_json(os.path.join(self.base_path, MODEL_CARD_FILE))
    meta.update(_read_json(layout.metadata_path(self.version_dir)))
    self.meta = meta
    self.name = meta.get("name") or name

  def get(self, key):
    if key == "lmbda":
      return self.meta.get("lmbda", self.meta.get("lambda"))
    return self.meta.get(key)

  @property
  def bpp_range(self):
    value = self.meta.get("bpp_range")
    if (isinstance(value, (list, tuple)) and len(value) == 2 and
        all(isinstance(v, (int, float)) for v in value)):
      return tuple(float(v) for v in value)
    return None

  @property
  def version(self):
    return os.path.basename(os.path.normpath(self.version_dir))

  def sort_key(self):
    """Models sorted by rate: lambda, else measured bpp, else name."""
    lmbda = self.get("lmbda")
    bpp = self.bpp_range
    return (lmbda is None, lmbda or 0.0,
            sum(bpp) / 2 if bpp else float("inf"), self.name)

  def made(self, fingerprint):
    """Whether bitstreams with this header fingerprint are ours."""
    return self.get("fingerprint") == fingerprint


def list_models(models_dir):
  """ModelInfo of every export under `models_dir`, by folder name."""
  if not os.path.isdir(models_dir):
    raise ModelsDirNotFound(f"models directory {models_dir} does not exist")
  models = []
  for name in sorted(os.listdir(models_dir)):
    path = os.path.join(models_dir, name)
    if name.startswith(".") or not layout.complete_versions(path):
      continue
    models.append(ModelInfo(name, path))
  return models


def names(models):
  """"a, b, c" (or "none"), for messages."""
  return ", ".join(m.dir_name for m in models) or "none"


def default_model(models_dir, models=None):
  """The model named in models_dir/DEFAULT, if that file names one."""
  try:
    with open(os.path.join(models_dir, DEFAULT_MODEL_FILE),
              encoding="utf-8") as f:
      name = f.read().strip()
  except OSError:
    return None
  models = list_models(models_dir) if models is None else models
  return next((m for m in models if m.dir_name == name), None)


def find(models_dir, model):
  """ModelInfo of `model`: a folder name in `models_dir` or a path; None if
  it is neither (a ModelInfo is returned as it is)."""
  if isinstance(model, ModelInfo):
    return model
  candidate = os.path.join(models_dir, model)
  if os.path.isdir(candidate):
    return ModelInfo(model, candidate)
  if os.path.isdir(model):
    return ModelInfo(os.path.basename(os.path.normpath(model)), model)
  return None


def find_maker(models, fingerprint):
  """The model that made a bitstream with this header fingerprint, or None.

  The fingerprint covers the weights, architecture and arithmetic, so two
  folders holding the same export are interchangeable: the first is taken.
  """
  return next((m for m in models if m.made(fingerprint)), None)


def export_metadata(path):
  """(model base path, metadata.json of its newest complete version) of a
  model folder or version directory."""
  base, version_dir = _newest_version(path)
  return base, layout.read_metadata(version_dir)


def card_paths(model_base_path):
  """(model_card.json, MODEL_CARD.md) of a model folder."""
  return (os.path.join(model_base_path, MODEL_CARD_FILE),
          os.path.join(model_base_path, MODEL_CARD_MARKDOWN_FILE))


def read_card(model_base_path):
  """The card of a model folder, or None."""
  path = card_paths(model_base_path)[0]
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def load(model, models_dir=None, graph_cache=None):
  """The `ExportedCodec` of a model: a name in `models_dir` (default
  `default_models_dir()`), a path, or a ModelInfo. `graph_cache`: a
  `runtime.graph_cache.GraphCache` for its first calls, or None (the
  default: no store, nothing written); see `ExportedCodec`."""
  models_dir = default_models_dir() if models_dir is None else models_dir
  info = find(models_dir, model)
  if info is None:
    raise ZooError(f"unknown model {model}: not in {models_dir} and not a "
                   "directory")
  # Deliberately lazy: loading is the one thing here that needs TensorFlow.
  from dcae_tf.runtime import exported  # pylint: disable=import-outside-toplevel
  return exported.load_exported(info.version_dir, graph_cache=graph_cache)
