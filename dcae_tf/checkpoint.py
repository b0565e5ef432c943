"""Compatibility names: model directories moved to `dcae_tf.codec.checkpoint`."""
# pylint: disable=unused-import
from dcae_tf.codec.checkpoint import (
    META_FILE, METRICS, load_model, make_meta, model_from_meta, read_meta,
    save_model, write_meta)
