"""The export runtime: codecs as SavedModels, written and loaded.

  layout          the files of an export: versions, the newest complete
                  one, metadata.json (no TF)
  contract        the signatures of an export (no TF)
  writer          `save_versioned`: a codec -> a new version, atomically
  warmup_file     TF Serving's warm-up requests of an export
  signatures      `SavedSignatures`: run a SavedModel's signatures directly
  graph_cache     an opt-in per-machine store of a signature's optimised
                  graph (TF only at a first call through it)
  tensors         TensorProto <-> numpy for the two tensor kinds exchanged
  exported        `ExportedCodec`: the codec interface of a loaded export
  weights_source  an export as the source of a model's weights
  client          `ServingClient`, `RemoteCodec`: the model server's client

`dcae_tf.export` is the public entry point: it gathers the public names of
`layout`, `contract`, `writer`, `warmup_file` and `exported` in one place
(its `__all__`). This package's `__init__` imports nothing, so `layout`,
`contract` and `graph_cache` load without TensorFlow.
"""
