"""Entropy coding alone: `dcae_tf.rans` against TFC's range coder.

For each shipped model and held-out photograph, the latents (z, and each y
slice with its means and scale indexes) are computed once by the network;
then both coders code exactly those integers with the same tables. Printed
per image: TFC's payload bytes (the six strings) and ours (one string),
their ratio, encode and decode milliseconds of both (warm, best of
`--repeats`), the lane count, and every decode checked element for element
against TFC's `decompress`. A `high-rate` case codes each image's latents
scaled by `HIGH_RATE_SCALE` around their means with the scale indexes moved
accordingly (a model at several times the rate, same coder inputs for both).

  python bench/entropy_coding.py                # shipped models, data/test
  python bench/entropy_coding.py --sweep        # lanes / target steps
  python bench/entropy_coding.py --paper        # + a paper-preset case

`--paper` codes one 768x512 crop's latents tiled to the paper preset's
channel counts and times them beside a paper-preset model's networks at the
same size: the coder's share of the paper preset's encode and decode.
"""
import argparse
import glob
import math
import os
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
for _path in (ROOT, BENCH):
  if _path not in sys.path:
    sys.path.insert(0, _path)

# pylint: disable=wrong-import-position
from dcae_tf import codec as codec_lib
from dcae_tf import config as config_lib
from dcae_tf import rans
from dcae_tf.codec import weights
from entropy_coders import (Coders, best_ms, latents_function, load_codec,
                            once_ms, run_case)
# pylint: enable=wrong-import-position

SHIPPED = os.path.join(ROOT, "saved_models")
HELD_OUT = os.path.join(ROOT, "data", "test", "*.png")
HIGH_RATE_SCALE = 6.0
PAPER_CHANNELS = (192, 320)  # z, y of the paper preset
PAPER_SIZE = (512, 768)  # the photograph size, height x width
SWEEP_LANES = (1, 4, 8, 16, 32, 64, 128)


def high_rate(latents, step, top_index):
  """Latents of a model at about HIGH_RATE_SCALE times the spread."""
  zs, ys, mus, idxs = latents
  shift = round(math.log(HIGH_RATE_SCALE) / step)
  ys = [mu + (y - mu) * HIGH_RATE_SCALE for y, mu in zip(ys, mus)]
  idxs = [tf.minimum(i + shift, float(top_index)) for i in idxs]
  return zs, ys, mus, idxs


def _row(label, r):
  return (f"{label:28.28s} {r['tfc_bytes']:7d} {r['our_bytes']:7d} "
          f"{r['our_bytes'] / r['tfc_bytes']:7.4f} {r['bpp']:6.3f} "
          f"{r['lanes']:5d} {r['tfc_enc']:7.1f} {r['our_enc']:7.1f} "
          f"{r['tfc_dec']:7.1f} {r['our_dec']:7.1f}")


HEADER = (f"{'case':28s} {'tfc B':>7s} {'ours B':>7s} {'ratio':>7s} "
          f"{'bpp':>6s} {'lanes':>5s} {'tfc enc':>7s} {'our enc':>7s} "
          f"{'tfc dec':>7s} {'our dec':>7s}   (ms)")
TIME_KEYS = ("tfc_enc", "our_enc", "tfc_dec", "our_dec")


def _total(label, rows):
  tot = {k: sum(r[k] for r in rows)
         for k in ("tfc_bytes", "our_bytes") + TIME_KEYS}
  tot["bpp"] = float("nan")
  tot["lanes"] = max(r["lanes"] for r in rows)
  return _row(label, tot)


def codec_ms(codec, image, repeats):
  """Warm milliseconds of the codec's whole compress and decompress."""
  image = tf.constant(image)
  data = codec.compress(image)
  return (best_ms(lambda: codec.compress(image), repeats),
          best_ms(lambda: codec.decompress(data), repeats))


