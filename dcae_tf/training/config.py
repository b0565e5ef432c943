"""`TrainConfig`: every setting of a training run, and its flag.

Each field that `bin/train.py` takes as a flag carries its help text (and,
for a closed set of values, its choices) in the field's metadata
(`flag(...)`), so the flags are derived from this one list
(`training.flags`) instead of being kept in step with it by hand. Fields
without that metadata are for library callers and tests only.
"""
import dataclasses

from dcae_tf import config as config_lib
from dcae_tf import data as data_lib
from dcae_tf import losses as losses_lib
from dcae_tf import model as model_lib
from dcae_tf.training import distribute

# Official schedule: MultiStepLR(milestones=[46], gamma=0.1) over 50 epochs.
LR_DECAY_FRACTION = 46 / 50
LR_DECAY_FACTOR = 0.1
# Field metadata keys.
FLAG_HELP = "flag_help"
FLAG_CHOICES = "flag_choices"
# Fields that must be >= 1 (`validate`).
POSITIVE_FIELDS = ("batch_size", "crop_size", "steps", "checkpoint_every",
                   "validate_every", "log_every", "keep_checkpoints",
                   "max_val_images")


def flag(default, help_text, choices=None):
  """A field that is also a flag of bin/train.py.

  Args:
    default: the field's default; `dataclasses.MISSING` for a required one.
    help_text: the flag's help.
    choices: zero-argument callable returning the allowed values (an enum
      flag); called when the flags are defined, so that a registry such as
      the presets is read then.
  """
  metadata = {FLAG_HELP: help_text}
  if choices is not None:
    metadata[FLAG_CHOICES] = choices
  return dataclasses.field(default=default, metadata=metadata)


def _presets():
  return sorted(config_lib.PRESETS)


@dataclasses.dataclass
class TrainConfig:
  """Everything a training run needs; the flags of bin/train.py."""
  model_path: str = flag(
      dataclasses.MISSING, "Model directory: checkpoints, model.json, "
      "TensorBoard logs; rerun to resume.")
  lmbda: float = flag(
      dataclasses.MISSING, "Rate-distortion trade-off lambda (official: "
      "0.0018 0.0035 0.0067 0.013 0.025 0.05 for mse; 2.40 4.58 8.73 16.64 "
      "31.73 60.5 for ms-ssim).")
  metric: str = flag(
      "mse", "Distortion: loss = bpp + lmbda*255^2*MSE, or bpp + "
      "lmbda*(1-MS-SSIM).", lambda: losses_lib.METRICS)
  preset: str = flag(
      "paper", "Architecture preset (dcae_tf/config.py).", _presets)
  train_glob: str = flag(
      None, "Training images: glob(s), comma separated, '**' recursive, or "
      "directories (png/jpg/jpeg/webp/bmp/tif/tiff).")
  val_glob: str = flag(
      None, "Validation images (center crops); no validation if unset.")
  tfds_dataset: str = flag(
      None, "Train on this locally prepared TensorFlow Datasets dataset "
      "instead of train_glob (never downloads).")
  tfds_data_dir: str = flag(None, "TFDS data_dir holding it.")
  tfds_split: str = flag("train", "TFDS training split.")
  tfds_val_split: str = flag(
      None, "TFDS validation split (if no val_glob).")
  tfds_image_key: str = flag(
      "image", "Feature of the TFDS examples that holds the image.")
  batch_size: int = flag(
      8, "Global batch size (split over all replicas).")
  val_batch_size: int = flag(
      None, "Validation batch size (default: --batch_size).")
  crop_size: int = flag(
      data_lib.DEFAULT_CROP_SIZE, "Side of the random training / center "
      "validation crops.")
  max_val_images: int = flag(
      data_lib.DEFAULT_MAX_VAL_IMAGES, "Validate on at most this many images "
      "(their center crops).")
  steps: int = flag(1_000_000, "Train until this global step.")
  learning_rate: float = flag(1e-4, "Adam learning rate.")
  lr_decay_step: int = flag(
      None, "Step from which the learning rate is x0.1; default round(0.92 * "
      "--steps) (official: epoch 46 of 50); <= 0 never.")
  clip_norm: float = flag(
      1.0, "Clip the aggregated gradient to this global norm; 0 disables.")
  checkpoint_every: int = flag(
      5000, "Checkpoint every N steps (and at the end).")
  keep_checkpoints: int = flag(3, "Keep the newest N checkpoints.")
  validate_every: int = flag(
      5000, "Validate every N steps (and at the end).")
  log_every: int = flag(100, "Write training summaries every N steps.")
  strategy: str = flag(
      "default", "default: one device; mirrored: all local GPUs (else "
      "CPUs); multi_worker: workers from TF_CONFIG.",
      lambda: distribute.STRATEGIES)
  logical_cpus: int = flag(
      0, "Split the CPU into this many logical devices, so --strategy "
      "mirrored has that many replicas without GPUs (0: do not split).")
  init_from: str = flag(
      None, "Start from the weights of this model directory (e.g. a "
      "converted official checkpoint) or export (saved_models/NAME); "
      "ignored when model_path already has a checkpoint.")
  precision: str = flag(
      None, "Keras policy of the transforms: float32, or mixed bfloat16 / "
      "float16 (float32 variables; the entropy models, likelihoods and rates "
      "stay float32; float16 with loss scaling). Default: float32 for a new "
      "run, the run's own when resuming.", lambda: model_lib.PRECISIONS)
  seed: int = flag(0, "Seed of weights, shuffling, crops.")
  small_images: str = flag(
      "skip", "Images smaller than the crop: skip them, or pad (symmetric).",
      lambda: data_lib.SMALL_IMAGE_POLICIES)
  # Progress bar on a terminal (bin/train.py: always).
  verbose: bool = True

  def validate(self):
    """Raises ValueError with a one-line reason for a bad configuration."""
    if not self.model_path:
      raise ValueError("model_path is required")
    if bool(self.train_glob) == bool(self.tfds_dataset):
      raise ValueError("give exactly one of train_glob or tfds_dataset")
    if self.metric not in losses_lib.METRICS:
      raise ValueError(f"metric must be one of {losses_lib.METRICS}")
    distribute.check_strategy(self.strategy)
    if self.small_images not in data_lib.SMALL_IMAGE_POLICIES:
      raise ValueError(f"small_images must be one of "
                       f"{data_lib.SMALL_IMAGE_POLICIES}")
    for name in POSITIVE_FIELDS:
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
    if self.val_batch_size is not None and self.val_batch_size < 1:
      raise ValueError(f"val_batch_size must be >= 1, not "
                       f"{self.val_batch_size}")
    if not self.learning_rate > 0:
      raise ValueError("learning_rate must be > 0")
    if not self.clip_norm >= 0:
      raise ValueError("clip_norm must be >= 0 (0 disables clipping)")
    if self.metric == "ms-ssim":
      losses_lib.ms_ssim_loss_scales(self.crop_size)  # Raises if too small.
    config_lib.get_config(self.preset)  # Raises for an unknown preset.
    if self.precision is not None:
      model_lib.check_precision(self.precision)

  @property
  def decay_step(self):
    """Step at which the learning rate drops; None: never."""
    if self.lr_decay_step is None:
      return int(round(LR_DECAY_FRACTION * self.steps))
    return self.lr_decay_step if self.lr_decay_step > 0 else None


def flag_fields():
  """The fields of TrainConfig that are flags, in declaration order."""
  return [f for f in dataclasses.fields(TrainConfig) if FLAG_HELP in f.metadata]
