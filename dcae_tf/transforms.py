"""Analysis / synthesis transforms and the hyperprior transforms.

Each is a `layers.base.Sequential`, so its sub-layers are numbered exactly as
the official `nn.Sequential`s (`g_a.0`, ..., `g_a.6`) and official weights
map onto them by name.
"""
from dcae_tf.layers import swin
from dcae_tf.layers import base
from dcae_tf.layers import residual

IMAGE_CHANNELS = 3
# Kernel sizes of the official resampling convs.
MAIN_KERNEL = 5
HYPER_KERNEL = 3


def _stage(config, dim, head_dim, depth, window=None, name=None):
  return swin.SwinStage(
      dim, head_dim, window or config.window_size, depth, config.mlp_ratio,
      config.layernorm_epsilon, name=name)


def analysis_transform(config):
  """g_a: image -> y at 1/16 resolution."""
  c = config
  steps = []
  for i, (dim, depth, head) in enumerate(
      zip(c.stage_channels, c.stage_depths, c.analysis_head_dims)):
    steps.append(residual.ResidualBottleneckDown(dim, MAIN_KERNEL,
                                                 name=f"down{i}"))
    steps.append(_stage(c, dim, head, depth, name=f"stage{i}"))
  steps.append(base.Conv2D(c.latent_channels, MAIN_KERNEL, strides=2,
                           name="to_latent"))
  return base.Sequential(steps, name="g_a")


def synthesis_transform(config):
  """g_s: y_hat -> image (not clamped)."""
  c = config
  dims = c.stage_channels[::-1]
  depths = c.stage_depths[::-1]
  outs = dims[1:] + (IMAGE_CHANNELS,)
  steps = [base.ConvTranspose2D(dims[0], MAIN_KERNEL, 2, name="from_latent")]
  for i, (dim, depth, head, out) in enumerate(
      zip(dims, depths, c.synthesis_head_dims, outs)):
    steps.append(_stage(c, dim, head, depth, name=f"stage{i}"))
    steps.append(residual.ResidualBottleneckUp(dim, out, MAIN_KERNEL,
                                               name=f"up{i}"))
  return base.Sequential(steps, name="g_s")


def hyper_analysis(config):
  """h_a: y -> z at 1/64 resolution."""
  c = config
  return base.Sequential([
      residual.ResidualBottleneckDown(c.hyper_channels, MAIN_KERNEL,
                                      name="down"),
      _stage(c, c.hyper_channels, c.hyper_head_dim, c.hyper_depth,
             c.hyper_window_size, name="stage"),
      base.Conv2D(c.z_channels, HYPER_KERNEL, strides=2, name="to_z"),
  ], name="h_a")


def hyper_synthesis(config, name):
  """One of the two h_s branches (official `h_z_s1` scales, `h_z_s2` means)."""
  c = config
  return base.Sequential([
      base.ConvTranspose2D(c.hyper_channels, HYPER_KERNEL, 2, name="from_z"),
      _stage(c, c.hyper_channels, c.hyper_head_dim, c.hyper_depth,
             c.hyper_window_size, name="stage"),
      residual.ResidualBottleneckUp(c.hyper_channels, c.latent_channels,
                                    MAIN_KERNEL, name="up"),
  ], name=name)
