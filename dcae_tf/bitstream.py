"""Compatibility names: the container moved to `dcae_tf.codec` (CHANGELOG).

`container` (format and header reader), `container_ops` (pack, unpack),
`digest` (symbols_digest) and `errors` (error_message, LATENTS_MISMATCH).
"""
# pylint: disable=unused-import
from dcae_tf.codec.container import (
    CHECKSUM_SIZE, FINGERPRINT_SIZE, FORMAT_VERSION, MAGIC, MAX_DIM,
    MAX_MAX_PIXELS, MAX_NAME_BYTES, MAX_STRING_BYTES, MAX_STRINGS,
    header_size, peek_model, read_header)
from dcae_tf.codec.container_ops import pack, unpack
from dcae_tf.codec.digest import symbols_digest
from dcae_tf.codec.errors import LATENTS_MISMATCH, error_message
