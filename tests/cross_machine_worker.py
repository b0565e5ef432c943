"""One setting of the cross-machine matrix (tests/test_cross_machine.py).

Run in a fresh process under one CPU-kernel setting (the environment the
test sets), as another computer would run it:

  python tests/cross_machine_worker.py SPEC ROOT SETTING OTHER...

SPEC (JSON) names the codecs ({"name": {"export": path}} or {"name":
{"tiny_seed": int}}, an in-process `DCAECodec` of a seeded tiny model) and
an .npz of uint8 images. The worker loads its codecs once and

1. encodes: per codec and image, the bitstream (and, for in-process
   codecs, the encoder's reconstruction and the digest of its quantised
   latents) under ROOT/SETTING, then marks ROOT/SETTING.encoded;
2. waits for every OTHER setting's mark (one process per setting does both
   directions, so each graph is optimised once per setting);
3. decodes every other setting's bitstreams and writes, per file, whether
   it opened, the first line of the error otherwise, the largest pixel
   difference from the encoder's reconstruction and whether the latents'
   digests agree (where known) to ROOT/SETTING.json, and the decoded
   images to ROOT/SETTING.npz.
"""
import hashlib
import json
import os
import sys
import time

import numpy as np

ENCODED_MARK = ".encoded"
POLL_SECONDS = 0.5
# The other settings encode concurrently; beyond this one of them failed.
WAIT_SECONDS = 1800


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


def encode(codecs, images, out_dir):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  for name, codec in codecs.items():
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    for key, image in images.items():
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
  with open(out_dir + ENCODED_MARK, "w") as f:
    f.write("done\n")


def wait_for(in_dirs):
  deadline = time.monotonic() + WAIT_SECONDS
  while True:
    waiting = [d for d in in_dirs if not os.path.exists(d + ENCODED_MARK)]
    if not waiting:
      return
    if time.monotonic() > deadline:
      raise SystemExit(f"no bitstreams from {waiting} after {WAIT_SECONDS} s")
    time.sleep(POLL_SECONDS)


def decode(codecs, images, out_json, in_dirs):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  results, decoded = [], {}
  for name, codec in codecs.items():
    for in_dir in in_dirs:
      for key in images:
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
          decoded[f"{name}/{os.path.basename(in_dir)}/{key}"] = image
          if "reconstruction" in expected:
            row["max_pixel_difference"] = int(np.max(np.abs(
                image.astype(np.int32) -
                expected["reconstruction"].astype(np.int32))))
        except Exception as e:  # pylint: disable=broad-except
          row["error"] = (str(e).strip().splitlines() or [""])[0][:300]
        results.append(row)
  with open(out_json, "w") as f:
    json.dump(results, f, indent=1)
  np.savez(os.path.splitext(out_json)[0] + ".npz", **decoded)


def main(argv):
  spec_path, root, setting, others = argv[1], argv[2], argv[3], argv[4:]
  with open(spec_path) as f:
    spec = json.load(f)
  codecs, images = _codecs(spec), _images(spec)
  encode(codecs, images, os.path.join(root, setting))
  in_dirs = [os.path.join(root, o) for o in others]
  wait_for(in_dirs)
  decode(codecs, images, os.path.join(root, f"{setting}.json"), in_dirs)


if __name__ == "__main__":
  main(sys.argv)
