"""The measuring side of bench/latency.py: what runs in its worker processes.

Each worker is a fresh process (`latency.py --worker parts|codec|export`)
that imports TensorFlow, builds a seeded model or codec, times it and
prints one JSON line for the driver. Importing this module does not import
TensorFlow (the driver imports it for its names and constants).
"""
import contextlib
import json
import time

# The network parts of each direction, in the order the codec runs them.
PARTS = {"encode": ("g_a", "hyperprior_enc", "slices"),
         "decode": ("hyperprior_dec", "slices", "g_s")}
# Roofline: square float32 matmul of this size, best of this many runs.
ROOFLINE_SIZE = 2048
ROOFLINE_REPEATS = 10
SEED = 2025
KIB_PER_MIB = 1024
CLEAR_REFS_RESET_PEAK = "5"  # Linux >= 4.0: reset VmHWM to the current RSS.


# --- memory -----------------------------------------------------------------

def peak_rss_mib():
  """Peak resident set size of this process (VmHWM), in MiB."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / KIB_PER_MIB
  except OSError:
    pass
  import resource  # pylint: disable=import-outside-toplevel
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def reset_peak_rss():
  """Resets VmHWM to the current RSS; False if the kernel does not allow it."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write(CLEAR_REFS_RESET_PEAK)
    return True
  except OSError:
    return False


# --- FLOPs and roofline -------------------------------------------------------

def einsum_flops(op):
  """2 * product of index sizes of a static-shape Einsum (a MAC per term)."""
  equation = op.get_attr("equation").decode()
  inputs, _ = equation.split("->")
  sizes = {}
  for spec, tensor in zip(inputs.split(","), op.inputs):
    shape = tensor.shape.as_list()
    if "." in spec or None in shape or len(shape) != len(spec):
      return 0
    sizes.update(zip(spec, shape))
  flops = 2
  for size in sizes.values():
    flops *= size
  return flops


def graph_flops(concrete_function):
  """Float operations of one run of a concrete function's graph."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  graph = concrete_function.graph
  loops = [op.name for op in graph.get_operations()
           if op.type in ("While", "StatelessWhile")]
  if loops:
    # The profiler does not count ops inside loop bodies.
    raise ValueError(f"cannot count the FLOPs of a graph with loops: "
                     f"{loops[:3]}")
  builder = tf.compat.v1.profiler.ProfileOptionBuilder
  options = builder(builder.float_operation()).with_empty_output().build()
  profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
  total = profile.total_float_ops
  for op in graph.get_operations():
    if op.type == "Einsum":
      total += einsum_flops(op)
  return total


def matmul_roofline(size=ROOFLINE_SIZE, repeats=ROOFLINE_REPEATS):
  """Best achieved float32 GFLOP/s of a large matrix multiply."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = tf.random.normal((size, size))
  b = tf.random.normal((size, size))
  matmul = tf.function(tf.linalg.matmul)
  matmul(a, b).numpy()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).numpy()
    best = min(best, time.perf_counter() - start)
  return 2 * size ** 3 / best / 1e9


# --- the worker: one (mode, direction) in its own process --------------------

