"""Analysis / synthesis transforms and the hyperprior transforms.

Each is a `layers.base.Sequential`, so its sub-layers are numbered exactly as
the official `nn.Sequential`s (`g_a.0`, ..., `g_a.6`) and official weights
map onto them by name.
"""
import dataclasses

from dcae_tf.layers import swin
from dcae_tf.layers import base
from dcae_tf.layers import residual

IMAGE_CHANNELS = 3
# Kernel sizes of the official resampling convs.
MAIN_KERNEL = 5
HYPER_KERNEL = 3


@dataclasses.dataclass(frozen=True)
class Policies:
  """The Keras dtype policies (names or `tf.keras.mixed_precision.Policy`)
  the layers of g_a or g_s compute in.

  None is Keras's global policy when the layer is constructed: a transform
  built with the default `Policies()` computes wholly in it.
  """
  # The transform, its blocks and stages, their layer norms and residual
  # scales: the residual stream.
  stream: object = None
  # The convolutions, attention and MLPs on the stream (None: `stream`).
  branch: object = None
  # The convolutions that read the transform's input and write its output
  # (None: `branch`).
  ends: object = None
  # How many steps, from the first, compute wholly in `stream`.
  stream_steps: int = 0

  def branch_at(self, step):
    """The branches' policy in step `step` of the transform."""
    if step < self.stream_steps:
      return self.stream
    return self.branch or self.stream

  def end_at(self, step):
    """The policy of the end convolution in step `step`."""
    if step < self.stream_steps:
      return self.stream
    return self.ends or self.branch_at(step)


def _stage(config, dim, head_dim, depth, window=None, name=None,
           branch_dtype=None, dtype=None):
  return swin.SwinStage(
      dim, head_dim, window or config.window_size, depth, config.mlp_ratio,
      config.layernorm_epsilon, branch_dtype=branch_dtype, name=name,
      dtype=dtype)


def analysis_transform(config, policies=Policies()):
  """g_a: image -> y at 1/16 resolution, its layers computing in
  `policies`."""
  c, p = config, policies
  steps = []
  for i, (dim, depth, head) in enumerate(
      zip(c.stage_channels, c.stage_depths, c.analysis_head_dims)):
    down = len(steps)
    steps.append(residual.ResidualBottleneckDown(
        dim, MAIN_KERNEL, branch_dtype=p.branch_at(down),
        conv_dtype=p.end_at(down) if i == 0 else None, name=f"down{i}",
        dtype=p.stream))
    steps.append(_stage(c, dim, head, depth, name=f"stage{i}",
                        branch_dtype=p.branch_at(len(steps)), dtype=p.stream))
  steps.append(base.Conv2D(c.latent_channels, MAIN_KERNEL, strides=2,
                           name="to_latent", dtype=p.end_at(len(steps))))
  return base.Sequential(steps, name="g_a", dtype=p.stream)


def synthesis_transform(config, policies=Policies()):
  """g_s: y_hat -> image (not clamped), its layers computing in
  `policies`."""
  c, p = config, policies
  dims = c.stage_channels[::-1]
  depths = c.stage_depths[::-1]
  outs = dims[1:] + (IMAGE_CHANNELS,)
  steps = [base.ConvTranspose2D(dims[0], MAIN_KERNEL, 2, name="from_latent",
                                dtype=p.end_at(0))]
  for i, (dim, depth, head, out) in enumerate(
      zip(dims, depths, c.synthesis_head_dims, outs)):
    steps.append(_stage(c, dim, head, depth, name=f"stage{i}",
                        branch_dtype=p.branch_at(len(steps)), dtype=p.stream))
    up = len(steps)
    steps.append(residual.ResidualBottleneckUp(
        dim, out, MAIN_KERNEL, branch_dtype=p.branch_at(up),
        conv_dtype=p.end_at(up) if i == len(dims) - 1 else None,
        name=f"up{i}", dtype=p.stream))
  return base.Sequential(steps, name="g_s", dtype=p.stream)


def hyper_analysis(config, dtype=None):
  """h_a: y -> z at 1/64 resolution, its layers computing in the Keras
  dtype policy `dtype` (None: the global policy)."""
  c = config
  return base.Sequential([
      residual.ResidualBottleneckDown(c.hyper_channels, MAIN_KERNEL,
                                      name="down", dtype=dtype),
      _stage(c, c.hyper_channels, c.hyper_head_dim, c.hyper_depth,
             c.hyper_window_size, name="stage", dtype=dtype),
      base.Conv2D(c.z_channels, HYPER_KERNEL, strides=2, name="to_z",
                  dtype=dtype),
  ], name="h_a", dtype=dtype)


def hyper_synthesis(config, name, dtype=None):
  """One of the two h_s branches (official `h_z_s1` scales, `h_z_s2` means),
  its layers computing in the Keras dtype policy `dtype` (None: the global
  policy)."""
  c = config
  return base.Sequential([
      base.ConvTranspose2D(c.hyper_channels, HYPER_KERNEL, 2, name="from_z",
                           dtype=dtype),
      _stage(c, c.hyper_channels, c.hyper_head_dim, c.hyper_depth,
             c.hyper_window_size, name="stage", dtype=dtype),
      residual.ResidualBottleneckUp(c.hyper_channels, c.latent_channels,
                                    MAIN_KERNEL, name="up", dtype=dtype),
  ], name=name, dtype=dtype)
