"""Every architecture number of DCAE, in named presets.

`paper` is the official configuration of Lu et al., CVPR 2025
(github.com/LabShuHangGU/DCAE, `models/dcae.py`, `DCAE()` with default
arguments). The smaller presets keep every block type (plain and shifted
window attention, strided and upsampling bottleneck blocks, multi-scale
aggregation, dictionary cross-attention, LRP) but are narrower and shallower,
so they train on a CPU and make fast tests.
"""
import dataclasses
import math


def padded_size(size, multiple):
  """`size` rounded up to a multiple of `multiple` (ints or int tensors)."""
  return (size + multiple - 1) // multiple * multiple


@dataclasses.dataclass(frozen=True)
class DCAEConfig:
  """Architecture of one DCAE model. Frozen: a model's identity."""
  name: str
  # Hyperprior width (official `N`) and latent channels (official `M`).
  hyper_channels: int = 192
  latent_channels: int = 320
  # Channels of z (the output of h_a's last conv; 192 in the official code).
  z_channels: int = 192
  num_slices: int = 5
  max_support_slices: int = 5
  # g_a / g_s stages: widths, Swin blocks per stage, attention head dims.
  stage_channels: tuple = (96, 144, 256)
  stage_depths: tuple = (1, 2, 12)
  analysis_head_dims: tuple = (8, 16, 32)
  synthesis_head_dims: tuple = (32, 16, 8)
  window_size: int = 8
  # Hyper transforms: one Swin stage each, window 4, head dim 32.
  hyper_window_size: int = 4
  hyper_head_dim: int = 32
  hyper_depth: int = 1
  # ConvGLU hidden width = mlp_ratio * dim (then halved into x and gate v).
  mlp_ratio: int = 4
  # Dictionary: `dict_size` entries of dim dict_heads * dict_head_dim.
  dict_size: int = 128
  dict_heads: int = 20
  dict_head_dim: int = 32
  dict_mlp_ratio: int = 4
  dict_dense_layers: int = 3
  spatial_attention_kernel: int = 7
  # Per-slice mean / scale / LRP networks (3x3 convs, GELU in between).
  slice_hidden: tuple = (224, 128)
  lrp_gain: float = 0.5
  # Entropy models.
  z_filters: tuple = (3, 3, 3, 3)
  scale_min: float = 0.11
  scale_max: float = 256.0
  scale_levels: int = 64
  likelihood_bound: float = 1e-9
  layernorm_epsilon: float = 1e-5

  def __post_init__(self):
    if self.latent_channels % self.num_slices:
      raise ValueError("latent_channels must be divisible by num_slices")
    if len(self.stage_channels) != 3 or len(self.stage_depths) != 3:
      raise ValueError("DCAE has exactly three Swin stages per transform")
    for dims, heads in ((self.stage_channels, self.analysis_head_dims),
                        (self.stage_channels, self.synthesis_head_dims[::-1])):
      for d, h in zip(dims, heads):
        if d % h:
          raise ValueError(f"stage width {d} not divisible by head dim {h}")
    if self.hyper_channels % self.hyper_head_dim:
      raise ValueError("hyper_channels must be divisible by hyper_head_dim")

  @property
  def slice_channels(self):
    return self.latent_channels // self.num_slices

  @property
  def dict_dim(self):
    return self.dict_heads * self.dict_head_dim

  @property
  def latent_stride(self):
    """Downsampling factor image -> y (four stride-2 stages)."""
    return 16

  @property
  def hyper_stride(self):
    """Downsampling factor image -> z."""
    return 64

  @property
  def pad_multiple(self):
    """Image sizes are padded to a multiple of this inside the model.

    Every windowed stage needs its feature map to be a whole number of
    windows: g_a/g_s stages run at strides 2, 4, 8 with `window_size`, the
    hyper stages at stride 32 with `hyper_window_size`, and z is at stride 64.
    """
    needs = [2 * self.window_size, 4 * self.window_size,
             8 * self.window_size, 32 * self.hyper_window_size,
             self.hyper_stride]
    return math.lcm(*needs)

  def latent_shapes(self, height, width):
    """((y height, y width), (z height, z width)) of an image of that size.

    Plain arithmetic: ints, or integer tensors inside a graph.
    """
    hp = padded_size(height, self.pad_multiple)
    wp = padded_size(width, self.pad_multiple)
    ys, zs = self.latent_stride, self.hyper_stride
    return (hp // ys, wp // ys), (hp // zs, wp // zs)

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d):
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
      raise ValueError(f"unknown config fields: {sorted(unknown)}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**d)


PRESETS = {
    # The official configuration, exactly.
    "paper": DCAEConfig(name="paper"),
    # For CPU training of the shipped models (~4 M parameters, so two of
    # them ship in well under 40 MB).
    "small": DCAEConfig(
        name="small",
        hyper_channels=64, latent_channels=100, z_channels=64,
        stage_channels=(32, 48, 64), stage_depths=(1, 2, 2),
        analysis_head_dims=(8, 16, 16), synthesis_head_dims=(16, 16, 8),
        hyper_head_dim=16,
        dict_size=64, dict_heads=4, dict_head_dim=16,
        slice_hidden=(32, 32)),
    # For fast tests: every block type, tiny widths, two slices (the
    # second reads the first, as every later slice does; a graph of five
    # traces and optimises about 1.5x slower).
    "tiny": DCAEConfig(
        name="tiny",
        hyper_channels=16, latent_channels=40, z_channels=16, num_slices=2,
        stage_channels=(8, 16, 16), stage_depths=(1, 2, 2),
        analysis_head_dims=(8, 8, 8), synthesis_head_dims=(8, 8, 8),
        hyper_head_dim=8, mlp_ratio=2,
        dict_size=16, dict_heads=2, dict_head_dim=8, dict_mlp_ratio=2,
        slice_hidden=(32, 16)),
}


def get_config(preset):
  """Returns the named preset, or raises a ValueError listing the names."""
  if isinstance(preset, DCAEConfig):
    return preset
  try:
    return PRESETS[preset]
  except KeyError:
    raise ValueError(f"unknown preset {preset!r}; "
                     f"choose one of {sorted(PRESETS)}") from None
