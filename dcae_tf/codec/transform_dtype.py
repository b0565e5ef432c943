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
(`_policies`).

The bfloat16 transforms are views of the model's: Keras layers constructed
with explicit dtype policies (`transforms.Policies`) whose variables are
the model's own, found by name while they are built, inside a variable
creator scope (thread-local). Nothing is copied: an export holds each
weight once, stored as `weight_dtype` says. Nothing process-wide changes
either (no global Keras policy, no patched Keras function), so views may
be built while other threads build or run models.
"""
import tensorflow as tf

from dcae_tf import transforms
from dcae_tf.codec import metadata as metadata_lib

__all__ = ["check_transform_dtype", "transform_views"]


def check_transform_dtype(dtype):
  if dtype not in metadata_lib.TRANSFORM_DTYPES:
    raise ValueError("transform dtype must be one of "
                     f"{metadata_lib.TRANSFORM_DTYPES}, "
                     f"not {dtype!r}")


# g_a's first steps (the down block and the stage at 1/2 resolution)
# compute wholly in float32: their errors, on the finest features, reach y
# through every later step and flip its rounding (docs/performance.md has
# what they cost in bfloat16). They are 41 % of g_a's FLOPs in the small
# preset, 23 % in the paper preset, whose last stage is the deepest.
FLOAT32_ANALYSIS_STEPS = 2


def _bfloat16_policy(source):
  """The policy of the layers that compute in bfloat16, for `source`'s
  weights.

  float32 weights: `mixed_bfloat16`, whose layers wrap each weight in
  Keras's AutoCastVariable, read as bfloat16 inside them. float16-stored
  weights (`codec.weights`) already are AutoCastVariables, read as the
  compute dtype of the layer reading them; a mixed layer would wrap them
  again, and a wrapper around a wrapper cannot be converted to a tensor:
  `bfloat16`, whose layers compute in bfloat16 and wrap nothing (the dtype
  it gives new weights does not matter: a view creates none).
  """
  stored = {v.dtype for v in source.weights}
  if stored == {tf.float32}:
    return tf.keras.mixed_precision.Policy("mixed_bfloat16")
  if stored == {tf.float16}:
    return tf.keras.mixed_precision.Policy("bfloat16")
  raise ValueError(f"internal error: {source.name}'s weights are stored as "
                   f"{sorted(d.name for d in stored)}, not float32 or "
                   "float16 alike")


def _policies(source, float32_steps):
  """Where a bfloat16 transform computes in bfloat16.

  The convolutions, attention and MLPs (with what they do inside: the
  attention's softmax, the MLP's gate) compute in bfloat16. The residual
  stream stays float32 between them (the transform, its blocks and stages,
  residual scales and layer norms: `base.residual_add`): rounding it to
  bfloat16 after every block compounded through the transform. The MLP
  takes the float32 stream (`mlp.ConvGLU`), so its layer norm (folded into
  it) subtracts the mean before rounding to bfloat16. The layer norms also
  read their gamma and beta as float32 this way, which a float16-stored
  weight (an AutoCastVariable) needs: Keras's layer norm never autocasts
  them.

  The convolutions that read the transform's input and write its output
  compute in float32. In bfloat16 (8 significant bits) they would round
  the image (a spacing of 1/256 above 0.5: one grey level) or y_hat (0.25
  at 32: its means' fractions) on reading, and y before quantisation or
  the image before its 8-bit rounding on writing, costing rate and PSNR.
  Each is one convolution of many, with three image channels on one side,
  or at 1/16 of the pixels.

  The first `float32_steps` steps compute wholly in float32.
  """
  float32 = tf.keras.mixed_precision.Policy(metadata_lib.FLOAT32)
  return transforms.Policies(stream=float32, branch=_bfloat16_policy(source),
                             ends=float32, stream_steps=float32_steps)


def _view(model, source, build, x, float32_steps=0):
  """`build(config, policies)` computing in bfloat16 (`_policies`), on
  `source`'s variables, its first `float32_steps` steps wholly float32."""
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

  view = build(model.config, _policies(source, float32_steps))
  with tf.variable_creator_scope(shared):
    view(x)
  if sorted(used) != sorted(by_name):
    raise ValueError(f"internal error: the bfloat16 {source.name} does not "
                     "use every variable of the model's")
  return view


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
  if dtype == metadata_lib.FLOAT32:
    return _Untracked(g_a=model.g_a, g_s=model.g_s)
  m = model.config.pad_multiple
  image = tf.zeros((1, m, m, transforms.IMAGE_CHANNELS))
  g_a = _view(model, model.g_a, transforms.analysis_transform, image,
              FLOAT32_ANALYSIS_STEPS)
  g_s = _view(model, model.g_s, transforms.synthesis_transform, g_a(image))
  return _Untracked(g_a=g_a, g_s=g_s)
