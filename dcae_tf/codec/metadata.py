"""Names in a codec's metadata that tools read without TensorFlow.

A codec's `metadata` dict (name, fingerprint, preset, lmbda, metric,
format_version, max_pixels, weight_dtype, transform_dtype, and how it was
trained) travels
into every export as `metadata.json`; model cards and the model store read
these keys back, so they are spelt here once, in a module that imports
nothing.
"""
# Facts of a model directory's model.json that travel into exports.
TRAINING_METADATA = ("step", "train_data", "crop_size", "batch_size",
                     "learning_rate", "init_from")

# How the layer weights of a codec are stored (`codec.weights`); exports
# made before the key existed stored float32.
FLOAT32 = "float32"
FLOAT16 = "float16"
WEIGHT_DTYPES = (FLOAT32, FLOAT16)
DEFAULT_WEIGHT_DTYPE = FLOAT32

# What g_a and g_s compute in (`codec.transform_dtype`); exports made before
# the key existed computed in float32.
BFLOAT16 = "bfloat16"
TRANSFORM_DTYPES = (FLOAT32, BFLOAT16)
DEFAULT_TRANSFORM_DTYPE = FLOAT32
