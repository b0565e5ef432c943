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

Inside g_a and g_s, the convolutions, attention and MLPs compute in
bfloat16; the residual stream between them, the layer norms and the
convolutions reading and writing the transform's ends stay float32
(`_float32_stream`, `_float32_ends`).

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
from dcae_tf.layers import base
from dcae_tf.layers import swin
from dcae_tf.codec.metadata import (
    BFLOAT16, DEFAULT_TRANSFORM_DTYPE, FLOAT32, TRANSFORM_DTYPES)

__all__ = ["BFLOAT16", "DEFAULT_TRANSFORM_DTYPE", "FLOAT32",
           "TRANSFORM_DTYPES", "check_transform_dtype", "transform_views"]


def check_transform_dtype(dtype):
  if dtype not in TRANSFORM_DTYPES:
    raise ValueError(f"transform dtype must be one of {TRANSFORM_DTYPES}, "
                     f"not {dtype!r}")


def _view(model, source, build, x, float32_steps=0):
  """`build(config)` under mixed bfloat16, on `source`'s variables, its
  first `float32_steps` steps wholly float32."""
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
  _float32_stream(view)
  _float32_ends(view)
  for step in view.steps[:float32_steps]:
    _float32_whole(step)
  with tf.variable_creator_scope(shared), _no_double_autocast():
    view(x)
  if sorted(used) != sorted(by_name):
    raise ValueError(f"internal error: the bfloat16 {source.name} does not "
                     "use every variable of the model's")
  return view


# g_a's first steps (the down block and the stage at 1/2 resolution)
# compute wholly in float32: their errors, on the finest features, reach y
# through every later step and flip its rounding (docs/performance.md has
# what they cost in bfloat16). They are 41 % of g_a's FLOPs in the small
# preset, 23 % in the paper preset, whose last stage is the deepest.
FLOAT32_ANALYSIS_STEPS = 2

# The layers that compute in bfloat16 in a bfloat16 transform: the ones
# whose arithmetic is a convolution or a matrix product (with what they
# do inside: the attention's softmax, the MLP's gate).
_BFLOAT16_LAYERS = (base.Conv2D, base.ConvTranspose2D, swin.WindowAttention,
                    swin.ConvGLU)


def _float32_stream(layer):
  """Every layer under `layer` but `_BFLOAT16_LAYERS` computes in float32.

  Those are the containers (blocks, stages), the residual scales and the
  layer norms, so the residual stream stays float32 between the bfloat16
  branches (`base.residual_add`): rounding it to bfloat16 after every block
  compounded through the transform. The MLP takes the float32 stream
  (`swin.ConvGLU`), so its layer norm (folded into it) subtracts the mean
  before rounding to bfloat16. The layer norms also read their gamma
  and beta as float32 this way, which a float16-stored weight
  (`codec.weights`, an AutoCastVariable) needs: Keras's layer norm never
  autocasts them.
  """
  # pylint: disable=protected-access
  layer._set_dtype_policy(model_lib.FLOAT32)
  for child in layer._flatten_layers(include_self=False, recursive=False):
    if isinstance(child, swin.ConvGLU):
      # It takes the stream as it is and normalises it before rounding.
      child._autocast = False
    elif not isinstance(child, _BFLOAT16_LAYERS):
      _float32_stream(child)


def _float32_ends(view):
  """The convolutions that read the transform's input and write its output
  compute in float32.

  In bfloat16 (8 significant bits) they would round the image (a spacing
  of 1/256 above 0.5: one grey level) or y_hat (0.25 at 32: its means'
  fractions) on reading, and y before quantisation or the image before its
  8-bit rounding on writing, costing rate and PSNR. Each is one
  convolution of many, with three image channels on one side, or at 1/16
  of the pixels.
  """
  first, last = view.steps[0], view.steps[-1]
  # g_a starts in a down block and ends in a conv; g_s the other way round.
  for conv in (getattr(first, "conv", first), getattr(last, "conv", last)):
    _float32_whole(conv)


def _float32_whole(layer):
  """`layer` and every layer under it compute in float32."""
  for sub in [layer] + list(layer.submodules):
    if isinstance(sub, tf.keras.layers.Layer):
      sub._set_dtype_policy(model_lib.FLOAT32)  # pylint: disable=protected-access


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
  g_a = _view(model, model.g_a, transforms.analysis_transform, image,
              FLOAT32_ANALYSIS_STEPS)
  g_s = _view(model, model.g_s, transforms.synthesis_transform, g_a(image))
  return _Untracked(g_a=g_a, g_s=g_s)