def _timed(fn, args, repeats):
  """Best wall time of fn(*args) over `repeats` runs (results materialised)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  best, out = float("inf"), None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn(*args)
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                          out)
    best = min(best, time.perf_counter() - start)
  return best, out


def _parts(model, mode, height, width):
  """The network parts of encode and decode as callables in `mode`, at
  inference."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  c = model.config
  s = c.latent_stride
  y_shape = (1, height // s, width // s, c.latent_channels)
  z_shape = (1, height // c.hyper_stride, width // c.hyper_stride,
             c.z_channels)
  spec = lambda shape: tf.TensorSpec(shape, tf.float32)  # pylint: disable=unnecessary-lambda-assignment

  def analysis(x):
    return model.g_a(x, training=False)

  def hyper_decode(z_hat):
    return (model.h_s_scales(z_hat, training=False),
            model.h_s_means(z_hat, training=False))

  def hyper_encode(y):
    z_hat = model.hyperprior.quantize(model.h_a(y, training=False))
    return (z_hat,) + hyper_decode(z_hat)

  def slices(y, scales, means):
    y_slices = tf.split(y, c.num_slices, axis=-1)
    return model.slices.run(
        scales, means, lambda i, mu, scale: tf.round(y_slices[i] - mu) + mu,
        training=False)

  def synthesis(y_hat):
    return model.g_s(y_hat, training=False)

  signatures = {
      "g_a": (analysis, [spec((1, height, width, 3))]),
      "hyperprior_enc": (hyper_encode, [spec(y_shape)]),
      "hyperprior_dec": (hyper_decode, [spec(z_shape)]),
      "slices": (slices, [spec(y_shape)] * 3),
      "g_s": (synthesis, [spec(y_shape)]),
  }
  out = {}
  for name, (fn, sig) in signatures.items():
    if mode == "eager":
      out[name] = (fn, None)
    else:
      out[name] = (tf.function(fn, input_signature=sig,
                               jit_compile=(mode == "xla")), sig)
  return out


# The transform whose steps are timed one by one, per direction.
TRANSFORM = {"encode": "g_a", "decode": "g_s"}


@contextlib.contextmanager
def _whole_map(layer):
  """Traces inside see `layer` compute whole-map products instead of loops
  over bands of rows (the same arithmetic, `tiling.set_tiled`): graphs
  whose FLOPs the profiler can count, as it does not look into loop
  bodies."""
  from dcae_tf.layers import tiling  # pylint: disable=import-outside-toplevel
  tiling.set_tiled(layer, False)
  try:
    yield
  finally:
    tiling.set_tiled(layer, None)


def _time_and_count(fn, layer, x, repeats):
  """(best seconds, output, FLOPs) of fn(x), which runs `layer`, as a
  tf.function: timed as it runs (tiled), counted on whole-map products."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  spec = tf.TensorSpec(x.shape, x.dtype)
  run = tf.function(fn, input_signature=[spec])
  counted = tf.function(fn, input_signature=[spec])
  run(x)  # tracing and graph optimisation
  seconds, y = _timed(run, (x,), repeats)
  with _whole_map(layer):
    flops = graph_flops(counted.get_concrete_function())
  return seconds, y, flops


def _block_parts(block):
  """The two halves of a Swin block: its attention (with its layer norm)
  and its convolutional GLU (with its own, folded into fc1)."""
  return {
      "attention": lambda t: block.msa(block.ln1(t), training=False),
      "conv_glu": lambda t: block.mlp(t, norm=block.ln2, training=False),
  }


def time_transform_steps(transform, x, repeats):
  """Each step of a `Sequential` transform as its own tf.function.

  Returns a list of {"name", "input_shape", "seconds", "flops"}; a step's
  input is the previous step's output. A Swin stage's entry also has
  "blocks": its depth and the attention and conv GLU halves of its first
  block, timed and counted alone on the stage's input (the stage's other
  blocks have the same shapes).
  """
  steps = []
  for step in transform.steps:
    seconds, y, flops = _time_and_count(
        lambda t, step=step: step(t, training=False), step, x, repeats)
    entry = {"name": step.name, "input_shape": x.shape.as_list()[1:],
             "seconds": seconds, "flops": flops}
    if getattr(step, "blocks", None):
      entry["blocks"] = {"depth": len(step.blocks)}
      for half, fn in _block_parts(step.blocks[0]).items():
        half_seconds, _, half_flops = _time_and_count(
            fn, step.blocks[0], x, repeats)
        entry["blocks"][half] = {"seconds": half_seconds, "flops": half_flops}
    steps.append(entry)
    x = y
  return steps


def parts_worker(args):
  """Times the parts of one (mode, direction); prints one JSON line."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dcae_tf.config import get_config  # pylint: disable=import-outside-toplevel
  from dcae_tf.model import DCAE  # pylint: disable=import-outside-toplevel

  tf.keras.utils.set_random_seed(SEED)  # Python, NumPy and TF seeds
  height, width = args.height, args.width
  config = get_config(args.preset)
  if height % config.pad_multiple or width % config.pad_multiple:
    raise SystemExit(f"error: height and width must be multiples of "
                     f"{config.pad_multiple} for the split timing")
  model = DCAE(config)
  model.build_weights()
  rng = np.random.default_rng(SEED)
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  x = tf.constant(image[None].astype(np.float32) / 255.)
  parts = _parts(model, args.mode, height, width)
  result = {"kind": "parts", "mode": args.mode,
            "direction": args.direction,
            "preset": args.preset, "height": height, "width": width,
            "repeats": args.repeats, "parts": {}}

  first_call = {}

  def call(name, *inputs):
    """Runs a part; its first call (tracing / XLA compilation) is timed."""
    begin = time.perf_counter()
    out = parts[name][0](*inputs)
    first_call.setdefault(name, time.perf_counter() - begin)
    return out

  # Inputs of every part from one run of the networks (also the warm-up).
  y = call("g_a", x)
  z_hat, scales, means = call("hyperprior_enc", y)
  y_hat = call("slices", y, scales, means)
  inputs_of = {"g_a": (x,), "hyperprior_enc": (y,),
               "slices": (y, scales, means), "hyperprior_dec": (z_hat,),
               "g_s": (y_hat,)}
  order = [(name, inputs_of[name]) for name in PARTS[args.direction]]
  for name, inputs in order:
    if name not in first_call:
      call(name, *inputs)
    result["parts"][name] = {"first_call_seconds": first_call[name]}

  codec = None
  if args.mode == "function":
    try:
      from dcae_tf.codec import DCAECodec  # pylint: disable=import-outside-toplevel
      codec = DCAECodec(model, name="latency", max_pixels=height * width)
    except ImportError as e:
      result["codec_error"] = f"dcae_tf.codec unavailable: {e}"
  if codec is not None:
    image_t = tf.constant(image)
    bitstream = codec.compress(image_t)  # also the warm-up of compress
    result["bitstream_bytes"] = len(bitstream.numpy())
    if args.direction == "decode":
      codec.decompress(bitstream).numpy()

  # The roofline in the same process and conditions as the timings, before
  # and after them (best of both: the machine may be shared).
  roofline = matmul_roofline()
  result["peak_reset"] = reset_peak_rss()
  for name, inputs in order:
    seconds, _ = _timed(parts[name][0], inputs, args.repeats)
    result["parts"][name]["seconds"] = seconds
  if codec is not None:
    if args.direction == "encode":
      seconds, _ = _timed(codec.compress, (image_t,), args.repeats)
    else:
      seconds, _ = _timed(codec.decompress, (bitstream,), args.repeats)
    networks = sum(result["parts"][n]["seconds"] for n, _ in order)
    result["codec_seconds"] = seconds
    result["parts"]["range_coding"] = {"seconds": max(seconds - networks, 0.)}
  result["timed_peak_rss_mib"] = peak_rss_mib()
  result["roofline_gflops_per_s"] = max(roofline, matmul_roofline())

  if args.mode == "function":
    counted = _parts(model, args.mode, height, width)
    with _whole_map(model):
      for name, _ in order:
        fn, sig = counted[name]
        result["parts"][name]["flops"] = graph_flops(
            fn.get_concrete_function(*sig))
  result["process_peak_rss_mib"] = peak_rss_mib()
  if args.mode == "function":
    name = TRANSFORM[args.direction]
    result["steps"] = time_transform_steps(
        getattr(model, name), inputs_of[name][0], args.repeats)
  print(json.dumps(result))


