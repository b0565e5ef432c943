"""Distributed training of DCAE: the official recipe on tf.distribute.

Recipe (official `train.py` / README): Adam, learning rate 1e-4, multiplied
by 0.1 late in training (epoch 46 of 50, i.e. at 92% of the steps), gradient
clipping to global norm 1.0, batch 8 of random 256x256 crops, loss
bpp + lambda * distortion (see `losses.py`).

Modules, one concept each:
  config      TrainConfig: every setting, each flag's help and choices
  distribute  strategies (default / mirrored / multi_worker), worker roles
  pipeline    the run's image sources and tf.data pipelines
  state       model, optimizer, step and their checkpoints; init_from
  step        the train step (aggregated-gradient clipping), eval step,
              learning-rate schedule
  hooks       the loop's periodic work: progress and summaries with
              throughput, validation, checkpointing
  trainer     Trainer: set-up, then the loop of one step plus hooks
  flags       bin/train.py's flags, derived from TrainConfig

TensorBoard summaries go to `model_path/train` and `model_path/validation`.
"""
# pylint: disable=unused-import
from dcae_tf.training.config import LR_DECAY_FACTOR
from dcae_tf.training.config import LR_DECAY_FRACTION
from dcae_tf.training.config import TrainConfig
from dcae_tf.training.distribute import STRATEGIES
from dcae_tf.training.distribute import make_strategy
from dcae_tf.training.distribute import split_cpu
from dcae_tf.training.distribute import worker_role
from dcae_tf.training.flags import config_from_flags
from dcae_tf.training.flags import define_flags
from dcae_tf.training.hooks import Hook
from dcae_tf.training.hooks import TRAIN_SUMMARY_DIR
from dcae_tf.training.hooks import VAL_SUMMARY_DIR
from dcae_tf.training.state import CHECKPOINT_NAME
from dcae_tf.training.step import NUM_SUMMARY_IMAGES
from dcae_tf.training.step import StepDecay
from dcae_tf.training.trainer import TrainResult
from dcae_tf.training.trainer import Trainer
from dcae_tf.training.trainer import train
