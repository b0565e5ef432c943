"""Compatibility names: moved to `dcae_tf.codec.heap`."""
# pylint: disable=unused-import
from dcae_tf.codec.heap import release_free_memory
