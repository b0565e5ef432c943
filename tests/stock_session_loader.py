"""Loads an export as TF Serving does, with TensorFlow only.

Run by tests/test_stock_tensorflow.py:

  python tests/stock_session_loader.py VERSION_DIR IMAGE_NPY OUT_DIR

The TF1 session loader and the signature defs' tensor names, no dcae_tf and
(the test blocks it) no tensorflow_compression. Writes OUT_DIR/result.json
(whether TFC could be imported, the export's op types that this TensorFlow
does not register, the session's error if any) and, when the session ran,
the compress signature's bitstream and the decompress signature's image of
it.
"""
import json
import os
import sys


def main(version_dir, image_path, out_dir):
  # pylint: disable=import-outside-toplevel,unused-import
  result = {}
  try:
    import tensorflow_compression
    result["tfc_import_error"] = None
  except ImportError as e:
    result["tfc_import_error"] = str(e)
  import numpy as np
  import tensorflow as tf
  from tensorflow.core.protobuf import saved_model_pb2
  from tensorflow.python.framework import op_def_registry

  with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
    saved = saved_model_pb2.SavedModel.FromString(f.read())
  ops, functions = set(), set()
  for meta_graph in saved.meta_graphs:
    graph = meta_graph.graph_def
    ops.update(node.op for node in graph.node)
    for function in graph.library.function:
      functions.add(function.signature.name)
      ops.update(node.op for node in function.node_def)
  ops -= functions  # Calls of library functions, not op types.
  result["num_ops"] = len(ops)
  result["missing"] = sorted(o for o in ops if op_def_registry.get(o) is None)

  try:
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
      meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"],
                                                  version_dir)
      compress = meta.signature_def["compress"]
      decompress = meta.signature_def["decompress"]
      data = sess.run(compress.outputs["bitstream_bytes"].name,
                      {compress.inputs["image"].name: np.load(image_path)})
      decoded = sess.run(decompress.outputs["image"].name,
                         {decompress.inputs["bitstream"].name: data})
    with open(os.path.join(out_dir, "bitstream"), "wb") as f:
      f.write(data)
    np.save(os.path.join(out_dir, "decoded.npy"), decoded)
    result["session_error"] = None
  except Exception as e:  # Reported, compared by the test.
    result["session_error"] = f"{type(e).__name__}: {e}"
  result["tfc_imported"] = "tensorflow_compression" in sys.modules
  with open(os.path.join(out_dir, "result.json"), "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main(*sys.argv[1:])
