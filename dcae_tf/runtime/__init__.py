"""The export runtime: codecs as SavedModels, written and loaded.

  layout       the files of an export: versions, metadata.json (no TF)
  contract     the signatures of an export (no TF)
  writer       `save_versioned`: a codec -> a new version, atomically
  warmup_file  TF Serving's warm-up requests of an export
  signatures   `SavedSignatures`: run a SavedModel's signatures directly
  tensors      TensorProto <-> numpy for the two tensor kinds exchanged
  exported     `ExportedCodec`: the codec interface of a loaded export

`dcae_tf.export` gathers the public names in one place. This package's
`__init__` imports nothing, so `layout` and `contract` load without
TensorFlow.
"""
