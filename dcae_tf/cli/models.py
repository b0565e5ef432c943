"""The command line's models: chosen in the model store, loaded once each.

`get_codec(flags, model)` is the one place a codec comes from: anything with
`.compress(uint8 HxWx3 array) -> bytes`, `.decompress(bytes) -> array` and a
`.metadata` dict (name, fingerprint, preset, lmbda, metric) works; loaded
codecs are cached, so a folder loads each model once. A model is loaded
with the store of optimised graphs --graph_cache names (none when flags
without it, built by other code, are passed).
"""
import os

from dcae_tf import zoo
from dcae_tf.cli.output import CliError, import_tf
from dcae_tf.codec import errors
from dcae_tf.runtime import graph_cache

_CODECS = {}


def list_models(models_dir):
  """`zoo.list_models`, its errors as CliErrors."""
  try:
    return zoo.list_models(models_dir)
  except zoo.ModelsDirNotFound as e:
    raise CliError(f"{e} (set --models_dir)") from None
  except zoo.ZooError as e:
    raise CliError(str(e)) from None


def _model_info(models_dir, model):
  try:
    return zoo.find(models_dir, model)
  except zoo.ZooError as e:
    raise CliError(str(e)) from None


def resolve_model(flags, model=None):
  """ModelInfo of --model (or `model`): a name in --models_dir or a path."""
  model = model or flags.model
  if model is None:
    models = list_models(flags.models_dir)
    if len(models) == 1:
      return models[0]
    default = zoo.default_model(flags.models_dir, models)
    if default is not None:
      return default
    if not models:
      raise CliError(f"no models in {flags.models_dir}")
    raise CliError(f"{len(models)} models in {flags.models_dir} "
                   f"({zoo.names(models)}): choose one with --model NAME or "
                   "use --target_bpp")
  info = _model_info(flags.models_dir, model)
  if info is not None:
    return info
  try:
    available = zoo.names(list_models(flags.models_dir))
  except CliError:
    available = "none"
  raise CliError(f"unknown model {model}: not in {flags.models_dir} "
                 f"(available: {available}) and not a directory")


def find_model_for(flags, header, path):
  """The model in --models_dir that made a bitstream (by its fingerprint)."""
  try:
    models = list_models(flags.models_dir)
  except CliError:
    models = []
  found = zoo.find_maker(models, header["fingerprint"])
  if found is not None:
    return found
  raise CliError(f"{path} was made by the model with fingerprint "
                 f"{header['fingerprint']}, which is not in "
                 f"{flags.models_dir} (available: {zoo.names(models)}); use "
                 "--model or --models_dir")


def get_codec(flags, model=None):
  """The codec of --model (or of `model`, a name, path or ModelInfo); with
  --server, the served model's."""
  if getattr(flags, "server", None):
    return _remote_codec(flags, model)
  info = resolve_model(flags, model)
  key = os.path.realpath(info.version_dir)
  if key not in _CODECS:
    import_tf()
    # Deliberately lazy: loading is the first thing that needs TensorFlow.
    from dcae_tf.runtime import exported  # pylint: disable=import-outside-toplevel
    try:
      _CODECS[key] = exported.load_exported(
          info.version_dir, graph_cache=graph_cache.from_setting(
              getattr(flags, "graph_cache", None)))
    except (ValueError, OSError) as e:
      raise CliError(f"cannot load model {info.dir_name}: {e}") from None
  return _CODECS[key]


def _remote_codec(flags, model=None):
  """The codec of a model served at --server (TF Serving's gRPC API).

  The model is named by --model (or `model`); nothing is loaded locally.
  """
  model = model or flags.model
  name = model.dir_name if isinstance(model, zoo.ModelInfo) else model
  if not name:
    raise CliError("with --server, name the served model with --model NAME")
  key = ("grpc", flags.server, name)
  if key not in _CODECS:
    import_tf()
    # Deliberately lazy: gRPC and TF Serving's protos, only with --server.
    from dcae_tf.runtime import client  # pylint: disable=import-outside-toplevel
    try:
      _CODECS[key] = client.remote_codec(
          flags.server, name, timeout=flags.server_timeout)
    except ValueError as e:
      raise CliError(str(e)) from None
  return _CODECS[key]


def codec_call(fn, *args):
  """Runs a codec call, turning TF errors into one-line ValueErrors.

  (A --server codec's failed RPC is already one: `ServingError` is a
  ValueError.)
  """
  tf = import_tf()
  try:
    return fn(*args)
  except tf.errors.OpError as e:
    raise ValueError(errors.error_message(e)) from None