def paper_latents(latents):
  """A paper-preset-sized case from the small model's latents: z coded as
  many times as the paper has z channels (192 / 64), each y slice tiled to
  the paper's slice width (64), so symbol counts and statistics match."""
  zs, ys, mus, idxs = latents
  zc, yc = PAPER_CHANNELS
  z_groups = zc // int(zs[0].shape[-1])
  per = yc // len(ys)

  def tile(t):
    reps = -(-per // int(t.shape[-1]))
    return tf.concat([t] * reps, axis=-1)[..., :per]

  return (zs * z_groups, [tile(y) for y in ys], [tile(m) for m in mus],
          [tile(i) for i in idxs])


def network_functions(codec):
  """The networks of the codec's compress and decompress without coding.

  Encode: g_a, h_a, h_s and the slice loop with rounding (what `compress`
  runs before its coder); decode: h_s, the slice loop fed the decoded
  slices, and g_s (what `decompress` runs around its decoder). Their time
  plus the coder's is the codec's, so the coder's share is measured without
  the paper preset's (random-weight, unrepresentative) symbols.
  """
  c = codec.config
  model = codec.model
  encode_latents = latents_function(codec)

  @tf.function(input_signature=[
      tf.TensorSpec([1, None, None, codec.config.z_channels],
                    tf.float32),
      [tf.TensorSpec([1, None, None, c.slice_channels], tf.float32)]
      * c.num_slices, tf.TensorSpec([2], tf.int32)])
  def decode(z_hat, y_hat, size):
    scales, means = model.hyper_synthesis(z_hat)
    y = model.slices.run(scales, means, lambda i, mu, scale: y_hat[i])
    return model.synthesis(y, size[0], size[1])

  return encode_latents, decode


class PaperNetworks:
  """A paper-preset model's networks at one image size, built and traced
  once for every model and lane count the benchmark codes (fresh weights:
  their time does not depend on them)."""

  def __init__(self, image):
    paper = codec_lib.DCAECodec(
        weights.new_model(config_lib.get_config("paper")), name="paper")
    self.encode, self.decode = network_functions(paper)
    self.image = tf.constant(image)
    zs, self.y_hat, _, _ = self.encode(self.image)
    self.z_hat = zs[0]
    self.size = tf.constant(image.shape[:2], tf.int32)


def paper_share(nets, lat, coders, repeats):
  """The coder's share of a paper-preset codec's time at `nets`' size.

  `lat` are the paper-sized latents that `coders` code; `nets` a
  `PaperNetworks`.
  """
  height, width = nets.image.shape[:2]
  r = run_case(coders, lat, int(height * width), repeats, time_ours=False)
  stream = coders.ours_encode(*lat)
  z_shape = tf.shape(lat[0][0])
  # Networks and coder timed in alternation, best of each, so that both see
  # the same load on a shared machine.
  timed = {"enc": (lambda: nets.encode(nets.image)),
           "dec": (lambda: nets.decode(nets.z_hat, nets.y_hat, nets.size)),
           "our_enc": (lambda: coders.ours_encode(*lat)),
           "our_dec": (lambda: coders.ours_decode(stream, z_shape, *lat[2:]))}
  best = {k: math.inf for k in timed}
  for _ in range(repeats):
    for k, fn in timed.items():
      best[k] = min(best[k], once_ms(fn))
  enc, dec = best["enc"], best["dec"]
  r.update(our_enc=best["our_enc"], our_dec=best["our_dec"])
  print(f"paper preset at {width}x{height} (load average "
        f"{os.getloadavg()[0]:.1f}): networks encode {enc:.0f} ms, decode "
        f"{dec:.0f} ms; our coder on the paper-sized latents encode "
        f"{r['our_enc']:.0f} ms ({r['our_enc'] / (enc + r['our_enc']):.1%} "
        f"of compress), decode {r['our_dec']:.0f} ms "
        f"({r['our_dec'] / (dec + r['our_dec']):.1%} of decompress); TFC's "
        f"coder {r['tfc_enc']:.0f} / {r['tfc_dec']:.0f} ms", flush=True)
  return r


def paper_image(paths, size=PAPER_SIZE):
  """The first held-out photograph that holds `size`, cropped to it."""
  h, w = size
  for path in paths:
    image = np.asarray(Image.open(path).convert("RGB"))
    for im in (image, image.transpose(1, 0, 2)):
      if im.shape[0] >= h and im.shape[1] >= w:
        return os.path.basename(path), im[:h, :w]
  return None, None


def _size(text):
  try:
    height, width = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected HEIGHTxWIDTH, got {text!r}") from None
  if height < 1 or width < 1:
    raise argparse.ArgumentTypeError(f"empty size {text!r}")
  return height, width


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", nargs="*", default=None)
  parser.add_argument("--images", default=HELD_OUT)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--sweep", action="store_true",
                      help="also code with each of SWEEP_LANES lanes")
  parser.add_argument("--paper", action="store_true",
                      help="also time a paper-preset-sized case")
  parser.add_argument("--paper_size", type=_size,
                      default="x".join(map(str, PAPER_SIZE)),
                      help="HEIGHTxWIDTH of the paper-preset case")
  parser.add_argument("--no_codec_timing", action="store_true",
                      help="skip timing the codec's whole compress and "
                      "decompress")
  args = parser.parse_args(argv)
  names = args.models or sorted(
      n for n in os.listdir(SHIPPED) if os.path.isdir(os.path.join(SHIPPED, n)))
  paths = sorted(glob.glob(args.images))
  if not paths:
    sys.exit(f"no images match {args.images}")
  print(f"TF {tf.__version__}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}, load average "
        f"{os.getloadavg()[0]:.1f}; lanes by rans.choose_lanes "
        f"(target steps {rans.TARGET_STEPS}, rate share "
        f"{rans.LANE_RATE_SHARE})")
  if args.paper:
    paper_name, paper_crop = paper_image(paths, args.paper_size)
    if paper_crop is None:
      sys.exit(f"no image in {args.images} holds {args.paper_size}")
    paper_nets = PaperNetworks(paper_crop)
  for name in names:
    codec = load_codec(os.path.join(SHIPPED, name))
    latents = latents_function(codec)
    c = codec.config
    step = (math.log(c.scale_max) - math.log(c.scale_min)) / (
        c.scale_levels - 1)
    cases, net = [], []
    for path in paths:
      image = np.asarray(Image.open(path).convert("RGB"))
      cases.append((os.path.basename(path), image.shape[0] * image.shape[1],
                    latents(tf.constant(image))))
      if not args.no_codec_timing and len(net) == len(cases) - 1:
        try:
          net.append(codec_ms(codec, image, args.repeats))
        except Exception as e:  # pylint: disable=broad-except
          print(f"codec timing skipped: {type(e).__name__}: "
                f"{str(e).strip().splitlines()[-1]}")
    if len(net) != len(cases):
      net = []
    if net:
      print(f"\n{name}: the codec's whole compress / decompress (TFC coder "
            "inside), ms: " + ", ".join(
                f"{n} {e:.0f} / {d:.0f}" for (n, _, _), (e, d) in
                zip(cases, net)))
    if args.paper:
      paper_lat = paper_latents(latents(tf.constant(paper_crop)))
    for lanes in (None,) + (SWEEP_LANES if args.sweep else ()):
      coders = Coders(codec, c.num_slices, lanes=lanes)
      print(f"\n{name}, lanes " + ("by policy" if lanes is None
                                    else str(lanes)))
      print(HEADER)
      for label, scale in (("", None), ("high-rate ", HIGH_RATE_SCALE)):
        rows = []
        for image_name, pixels, lat in cases:
          if scale:
            lat = high_rate(lat, step, c.scale_levels - 1)
          rows.append(run_case(coders, lat, pixels, args.repeats))
          print(_row(label + image_name, rows[-1]), flush=True)
        print(_total(f"{label}total", rows))
        if net and not scale:
          enc = sum(e for e, _ in net)
          dec = sum(d for _, d in net)
          ours = {k: sum(r[k] for r in rows) for k in TIME_KEYS}
          print(f"  coding / codec time: ours encode {ours['our_enc'] / enc:.1%}"
                f" decode {ours['our_dec'] / dec:.1%}; TFC encode "
                f"{ours['tfc_enc'] / enc:.1%} decode {ours['tfc_dec'] / dec:.1%}")
      if args.paper:
        paper = Coders(codec, c.num_slices, lanes=lanes,
                       z_groups=len(paper_lat[0]))
        print(_row(f"paper-sized {paper_name}",
                   paper_share(paper_nets, paper_lat, paper, args.repeats)))


if __name__ == "__main__":
  main()
