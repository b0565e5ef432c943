"""Residual bottleneck blocks (official `ResidualBottleneckBlock*`).

Each block's own Keras dtype policy (`dtype`) is its residual stream's;
`branch_dtype` is its convolutions' (by default the block's own), so a
bfloat16 transform (`codec.transform_dtype`) can compute them in bfloat16
around a float32 stream.
"""
import tensorflow as tf

from dcae_tf.layers import base

# Each strided / upsampling block holds this many bottleneck blocks.
BLOCKS_PER_RESAMPLE = 3


class ResidualBottleneck(base.ReadsWeightsAfterInputs, base.TorchNamed,
                         tf.keras.layers.Layer):
  """1x1 -> ReLU -> 3x3 -> ReLU -> 1x1 at half the narrower width, plus a
  shortcut (a 1x1 conv when the width changes)."""

  def __init__(self, in_channels, out_channels, branch_dtype=None, **kwargs):
    super().__init__(**kwargs)
    branch_dtype = branch_dtype or self.dtype_policy
    mid = min(in_channels, out_channels) // 2
    self.conv1 = base.Conv2D(mid, 1, name="conv1", dtype=branch_dtype)
    self.conv2 = base.Conv2D(mid, 3, name="conv2", dtype=branch_dtype)
    self.conv3 = base.Conv2D(out_channels, 1, name="conv3", dtype=branch_dtype)
    self.skip = (base.Conv2D(out_channels, 1, name="skip", dtype=branch_dtype)
                 if in_channels != out_channels else None)

  def call(self, x):
    identity = x if self.skip is None else self.skip(x)
    out = tf.nn.relu(self.conv1(x))
    out = tf.nn.relu(self.conv2(out))
    return base.residual_add(identity, self.conv3(out))

  def _torch_children(self):
    out = [("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3)]
    if self.skip is not None:
      out.append(("skip", self.skip))
    return out


class ResidualBottleneckDown(base.ReadsWeightsAfterInputs, base.TorchNamed,
                             tf.keras.layers.Layer):
  """Strided 5x5 conv, then three bottleneck blocks.

  `conv_dtype` is the strided conv's policy (by default `branch_dtype`).
  """

  def __init__(self, out_channels, kernel_size=5, branch_dtype=None,
               conv_dtype=None, **kwargs):
    super().__init__(**kwargs)
    branch_dtype = branch_dtype or self.dtype_policy
    self.conv = base.Conv2D(out_channels, kernel_size, strides=2, name="conv",
                            dtype=conv_dtype or branch_dtype)
    self.res = [ResidualBottleneck(out_channels, out_channels,
                                   branch_dtype=branch_dtype, name=f"res{i}",
                                   dtype=self.dtype_policy)
                for i in range(1, BLOCKS_PER_RESAMPLE + 1)]

  def call(self, x):
    x = self.conv(x)
    for r in self.res:
      x = r(x)
    return x

  def _torch_children(self):
    return [("conv", self.conv)] + [(r.name, r) for r in self.res]


class ResidualBottleneckUp(base.ReadsWeightsAfterInputs, base.TorchNamed,
                           tf.keras.layers.Layer):
  """Three bottleneck blocks, then a stride-2 5x5 transposed conv.

  `conv_dtype` is the transposed conv's policy (by default `branch_dtype`).
  """

  def __init__(self, in_channels, out_channels, kernel_size=5,
               branch_dtype=None, conv_dtype=None, **kwargs):
    super().__init__(**kwargs)
    branch_dtype = branch_dtype or self.dtype_policy
    self.res = [ResidualBottleneck(in_channels, in_channels,
                                   branch_dtype=branch_dtype, name=f"res{i}",
                                   dtype=self.dtype_policy)
                for i in range(1, BLOCKS_PER_RESAMPLE + 1)]
    self.conv = base.ConvTranspose2D(out_channels, kernel_size, 2, name="conv",
                                     dtype=conv_dtype or branch_dtype)

  def call(self, x):
    for r in self.res:
      x = r(x)
    return self.conv(x)

  def _torch_children(self):
    return [(r.name, r) for r in self.res] + [("conv", self.conv)]
