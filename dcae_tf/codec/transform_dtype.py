"""The dtype g_a and g_s compute in inside a codec: float32, or bfloat16.

g_a runs only in the encoder and g_s only in the decoder, so computing
them in bfloat16 cannot desynchronise entropy decoding: every mean, scale
and table index comes from y_hat and z_hat through the hyperprior, the
slices and the dictionary attention, which stay float32 (as do h_a, both
h_s branches and the rounding). The encoder's own reconstruction runs the
decoder's g_s, so decode == reconstruction stays exact. Entropy-parameter
arithmetic is unchanged, so the fingerprint is too: a bitstream of a
bfloat16 codec decodes with a float32 codec of the same weights (and the
other way round) to the same latents; only the pixels of g_s differ.

The bfloat16 transforms are views of the model's: Keras layers built under
the `mixed_bfloat16` policy whose variables are the model's own (found by
name while they are built), read as bfloat16 by Keras's autocast. Nothing
is copied: an export holds each weight once, stored as `weight_dtype` says.
"""
import contextlib

import tensorflow as tf
# Keras has no public constructor for the wrapper; keras 2.14 is pinned.
from keras.src.mixed_precision import autocast_variable

from dcae_tf import model as model_lib
from dcae_tf import transforms
from dcae_tf.codec.metadata import (
    BFLOAT16, DEFAULT_TRANSFORM_DTYPE, FLOAT32, TRANSFORM_DTYPES)

__all__ = ["BFLOAT16", "DEFAULT_TRANSFORM_DTYPE", "FLOAT32",
           "TRANSFORM_DTYPES", "check_transform_dtype", "transform_views"]


def check_transform_dtype(dtype):
  if dtype not in TRANSFORM_DTYPES:
    raise ValueError(f"transform dtype must be one of {TRANSFORM_DTYPES}, "
                     f"not {dtype!r}")


def _view(model, source, build, x):
  """`build(config)` under mixed bfloat16, on `source`'s variables."""
  prefix = model.name + "/"
  by_name = {v.name[len(prefix):].rsplit(":", 1)[0]: v
             for v in source.weights}
  used = []

  def shared(next_creator, **kwargs):
    del next_creator  # Never a new variable: the model's, by name.
    scope = tf.get_current_name_scope()
    name = f"{scope}/{kwargs['name']}" if scope else kwargs["name"]
    if name not in by_name:
      raise ValueError(f"internal error: the bfloat16 {source.name} has a "
                       f"variable {name!r} the model does not")
    used.append(name)
    return by_name[name]

  with model_lib.policy_scope(model_lib.MIXED_BFLOAT16):
    view = build(model.config)
  _float32_norms(view)
  _float32_last_conv(view)
  with tf.variable_creator_scope(shared), _no_double_autocast():
    view(x)
  if sorted(used) != sorted(by_name):
    raise ValueError(f"internal error: the bfloat16 {source.name} does not "
                     "use every variable of the model's")
  return view


def _float32_norms(view):
  """The layer norms of `view` compute under the float32 policy.

  Keras's layer norm computes in float32 under mixed policies anyway, but
  reads its gamma and beta as stored, never autocast: a float16-stored
  weight (`codec.weights`, an AutoCastVariable) must be read as float32,
  which the float32 policy does. Its output is then float32 where a mixed
  norm's is bfloat16, and the layer reading it casts it to bfloat16 on
  entry: the same values.
  """
  for layer in view.submodules:
    if isinstance(layer, tf.keras.layers.LayerNormalization):
      layer._set_dtype_policy(model_lib.FLOAT32)  # pylint: disable=protected-access


def _float32_last_conv(view):
  """The convolution that writes the transform's output computes in float32.

  Its input is bfloat16-rounded, but its sums and its output are float32:
  a bfloat16 output would round y before quantisation (8 significant bits:
  a spacing of 0.125 at 20) and the image before its 8-bit rounding (a
  spacing of 1/256 above 0.5, one grey level), costing rate and PSNR. It is
  one convolution of many, at 1/16 of the pixels (g_a) or with three
  output channels (g_s).
  """
  last = view.steps[-1]
  conv = getattr(last, "conv", last)  # g_s ends in a block, g_a in a conv
  conv._set_dtype_policy(model_lib.FLOAT32)  # pylint: disable=protected-access


@contextlib.contextmanager
def _no_double_autocast():
  """Keras wraps each weight of a mixed layer in an AutoCastVariable; a
  float16-stored weight already is one, read as the layer's compute dtype,
  and is kept as it is."""
  wrap = autocast_variable.create_autocast_variable

  def create(variable):
    if isinstance(variable, autocast_variable.AutoCastVariable):
      return variable
    return wrap(variable)

  autocast_variable.create_autocast_variable = create
  try:
    yield
  finally:
    autocast_variable.create_autocast_variable = wrap


class _Untracked:
  """Holds layers out of sight of tf.Module's and SavedModel's tracking:
  their variables are the model's, saved (and listed) once, through it."""

  def __init__(self, **layers):
    self.__dict__.update(layers)


def transform_views(model, dtype):
  """An object whose `g_a` and `g_s` compute in `dtype` (the model's own
  for float32), untracked: keep it as an attribute of a tf.Module and its
  variables are still saved and listed once, as the model's."""
  check_transform_dtype(dtype)
  if dtype == FLOAT32:
    return _Untracked(g_a=model.g_a, g_s=model.g_s)
  m = model.config.pad_multiple
  image = tf.zeros((1, m, m, transforms.IMAGE_CHANNELS))
  g_a = _view(model, model.g_a, transforms.analysis_transform, image)
  g_s = _view(model, model.g_s, transforms.synthesis_transform, g_a(image))
  return _Untracked(g_a=g_a, g_s=g_s)
