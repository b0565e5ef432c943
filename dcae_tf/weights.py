"""Compatibility names: weight storage moved to `dcae_tf.codec.weights`."""
# pylint: disable=unused-import
from dcae_tf.codec.weights import (
    FLOAT16, FLOAT32, WEIGHT_DTYPES, new_model, storage_dtype,
    with_weight_dtype)
