"""The export runtime's public names in one module (`dcae_tf.runtime`).

    from dcae_tf import export
    version_dir = export.save_versioned(codec, "saved_models/NAME")
    codec = export.load_exported("saved_models/NAME")  # newest version

See `runtime.layout` (the files), `runtime.contract` (the signatures),
`runtime.writer` and `runtime.exported`.
"""
# pylint: disable=unused-import
from dcae_tf.codec.warmup import (
    COMPRESS, DECOMPRESS, WARMUP_IMAGE_SIZE, WARMUP_SIGNATURES, warmup_image)
from dcae_tf.runtime.contract import (
    BITSTREAM, ESTIMATED_BITS, IMAGE, IMAGE_CHANNELS, JSON, METADATA,
    RECONSTRUCT, SIGNATURES, check_image, check_signature_defs)
from dcae_tf.runtime.exported import (
    ExportedCodec, load_exported, write_warmup_file)
from dcae_tf.runtime.layout import (
    METADATA_FILENAME, SAVED_MODEL_FILENAME, TMP_PREFIX, WARMUP_PATH,
    ExportError, complete_versions, is_complete, list_versions,
    resolve_version_dir)
from dcae_tf.runtime.warmup_file import read_warmup
from dcae_tf.runtime.writer import save_versioned
