"""One side of the cross-machine matrix (tests/test_cross_machine.py).

Run in a fresh process under one CPU-kernel setting (the environment the
test sets), as another computer would run it:

  python tests/cross_machine_worker.py encode SPEC OUT_DIR
  python tests/cross_machine_worker.py decode SPEC OUT_JSON IN_DIR...

SPEC (JSON) names the codecs ({"name": {"export": path}} or {"name":
{"tiny_seed": int}}, an in-process `DCAECodec` of a seeded tiny model) and
an .npz of uint8 images. `encode` writes, per codec and image, the
bitstream (and, for in-process codecs, the encoder's reconstruction and
the digest of its quantised latents). `decode` decodes every bitstream of
the given directories and writes, per file, whether it opened, the first
line of the error otherwise, the largest pixel difference from the
encoder's reconstruction and whether the latents' digests agree (where
known), and the decoded images (an .npz beside OUT_JSON).
"""
import hashlib
import json
import os
import sys

import numpy as np


def _codecs(spec):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dcae_tf.codec import DCAECodec  # pylint: disable=import-outside-toplevel
  from dcae_tf.model import DCAE  # pylint: disable=import-outside-toplevel
  from dcae_tf.runtime.exported import ExportedCodec  # pylint: disable=import-outside-toplevel
  out = {}
  for name, how in sorted(spec["codecs"].items()):
    if "export" in how:
      # No store of optimised graphs (the default): every graph is
      # optimised on this machine.
      out[name] = ExportedCodec(how["export"])
    else:
      tf.keras.utils.set_random_seed(how["tiny_seed"])
      out[name] = DCAECodec(DCAE("tiny").build_weights(), name=name)
  return out


def _digest(array):
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _images(spec):
  with np.load(spec["images"]) as f:
    return {k: f[k] for k in sorted(f.files)}


def encode(spec, out_dir):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  for name, codec in _codecs(spec).items():
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for key, image in _images(spec).items():
      extra = {}
      if hasattr(codec, "compress_with_reconstruction"):
        data, y_hat, recon = codec.compress_with_reconstruction(
            tf.constant(image))
        data, recon = data.numpy(), recon.numpy()
        extra["latents"] = _digest(y_hat.numpy())
        extra["reconstruction"] = recon
      else:
        data = codec.compress(image)
      path = os.path.join(out_dir, name, key)
      with open(path + ".dcae", "wb") as f:
        f.write(data)
      np.savez(path + ".npz", **extra)


def decode(spec, out_json, in_dirs):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  results, images = [], {}
  for name, codec in _codecs(spec).items():
    for in_dir in in_dirs:
      for key in _images(spec):
        path = os.path.join(in_dir, name, key)
        with open(path + ".dcae", "rb") as f:
          data = f.read()
        with np.load(path + ".npz") as f:
          expected = dict(f)
        row = dict(codec=name, source=in_dir, image=key, opened=False)
        try:
          if "latents" in expected:
            y_hat, image = codec.decompress_with_latents(tf.constant(data))
            row["latents_equal"] = (_digest(y_hat.numpy()) ==
                                    str(expected["latents"]))
            image = image.numpy()
          else:
            image = codec.decompress(data)
          row["opened"] = True
          images[f"{name}/{os.path.basename(in_dir)}/{key}"] = image
          if "reconstruction" in expected:
            row["max_pixel_difference"] = int(np.max(np.abs(
                image.astype(np.int32) -
                expected["reconstruction"].astype(np.int32))))
        except Exception as e:  # pylint: disable=broad-except
          row["error"] = (str(e).strip().splitlines() or [""])[0][:300]
        results.append(row)
  with open(out_json, "w") as f:
    json.dump(results, f, indent=1)
  np.savez(os.path.splitext(out_json)[0] + ".npz", **images)


def main(argv):
  command, spec_path = argv[1], argv[2]
  with open(spec_path) as f:
    spec = json.load(f)
  if command == "encode":
    encode(spec, argv[3])
  elif command == "decode":
    decode(spec, argv[3], argv[4:])
  else:
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
  main(sys.argv)
