"""Compatibility names: the container moved to `dcae_tf.codec` (CHANGELOG).

`container` (format and header reader), `container_ops` (pack, unpack),
`digest` (symbols_digest) and `errors` (error_message, LATENTS_MISMATCH).
"""
# pylint: disable=unused-import
from dcae_tf.codec.container import (
    CHECKSUM_SIZE, FINGERPRINT_SIZE, FORMAT_VERSION, HEADER_SIZE, MAGIC,
    MAX_DIM, MAX_MAX_PIXELS, peek_fingerprint, read_header)
from dcae_tf.codec.container_ops import pack, unpack
from dcae_tf.codec.digest import DIGEST_SIZE, split_payload, symbols_digest
from dcae_tf.codec.errors import LATENTS_MISMATCH, error_message
