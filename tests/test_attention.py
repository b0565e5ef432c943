"""Swin blocks computed a band of rows / a chunk of windows at a time (at
inference, to bound memory) equal the whole-map computation bit for bit
wherever the CPU's matrix product gives each row the same bits whatever the
number of rows; elsewhere to float32 rounding."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from dcae_tf.layers import mlp
from dcae_tf.layers import swin
from dcae_tf.layers import tiling
from dcae_tf.model import DCAE

DIM, HEAD_DIM, WINDOW = 48, 8, 8
PIXELS = WINDOW * WINDOW
HEADS = DIM // HEAD_DIM
# Logit bytes of one window; budgets below are multiples of it.
WINDOW_BYTES = HEADS * PIXELS * PIXELS * 4


CPU_INFO = "/proc/cpuinfo"


@functools.lru_cache(maxsize=None)
def tiling_is_bit_exact_here():
  """Whether this CPU's kernels give tiled products the whole map's bits.

  Tiling splits a feature map's products into products over fewer rows and
  windows. On the AVX-512 EPYC it was written on, every band and chunk gave
  the whole map's bits. On a 2-core Zen 3 EPYC (AVX2 and FMA, no AVX-512;
  TF 2.14.1, 2026-12-01) they differ in the last bits (a 32-row matrix
  product differs from the same rows of a 64-row one by up to 3e-6; tiled
  window attention by up to 1e-7 absolute), so there the tests hold them to
  float32 rounding. The codec does not depend on it: encoder and decoder
  tile the same way, and their agreement is tested on every machine
  (tests/test_codec.py).
  """
  try:
    with open(CPU_INFO, encoding="utf-8") as f:
      return any(line.startswith("flags") and "avx512f" in line.split()
                 for line in f)
  except OSError:
    return False


def assert_tiled_equals_whole(tiled, whole):
  if tiling_is_bit_exact_here():
    np.testing.assert_array_equal(tiled, whole)
  else:
    np.testing.assert_allclose(tiled, whole, rtol=1e-5,
                               atol=1e-6 * np.abs(whole).max())


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("chunk_windows", [1, 4, 7, 15, 1000])
def test_chunked_attention_is_bit_identical(shifted, chunk_windows):
  # 2 images of 5 x 7 windows. Bands hold whole window rows: 1 and 4 give
  # one row per band split into chunks of 1, and of 4 (two chunks, the last
  # one padded); 7 one row in one chunk; 15 two rows (the last band padded
  # by a row); 1000 the whole image.
  layer = swin.WindowAttention(DIM, HEAD_DIM, WINDOW, shifted,
                                    chunk_bytes=chunk_windows * WINDOW_BYTES)
  x = tf.random.stateless_normal((2, 5 * WINDOW, 7 * WINDOW, DIM), (1, 2))
  whole = layer(x, training=True)
  chunked = layer(x)
  graph = tf.function(layer, input_signature=[
      tf.TensorSpec((None, None, None, DIM))])(x)
  assert_tiled_equals_whole(chunked.numpy(), whole.numpy())
  assert_tiled_equals_whole(graph.numpy(), whole.numpy())


@pytest.mark.parametrize("with_norm", [False, True])
@pytest.mark.parametrize("band_rows", [1, 3, 4, 100])
def test_banded_conv_glu_is_bit_identical(with_norm, band_rows):
  # 2 images of 10 rows: bands of 1 row, of 3 and of 4 (both padded by 2
  # rows at the bottom) and a single band; the depthwise conv needs the
  # neighbouring bands' rows, and zeros beyond the image.
  hidden, width = 24, 9
  row_bytes = width * hidden * 4
  layer = mlp.ConvGLU(DIM, hidden, chunk_bytes=band_rows * row_bytes)
  norm = None
  if with_norm:
    norm = tf.keras.layers.LayerNormalization(epsilon=1e-5)
    norm.build((None, DIM))
    norm.gamma.assign(tf.random.stateless_normal((DIM,), (5, 6)))
    norm.beta.assign(tf.random.stateless_normal((DIM,), (7, 8)))
  x = tf.random.stateless_normal((2, 10, width, DIM), (3, 4))
  layer(x, norm=norm)
  for v in layer.weights:  # non-zero biases, so padding mistakes show
    v.assign(tf.random.stateless_normal(v.shape, (9, v.shape.rank)))
  assert_tiled_equals_whole(layer(x, norm=norm).numpy(),
                            layer(x, norm=norm, training=True).numpy())
  # In a graph, Grappler and oneDNN fuse ops, differently around the
  # band loop's masking: equal to float32 rounding.
  spec = tf.TensorSpec((None, None, None, DIM))
  whole, banded = (
      tf.function(lambda t, training=training: layer(
          t, norm=norm, training=training), input_signature=[spec])(x).numpy()
      for training in (True, False))
  np.testing.assert_allclose(banded, whole, rtol=1e-5,
                             atol=1e-6 * np.abs(whole).max())


def test_row_bands_see_their_halo_and_row_indices():
  # Each output row must come from the band that owns it, which saw its
  # neighbours (a vertical [1, 1, 1] filter, zero rows beyond the image)
  # and the image row index of every row.
  x = tf.reshape(tf.range(2 * 7 * 2, dtype=tf.float32), (2, 7, 2, 1)) ** 2
  box = tf.ones((3, 1, 1, 1))
  seen = []

  def fn(band, rows):
    seen.append(rows.numpy().tolist())
    assert band.shape[1] == 5  # 3 rows + 2 halo rows, every band
    return tf.nn.conv2d(band, box, 1, "SAME") + 1000. * tf.cast(
        rows[1], tf.float32)

  out = tiling.map_row_bands(fn, x, 3, halo=1)
  firsts = np.array([0, 0, 0, 3, 3, 3, 6], np.float32)[None, :, None, None]
  expected = tf.nn.conv2d(x, box, 1, "SAME") + 1000. * firsts
  np.testing.assert_array_equal(out.numpy(), expected.numpy())
  assert seen == [[-1, 0, 1, 2, 3], [2, 3, 4, 5, 6], [5, 6, 7, 8, 9]] * 2


def test_bands_compile_with_xla():
  # Every band has the same shape, so the loops compile with XLA.
  layer = mlp.ConvGLU(DIM, 24, chunk_bytes=3 * 9 * 24 * 4)
  x = tf.random.stateless_normal((1, 10, 9, DIM), (3, 4))
  eager = layer(x)
  xla = tf.function(layer, jit_compile=True)(x)
  np.testing.assert_allclose(xla.numpy(), eager.numpy(), rtol=1e-4,
                             atol=1e-4)
  attn = swin.WindowAttention(DIM, HEAD_DIM, WINDOW, True,
                                   chunk_bytes=4 * WINDOW_BYTES)
  x = tf.random.stateless_normal((1, 3 * WINDOW, 5 * WINDOW, DIM), (1, 2))
  np.testing.assert_allclose(
      tf.function(attn, jit_compile=True)(x).numpy(), attn(x).numpy(),
      rtol=1e-4, atol=1e-4)


def test_shift_mask_is_applied_per_chunk():
  # Without the mask the shifted result must differ: guards the per-chunk
  # window numbering (a wrong `first` would mask the wrong windows).
  layer = swin.WindowAttention(DIM, HEAD_DIM, WINDOW, True,
                                    chunk_bytes=3 * WINDOW_BYTES)
  x = tf.random.stateless_normal((1, 4 * WINDOW, 3 * WINDOW, DIM), (3, 4))
  unshifted = swin.WindowAttention(DIM, HEAD_DIM, WINDOW, False)
  layer(x)
  unshifted(x)
  for a, b in zip(unshifted.weights, layer.weights):
    a.assign(b)
  rolled = tf.roll(x, (-WINDOW // 2, -WINDOW // 2), (1, 2))
  no_mask = tf.roll(unshifted(rolled), (WINDOW // 2, WINDOW // 2), (1, 2))
  out = layer(x)
  differs = np.abs(out.numpy() - no_mask.numpy()).max(axis=(0, 3)) > 0
  # Exactly the pixels of the last window row / column see the mask.
  expected = np.zeros(differs.shape, bool)
  expected[-WINDOW:, :] = expected[:, -WINDOW:] = True
  expected = np.roll(expected, (WINDOW // 2, WINDOW // 2), (0, 1))
  np.testing.assert_array_equal(differs, expected)


def test_chunk_size_follows_the_budget():
  assert tiling.chunk_windows(HEADS, PIXELS, "float32",
                                  10 * WINDOW_BYTES + 1) == 10
  assert tiling.chunk_windows(HEADS, PIXELS, "float32", 1) == 1


def test_inference_loops_over_chunks_and_training_does_not():
  # The model's `training` flag reaches the attention layers through the
  # Keras call context: training runs one product (what XLA and backprop
  # want), inference the bounded-memory loop.
  model = DCAE("tiny").build_weights()
  spec = tf.TensorSpec((1, 64, 64, 3))

  def loops(training):
    graph = tf.function(lambda x: model(x, training=training)[
        "x_hat"]).get_concrete_function(spec).graph
    return sum(op.type in ("While", "StatelessWhile")
               for op in graph.get_operations())

  assert loops(False) > 0
  assert loops(True) == 0

  # The slice loop is not a Keras call: it takes the flag itself (the
  # bench counts FLOPs on its loop-free training graph).
  c = model.config
  latent = tf.TensorSpec((1, 4, 4, c.latent_channels))

  def slice_loops(training):
    graph = tf.function(lambda s, m: model.slices.run(
        s, m, lambda i, mu, scale: mu, training=training)
                        ).get_concrete_function(latent, latent).graph
    return sum(op.type in ("While", "StatelessWhile")
               for op in graph.get_operations())

  assert slice_loops(None) > 0
  assert slice_loops(True) == 0


def test_tiling_is_its_own_option():
  # `tiled` decides regardless of `training`: whole-map inference graphs
  # (what the latency bench counts) and tiled training graphs.
  model = DCAE("tiny").build_weights()
  spec = tf.TensorSpec((1, 64, 64, 3))

  def loops(training):
    graph = tf.function(lambda x: model.g_a(x, training=training)
                        ).get_concrete_function(spec).graph
    return sum(op.type in ("While", "StatelessWhile")
               for op in graph.get_operations())

  assert loops(False) > 0 and loops(True) == 0
  tiling.set_tiled(model, False)
  assert loops(False) == 0
  tiling.set_tiled(model, True)
  assert loops(True) > 0
  x = tf.random.uniform((1, 64, 64, 3), seed=0)
  tiled = model.g_a(x, training=False).numpy()
  tiling.set_tiled(model, False)
  assert_tiled_equals_whole(tiled, model.g_a(x, training=False).numpy())
  tiling.set_tiled(model, None)
  assert loops(False) > 0 and loops(True) == 0


def test_weights_are_read_when_their_layer_runs():
  # Every weight read (and float16 -> float32 cast) in g_a's graph waits for
  # its layer's input; without that the executor reads them all at the
  # graph's start and holds every float32 copy at once (300 MB for the
  # paper preset).
  # pylint: disable=import-outside-toplevel
  from dcae_tf.codec import metadata as metadata_lib
  from dcae_tf.codec import weights
  model = weights.new_model(DCAE("tiny").config, metadata_lib.FLOAT16)
  graph = tf.function(model.g_a).get_concrete_function(
      tf.TensorSpec((1, 64, 64, 3))).graph
  reads = [op for op in graph.get_operations()
           if op.type == "ReadVariableOp"]
  assert reads
  assert all(op.control_inputs for op in reads), [
      op.name for op in reads if not op.control_inputs][:5]
