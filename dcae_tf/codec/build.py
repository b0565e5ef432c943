"""A codec from a trained model or a model directory (checkpoint +
model.json), with the storage and compute dtypes and the numerics chosen.
"""
from dcae_tf.codec import checkpoint
from dcae_tf.codec import container
from dcae_tf.codec import core
from dcae_tf.codec import metadata as metadata_lib
from dcae_tf.codec import numerics as numerics_lib
from dcae_tf.codec import weights


def codec_from_model(model, meta, name=None,
                     max_pixels=container.DEFAULT_MAX_PIXELS,
                     lmbda=None, metric=None,
                     weight_dtype=metadata_lib.FLOAT32,
                     transform_dtype=metadata_lib.DEFAULT_TRANSFORM_DTYPE,
                     numerics=numerics_lib.EXACT):
  """Builds a codec (with its coding tables) from a float32 model and the
  meta of its model directory (model.json) or export.

  λ and metric are taken from `meta` unless given. `weight_dtype`
  "float16" stores the layer weights halved (see `codec.weights`):
  half-size exports, same float32 computation. `transform_dtype`
  "bfloat16" computes g_a and g_s in bfloat16 (`codec.transform_dtype`).
  """
  model = weights.with_weight_dtype(model, weight_dtype)
  return core.DCAECodec(
      model, name=name, max_pixels=max_pixels,
      lmbda=meta.get("lmbda") if lmbda is None else lmbda,
      metric=meta.get("metric") if metric is None else metric,
      extra_metadata={k: meta[k] for k in metadata_lib.TRAINING_METADATA
                      if k in meta},
      transform_dtype=transform_dtype, numerics=numerics)


def codec_from_checkpoint(directory, name=None,
                          max_pixels=container.DEFAULT_MAX_PIXELS,
                          lmbda=None, metric=None,
                          weight_dtype=metadata_lib.FLOAT32,
                          transform_dtype=metadata_lib.DEFAULT_TRANSFORM_DTYPE,
                          numerics=numerics_lib.EXACT):
  """Builds a codec from a model directory (see `codec_from_model`).

  The z quantisation offsets are used as stored: training refreshes them
  from the prior (`HyperpriorModel.refresh_offset`), conversion loads the
  official medians, so the codec quantises exactly as the checkpoint was
  evaluated.
  """
  model, meta = checkpoint.load_model(directory)
  return codec_from_model(model, meta, name=name, max_pixels=max_pixels,
                          lmbda=lmbda, metric=metric,
                          weight_dtype=weight_dtype,
                          transform_dtype=transform_dtype, numerics=numerics)
