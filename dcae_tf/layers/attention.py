"""Compatibility names: moved to `dcae_tf.layers.swin` and `.tiling`."""
# pylint: disable=unused-import
from dcae_tf.layers.swin import (
    ConvGLU, SwinBlock, SwinStage, WindowAttention, fold_affine, linear,
    normalize)
from dcae_tf.layers.tiling import (
    ATTENTION_CHUNK_BYTES, MLP_CHUNK_BYTES, equal_parts, map_row_bands,
    sequential_concat)