def _seeded_codec(args):
  """The DCAECodec with the bench's random weights (same in every process:
  the bitstream's fingerprint check would refuse anything else)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from dcae_tf.codec import weights  # pylint: disable=import-outside-toplevel
  from dcae_tf.codec import DCAECodec  # pylint: disable=import-outside-toplevel
  from dcae_tf.config import get_config  # pylint: disable=import-outside-toplevel
  tf.keras.utils.set_random_seed(SEED)  # Python, NumPy and TF seeds
  model = weights.new_model(get_config(args.preset), args.weight_dtype)
  return DCAECodec(model, name="latency",
                   max_pixels=args.height * args.width,
                   transform_dtype=args.transform_dtype,
                   numerics=args.entropy_numerics)


def export_worker(args):
  """Exports the bench's model to `args.export` (a model base path)."""
  from dcae_tf import export  # pylint: disable=import-outside-toplevel
  begin = time.perf_counter()
  version_dir = export.save_versioned(_seeded_codec(args), args.export)
  print(json.dumps({"kind": "export", "weight_dtype": args.weight_dtype,
                    "transform_dtype": args.transform_dtype,
                    "numerics": args.entropy_numerics,
                    "version_dir": version_dir,
                    "seconds": time.perf_counter() - begin}))


def codec_worker(args):
  """Runs only the codec, as a compress / decompress command would.

  Prints one JSON line: best seconds of `args.repeats` runs after the
  first, the first call's seconds, the process's peak RSS and a matmul
  roofline measured afterwards.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  result = {"kind": "codec", "source": "export" if args.export else "model",
            "direction": args.direction, "weight_dtype": args.weight_dtype,
            "transform_dtype": args.transform_dtype,
            "numerics": args.entropy_numerics,
            "preset": args.preset, "height": args.height, "width": args.width,
            "repeats": args.repeats}
  if args.export:
    from dcae_tf import export  # pylint: disable=import-outside-toplevel
    begin = time.perf_counter()
    codec = export.load_exported(args.export)
    result["load_seconds"] = time.perf_counter() - begin
    compress, decompress = codec.compress, codec.decompress  # numpy, bytes
  else:
    codec = _seeded_codec(args)
    compress = lambda image: codec.compress(tf.constant(image)).numpy()  # pylint: disable=unnecessary-lambda-assignment
    decompress = lambda data: codec.decompress(tf.constant(data)).numpy()  # pylint: disable=unnecessary-lambda-assignment
  if args.direction == "encode":
    rng = np.random.default_rng(SEED)
    arg = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    fn = compress
  else:
    with open(args.bitstream, "rb") as f:
      arg = f.read()
    fn = decompress
  begin = time.perf_counter()
  if not args.export:
    # What an export does by itself on its first call (and a Python program
    # using the library should do, see the README's Python API).
    codec.warm_up(["compress" if args.direction == "encode"
                   else "decompress"])
  out = fn(arg)
  result["first_call_seconds"] = time.perf_counter() - begin
  if args.direction == "encode":
    with open(args.bitstream, "wb") as f:
      f.write(out)
  result["seconds"], _ = _timed(fn, (arg,), args.repeats)
  result["peak_rss_mib"] = peak_rss_mib()
  result["roofline_gflops_per_s"] = matmul_roofline()
  print(json.dumps(result))
