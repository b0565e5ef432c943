"""Tiling helpers: a computation over bands of rows or chunks, one at a time.

At inference the Swin stages' widest tensors (attention logits, the
convolutional GLU's hidden layer) are computed a band of rows (or a chunk
of windows) at a time, so their memory is bounded for any image size;
results are bit-identical to the whole-map products. Training keeps the
whole-map products (backprop keeps every band's activations anyway, and a
single product is what XLA and GPUs want).

A layer that tiles has a `tiled` attribute: None (the default) tiles at
inference and not in training; True or False decides regardless of
`training` (e.g. whole-map graphs at inference, whose operations a
benchmark can count). `set_tiled(layer, value)` sets it on a layer and
every layer inside it.
"""
import tensorflow as tf

from dcae_tf.layers import exact


def resolve_tiled(tiled, training):
  """Whether to tile: `tiled` if set, else at inference only; never in the
  exact scope (`exact`: its small maps are computed whole)."""
  if exact.active():
    return False
  return (not training) if tiled is None else bool(tiled)


def set_tiled(layer, tiled):
  """Sets `tiled` (None, True or False) on every tiling layer in `layer`."""
  for module in [layer, *layer.submodules]:
    if hasattr(module, "tiled"):
      module.tiled = tiled
  return layer


# Largest attention logits of one chunk of windows at inference, in bytes.
# The P x P logits of all windows of a block are the largest tensor of the
# codec (12 heads x 64 x 64 per window at half resolution: 300 MB for a
# 768 x 512 image, 6 GB for 4K); computed a chunk at a time, their memory
# is bounded by this for any image size and a chunk (with its softmax) stays
# in the last-level cache. Results are bit-identical to the single product
# (tests/test_attention.py).
ATTENTION_CHUNK_BYTES = 16 * 2 ** 20


def chunk_windows(heads, pixels, dtype, budget):
  """Most windows per chunk whose logits fit `budget` (at least one)."""
  per_window = heads * pixels * pixels * tf.as_dtype(dtype).size
  return max(1, budget // per_window)


# Largest hidden activations (both halves) of one band of rows of a
# convolutional GLU at inference, in bytes. The hidden layer is the widest
# tensor of a Swin block (4 x its width; at half resolution two 75 MB halves
# for a 768 x 512 image, plus the depthwise conv's output and GELU's
# temporaries): computed a band of rows at a time, it is bounded by this
# for any image height.
MLP_CHUNK_BYTES = 64 * 2 ** 20


def equal_parts(total, most):
  """(count, size): the fewest parts of at most `most` units covering
  `total`, all of the same size (what XLA needs); padded to
  count * size, the padding is less than one unit per part."""
  count = (total + most - 1) // most
  return count, (total + count - 1) // count


def sequential_concat(count, part, dtype, element_shape):
  """`tf.concat([part(i) for i in range(count)], 0)`, one part at a time.

  A `tf.while_loop` with one iteration in flight: only one part's
  temporaries are alive at once, which is what bounds the memory of the
  banded and chunked computations here.
  """
  def body(i, outputs):
    return i + 1, outputs.write(i, part(i))

  outputs = tf.TensorArray(dtype, size=count, infer_shape=False,
                           element_shape=element_shape)
  _, outputs = tf.while_loop(lambda i, _: i < count, body,
                             (tf.constant(0), outputs),
                             parallel_iterations=1)
  return outputs.concat()


def map_row_bands(fn, x, max_rows, halo=0, multiple=1):
  """`fn` applied to horizontal bands of x, one after the other.

  The image's rows are split into equal bands of at most `max_rows` rows
  (a multiple of `multiple`). `fn` sees a band with `halo` more rows above
  and below: a (1, band_rows + 2 * halo, W, C) tensor. All bands have that
  shape (what XLA needs): beyond the image, x is padded with zero rows
  (fewer than one per band at the bottom), and `fn` gets the image row
  index of each row it sees so it can tell them apart. Of its
  (1, band_rows + 2 * halo, W, C') output, the band's own rows are kept.

  Args:
    fn: (band, row_index) -> band output; row_index is int32
      (band_rows + 2 * halo,), negative or >= H outside the image.
    x: (B, H, W, C), H a multiple of `multiple`.
    max_rows: most rows per band, a positive int or scalar int32 tensor.
    halo: rows of context on each side (a kernel's reach).
    multiple: band heights are multiples of this (window rows).

  Returns:
    (B, H, W, C'): the bands' outputs, in order.
  """
  shape = tf.shape(x)
  batch, height = shape[0], shape[1]
  bands, band_units = equal_parts(height // multiple,
                                  tf.maximum(max_rows // multiple, 1))
  band_rows = band_units * multiple
  x = tf.pad(x, [[0, 0], [halo, bands * band_rows - height + halo], [0, 0],
                 [0, 0]])
  size = band_rows + 2 * halo

  def band(i):
    image, first = i // bands, (i % bands) * band_rows
    part = tf.slice(x, tf.stack([image, first, 0, 0]),
                    tf.stack([1, size, shape[2], shape[3]]))
    part.set_shape([1, None] + x.shape[2:])
    out = fn(part, first - halo + tf.range(size))
    return out[0, halo:halo + band_rows]

  # (B * bands * band_rows, W, C')
  out = sequential_concat(batch * bands, band, x.dtype,
                          tf.TensorShape([None, None, None]))
  out = tf.reshape(out, tf.concat([[batch, bands * band_rows],
                                   tf.shape(out)[1:]], 0))
  return out[:, :height]
