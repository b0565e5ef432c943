"""Where the exact entropy parameters' time goes, piece by piece.

  python bench/exact_pieces.py [--preset paper] [--height 512]
      [--width 768] [--repeats 5] [--output pieces.json]

The entropy-parameter path of a codec (h_s, then per slice the dictionary
cross-attention, the mean and scale networks and LRP) computed as the codec
computes it, exactly (`layers.exact`, float64 integer sums) and in float32
(the arithmetic of training, `DCAECodec(numerics="float")`), on the latent
shapes of a `--height` x `--width` image. Each piece is one `tf.function`
per numerics, traced and called once before timing; the two are called
alternately in this process, best of `--repeats`. Weights are the preset's
random initialisation: the time depends on shapes, not values. Prints each
piece's seconds and the exact/float ratio, and the path's totals.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (os.path.dirname(BENCH), BENCH)
                if p not in sys.path]

# pylint: disable=wrong-import-position
import machine  # noqa: E402
from dcae_tf import config as config_lib  # noqa: E402
# pylint: enable=wrong-import-position
# TensorFlow is imported where it is used, once the arguments are checked:
# a bad flag is refused in one line, before TensorFlow logs anything.
# pylint: disable=import-outside-toplevel

SEED = 0


def _pieces(model):
  """[(name, fn)] of the path, in the decoder's order; each fn takes and
  returns tensors only."""
  slices = model.slices
  out = [("h_s", lambda z: (model.h_s_scales(z), model.h_s_means(z)))]
  for i in range(model.config.num_slices):
    out += [
        (f"slice {i} cross-attention",
         lambda s, m, *prev, i=i: slices.context(i, s, m, prev)),
        (f"slice {i} mean + scale",
         lambda support, i=i: slices.gaussian_params(i, support)),
        (f"slice {i} LRP",
         lambda support, y, i=i: slices.lrp(i, support, y)),
    ]
  return out


def _inputs(model, height, width):
  """Random inputs of each piece, float32, in `_pieces`' order."""
  import numpy as np
  import tensorflow as tf
  c = model.config
  rng = np.random.default_rng(SEED)
  (yh, yw), (zh, zw) = c.latent_shapes(height, width)

  def normal(*shape):
    return tf.constant(rng.normal(size=(1,) + shape), tf.float32)

  z = tf.round(normal(zh, zw, c.z_channels) * 4.)
  scales, means = model.h_s_scales(z), model.h_s_means(z)
  out = [(z,)]
  previous = []
  for i in range(c.num_slices):
    # `context` reads at most max_support_slices of them.
    support, _ = model.slices.context(i, scales, means, previous)
    y = tf.round(normal(yh, yw, c.slice_channels) * 4.)
    out += [(scales, means, *previous), (support,), (support, y)]
    previous.append(y)
  return out


def _functions(fn, numerics):
  import tensorflow as tf
  from dcae_tf.layers import exact
  if numerics == "exact":
    return (tf.function(exact.traced_exactly(fn), autograph=False),
            exact.to_exact)
  return tf.function(fn, autograph=False), lambda t: t


def _seconds(fn, args):
  import tensorflow as tf
  begin = time.perf_counter()
  tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
  return time.perf_counter() - begin


def _print_row(name, seconds):
  print(f"{name:28s} exact {seconds['exact']:8.4f} s  float "
        f"{seconds['float']:8.4f} s  "
        f"{seconds['exact'] / seconds['float']:5.2f}x", flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="paper")
  parser.add_argument("--height", type=int, default=512)
  parser.add_argument("--width", type=int, default=768)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--output")
  args = parser.parse_args(argv)
  try:
    config_lib.get_config(args.preset)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  if args.height < 1 or args.width < 1 or args.repeats < 1:
    print("error: --height, --width and --repeats must be at least 1",
          file=sys.stderr)
    return 1
  _measure(args)
  return 0


def _measure(args):
  """Times every piece both ways; prints the rows, writes the report."""
  import tensorflow as tf
  from dcae_tf import model as model_lib
  # One tf.function per piece and numerics is the point, not a retrace.
  tf.get_logger().setLevel("ERROR")
  model = model_lib.DCAE(args.preset).build_weights()
  rows = []
  for (name, fn), inputs in zip(_pieces(model),
                                _inputs(model, args.height, args.width)):
    timed = {}
    for numerics in ("exact", "float"):
      function, convert = _functions(fn, numerics)
      call_args = [convert(t) for t in inputs]
      function(*call_args)  # traced and optimised once, not timed
      timed[numerics] = (function, call_args)
    seconds = {"exact": float("inf"), "float": float("inf")}
    for _ in range(args.repeats):  # alternated
      for numerics, (function, call_args) in timed.items():
        seconds[numerics] = min(seconds[numerics],
                                _seconds(function, call_args))
    rows.append(dict(piece=name, **seconds))
    _print_row(name, seconds)
  total = {n: sum(r[n] for r in rows) for n in ("exact", "float")}
  _print_row("entropy parameters", total)
  report = {"preset": args.preset, "height": args.height,
            "width": args.width, "repeats": args.repeats,
            "machine": machine.machine_info(), "pieces": rows, "total": total}
  if args.output:
    with open(args.output, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  sys.exit(main())
