"""Window attention computed over chunks of windows equals the single product."""
import numpy as np
import pytest
import tensorflow as tf

from dcae_tf.layers import attention
from dcae_tf.model import DCAE

DIM, HEAD_DIM, WINDOW = 48, 8, 8
PIXELS = WINDOW * WINDOW
HEADS = DIM // HEAD_DIM
# Logit bytes of one window; budgets below are multiples of it.
WINDOW_BYTES = HEADS * PIXELS * PIXELS * 4


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("chunk_windows", [1, 4, 7, 1000])
def test_chunked_attention_is_bit_identical(shifted, chunk_windows):
  # 2 images of 5 x 6 windows: 60 windows, so 4 and 7 leave a partial last
  # chunk (padding) and 1000 is a single chunk.
  layer = attention.WindowAttention(DIM, HEAD_DIM, WINDOW, shifted,
                                    chunk_bytes=chunk_windows * WINDOW_BYTES)
  x = tf.random.stateless_normal((2, 5 * WINDOW, 6 * WINDOW, DIM), (1, 2))
  whole = layer(x, training=True)
  chunked = layer(x)
  graph = tf.function(layer, input_signature=[
      tf.TensorSpec((None, None, None, DIM))])(x)
  np.testing.assert_array_equal(chunked.numpy(), whole.numpy())
  np.testing.assert_array_equal(graph.numpy(), whole.numpy())


def test_shift_mask_is_applied_per_chunk():
  # Without the mask the shifted result must differ: guards the per-chunk
  # window numbering (a wrong `first` would mask the wrong windows).
  layer = attention.WindowAttention(DIM, HEAD_DIM, WINDOW, True,
                                    chunk_bytes=3 * WINDOW_BYTES)
  x = tf.random.stateless_normal((1, 4 * WINDOW, 3 * WINDOW, DIM), (3, 4))
  unshifted = attention.WindowAttention(DIM, HEAD_DIM, WINDOW, False)
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
  assert attention._chunk_windows(HEADS, PIXELS, "float32",  # pylint: disable=protected-access
                                  10 * WINDOW_BYTES + 1) == 10
  assert attention._chunk_windows(HEADS, PIXELS, "float32", 1) == 1  # pylint: disable=protected-access


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


def test_weights_are_read_when_their_layer_runs():
  # Every weight read (and float16 -> float32 cast) in g_a's graph waits for
  # its layer's input; without that the executor reads them all at the
  # graph's start and holds every float32 copy at once (300 MB for the
  # paper preset).
  from dcae_tf import weights  # pylint: disable=import-outside-toplevel
  model = weights.new_model(DCAE("tiny").config, weights.FLOAT16)
  graph = tf.function(model.g_a).get_concrete_function(
      tf.TensorSpec((1, 64, 64, 3))).graph
  reads = [op for op in graph.get_operations()
           if op.type == "ReadVariableOp"]
  assert reads
  assert all(op.control_inputs for op in reads), [
      op.name for op in reads if not op.control_inputs][:5]
