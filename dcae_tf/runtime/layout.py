"""The files of an export, in TF Serving's versioned layout (no TensorFlow).

An export of one model is `MODEL_BASE_PATH/<integer version>/`, each
version a SavedModel (`saved_model.pb`, `variables/`) plus `metadata.json`
(the codec's metadata, so tools can identify a version without loading
TensorFlow) and TF Serving's warm-up file `assets.extra/
tf_serving_warmup_requests`. A version being written lives in a `.tmp*`
sibling until it is renamed into place, so a reader never sees half of one.

The writer (`runtime.writer`), the loader (`runtime.exported`), the model
server and the model store (`dcae_tf.zoo`) all read the layout from here.
"""
import json
import os

SAVED_MODEL_FILENAME = "saved_model.pb"
# The checkpoint of a version's weights (`variables/variables.index`, ...).
VARIABLES_PREFIX = os.path.join("variables", "variables")
METADATA_FILENAME = "metadata.json"
TMP_PREFIX = ".tmp"
# TF Serving's warm-up requests (PredictionLog records in a TFRecord file).
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")


class ExportError(ValueError):
  """A path that is not a (complete) DCAE export, or an export refused."""


def is_version_name(name):
  """Whether a directory name is a version: ASCII digits (never a .tmp*)."""
  return name.isascii() and name.isdigit()


def list_versions(model_base_path):
  """Sorted integer versions under `model_base_path` (ignores .tmp* dirs).

  Lists every integer-named directory, complete or not (so a new version
  never reuses the number of a broken one); see `complete_versions`.
  """
  try:
    names = os.listdir(model_base_path)
  except OSError:
    return []
  return sorted(int(name) for name in names
                if is_version_name(name)
                and os.path.isdir(os.path.join(model_base_path, name)))


def is_complete(version_dir):
  """Whether a version directory has its SavedModel graph written."""
  return os.path.isfile(os.path.join(version_dir, SAVED_MODEL_FILENAME))


def complete_versions(model_base_path):
  """Sorted versions whose directory holds a saved_model.pb."""
  return [v for v in list_versions(model_base_path)
          if is_complete(os.path.join(model_base_path, str(v)))]


def newest_version_dir(path):
  """The version directory that `path` names: `path` itself if it is a
  complete version, else the newest complete version under it.

  Every reader of an export (the loader, the model store, the weight
  source) asks this. Incomplete versions (no saved_model.pb yet),
  `.tmp*` directories and names that are not integers are passed over.

  Raises:
    ExportError: `path` is neither (also when it is missing or a file).
  """
  if is_complete(path):
    return path
  versions = complete_versions(path)
  if not versions:
    raise ExportError(
        f"{path} holds no complete export version (an integer "
        f"subdirectory with {SAVED_MODEL_FILENAME})")
  return os.path.join(path, str(versions[-1]))


def resolve_version_dir(path):
  """Maps a model base path (-> newest complete version) or a version dir.

  Returns:
    (version_dir, version) with version None if the directory name is not an
    integer.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"no such export: {path}")
  if not os.path.isdir(path):
    raise ExportError(f"not a DCAE export (not a directory): {path}")
  try:
    version_dir = newest_version_dir(path)
  except ExportError:
    raise ExportError(
        f"no versions under {path}: expected integer subdirectories holding "
        f"{SAVED_MODEL_FILENAME} (write them with dcae_tf.export.save_versioned)"
    ) from None
  name = os.path.basename(os.path.normpath(version_dir))
  return version_dir, int(name) if is_version_name(name) else None


def base_path(version_dir):
  """The model base path a version directory belongs to."""
  return os.path.dirname(os.path.normpath(version_dir))


def metadata_path(version_dir):
  return os.path.join(version_dir, METADATA_FILENAME)


def write_metadata(version_dir, metadata_json):
  with open(metadata_path(version_dir), "w", encoding="utf-8") as f:
    f.write(metadata_json + "\n")


def read_metadata(version_dir):
  """The metadata.json of a version, as a dict.

  Raises:
    OSError: unreadable; ValueError: not JSON.
  """
  with open(metadata_path(version_dir), encoding="utf-8") as f:
    return json.load(f)
