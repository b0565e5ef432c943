"""How an exported model stores its weights: float32, or float16 to halve it.

An export's variables are almost all layer weights (for the small preset,
17 MB of a 25 MB SavedModel). Stored as float16 they take half the space;
the graph reads each one as float32 (a cast per read), so every computation
still runs in float32, exactly as in training. Encoder and decoder read the
same rounded weights, so bitstreams still decode bit-exactly. The rounding
(relative 2^-11 per weight) moved the shipped models' held-out PSNR by at
most 0.013 dB and their bpp by at most 0.1 % (measured 2026-11-26 with
bin/evaluate.py), and it changes the weights' fingerprint, so a float16
export never accepts a float32 export's bitstreams or vice versa.

Only the weights created when the layers are built are halved. The z
prior's parameters and quantisation offsets (the codec builds its coding
tables from them eagerly) and the slice model's dictionary (read outside
any layer call) are created with the model and stay float32; they are
tiny.

The reads are cast by Keras's `AutoCastVariable`, the wrapper its mixed
precision uses the other way round (float32 variables read as float16):
Keras layers cast every wrapped weight to their compute dtype (float32)
inside their call.
"""
import tensorflow as tf
# Keras has no public constructor for the wrapper; keras 2.14 is pinned.
from keras.src.mixed_precision import autocast_variable

from dcae_tf.codec import metadata as metadata_lib
from dcae_tf.model import DCAE


def _half_storage_creator(next_creator, **kwargs):
  """Creates a float32 variable as a float16 one that reads as float32."""
  if tf.as_dtype(kwargs.get("dtype") or tf.float32) != tf.float32:
    return next_creator(**kwargs)
  initial_value = kwargs["initial_value"]
  kwargs["initial_value"] = lambda: tf.cast(
      initial_value() if callable(initial_value) else initial_value,
      tf.float16)
  kwargs["dtype"] = tf.float16
  return autocast_variable.create_autocast_variable(next_creator(**kwargs))


def storage_dtype(model):
  """"float16" if the model's layer weights are stored halved, else float32."""
  halved = any(v.dtype == tf.float16 for v in model.variables)
  return metadata_lib.FLOAT16 if halved else metadata_lib.FLOAT32


def _check_dtype(dtype):
  if dtype not in metadata_lib.WEIGHT_DTYPES:
    raise ValueError("weight dtype must be one of "
                     f"{metadata_lib.WEIGHT_DTYPES}, "
                     f"not {dtype!r}")


def new_model(config, dtype=metadata_lib.FLOAT32):
  """A freshly initialised, built `DCAE` whose layer weights are `dtype`.

  The weights are created in their storage dtype, so a float16 model never
  holds a float32 copy (what a process that loads a float16 export holds;
  used to measure memory).
  """
  _check_dtype(dtype)
  # The prior and the offsets are created here, in float32; the layer
  # weights are created by building, under the creator.
  model = DCAE(config)
  if dtype == metadata_lib.FLOAT32:
    return model.build_weights()
  with tf.variable_creator_scope(_half_storage_creator):
    return model.build_weights()


def with_weight_dtype(model, dtype):
  """`model`, or a copy of it whose layer weights are stored as `dtype`.

  Args:
    model: a built `DCAE` with float32 weights.
    dtype: one of `metadata.WEIGHT_DTYPES`.

  Returns:
    `model` itself for float32; for float16 a new `DCAE` of the same config
    holding the weights rounded to float16.
  """
  _check_dtype(dtype)
  if dtype == metadata_lib.FLOAT32:
    return model
  copy = new_model(model.config, dtype)
  sources, targets = model.variables, copy.variables
  if [(v.name, v.shape) for v in sources] != [(v.name, v.shape)
                                              for v in targets]:
    raise ValueError("internal error: a rebuilt model's variables do not "
                     "match the original's")
  for source, target in zip(sources, targets):
    target.assign(tf.cast(source, target.dtype))
  return copy


def as_float32(model):
  """`model`, or a float32 copy of a model whose weights are stored halved
  (the inverse of `with_weight_dtype`; exact, float16 values are float32
  values)."""
  if storage_dtype(model) == metadata_lib.FLOAT32:
    return model
  copy = new_model(model.config, metadata_lib.FLOAT32)
  for source, target in zip(model.variables, copy.variables):
    if (source.name, source.shape) != (target.name, target.shape):
      raise ValueError("internal error: a rebuilt model's variables do not "
                       "match the original's")
    target.assign(tf.cast(source.value(), tf.float32))
  return copy

