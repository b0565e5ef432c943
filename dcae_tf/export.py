"""The export runtime's public entry point: its public names in one module.

    from dcae_tf import export
    version_dir = export.save_versioned(codec, "saved_models/NAME")
    codec = export.load_exported("saved_models/NAME")  # newest version
    # With the opt-in store of optimised graphs (none by default), a later
    # process's first calls take seconds (runtime.graph_cache):
    codec = export.load_exported("saved_models/NAME",
                                 graph_cache=export.GraphCache(directory))

The names are defined in `dcae_tf.runtime` (`runtime.layout`: the files,
`runtime.contract`: the signatures, `runtime.writer`, `runtime.exported`,
`runtime.graph_cache`, `runtime.warmup_file`) and `dcae_tf.codec.warmup`;
`__all__` lists them (tests/test_docs.py keeps it complete).
"""
from dcae_tf.codec.warmup import (
    COMPRESS, DECOMPRESS, WARMUP_IMAGE_SIZE, WARMUP_SIGNATURES, warmup_image)
from dcae_tf.runtime.contract import (
    BITSTREAM, BITSTREAM_BYTES, ESTIMATED_BITS, IMAGE, IMAGE_CHANNELS, JSON,
    METADATA, REST_BYTES_SUFFIX, RECONSTRUCT, SIGNATURES, check_image,
    check_signature_defs, reexport_command)
from dcae_tf.runtime.exported import (
    ExportedCodec, load_exported, write_warmup_file)
from dcae_tf.runtime.graph_cache import GraphCache
from dcae_tf.runtime.layout import (
    METADATA_FILENAME, SAVED_MODEL_FILENAME, TMP_PREFIX, WARMUP_PATH,
    ExportError, complete_versions, is_complete, list_versions,
    newest_version_dir, resolve_version_dir)
from dcae_tf.runtime.warmup_file import read_warmup
from dcae_tf.runtime.writer import save_versioned

__all__ = (
    # codec.warmup
    "COMPRESS", "DECOMPRESS", "WARMUP_IMAGE_SIZE", "WARMUP_SIGNATURES",
    "warmup_image",
    # runtime.contract
    "BITSTREAM", "BITSTREAM_BYTES", "ESTIMATED_BITS", "IMAGE",
    "IMAGE_CHANNELS", "JSON", "METADATA", "REST_BYTES_SUFFIX", "RECONSTRUCT",
    "SIGNATURES", "check_image", "check_signature_defs", "reexport_command",
    # runtime.exported
    "ExportedCodec", "load_exported", "write_warmup_file",
    # runtime.graph_cache
    "GraphCache",
    # runtime.layout
    "METADATA_FILENAME", "SAVED_MODEL_FILENAME", "TMP_PREFIX", "WARMUP_PATH",
    "ExportError", "complete_versions", "is_complete", "list_versions",
    "newest_version_dir", "resolve_version_dir",
    # runtime.warmup_file, runtime.writer
    "read_warmup", "save_versioned",
)
