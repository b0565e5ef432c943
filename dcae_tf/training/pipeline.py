"""The input of a run: its image sources and their tf.data pipelines."""
import tensorflow as tf

from dcae_tf import data as data_lib


class RunData:
  """Training and validation images of a TrainConfig.

  The sources are listed when the run is set up (so an empty glob fails
  before the model is built); the pipelines are made per run segment
  (`datasets`), because a resumed run reshuffles with a seed of its own.
  The decoders outlive the pipelines: they count skipped files for the
  run's summary line.
  """

  def __init__(self, cfg):
    self.cfg = cfg
    self.train_source = data_lib.ImageSource(
        cfg.train_glob, cfg.tfds_dataset, cfg.tfds_data_dir, cfg.tfds_split,
        cfg.tfds_image_key)
    self.val_source = None
    if cfg.val_glob or (cfg.tfds_dataset and cfg.tfds_val_split):
      self.val_source = data_lib.ImageSource(
          cfg.val_glob, None if cfg.val_glob else cfg.tfds_dataset,
          cfg.tfds_data_dir, cfg.tfds_val_split, cfg.tfds_image_key)
    self.train_decoder = data_lib.ImageDecoder(
        cfg.crop_size, cfg.small_images, "train data")
    self.val_decoder = data_lib.ImageDecoder(
        cfg.crop_size, cfg.small_images, "validation data")

  def describe(self):
    """What the run trains on, for logs and the model card."""
    return self.train_source.describe()

  def train_iterator(self, strategy, start_step):
    """An iterator of distributed training batches from `start_step` on."""
    cfg = self.cfg
    # A resumed run reshuffles with another seed instead of replaying the
    # first run's data order.
    seed = cfg.seed + start_step
    train = data_lib.train_dataset(
        self.train_source, cfg.batch_size, cfg.crop_size, cfg.small_images,
        seed=seed, decoder=self.train_decoder)
    options = tf.data.Options()
    # DATA sharding: works for any number of files (even one); every worker
    # sees the same shuffled order (same seed) and takes its share.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    train = train.with_options(options)
    return iter(strategy.experimental_distribute_dataset(train))

  def validation_dataset(self, is_chief):
    """Batches of validation center crops, or None (no validation images,
    or not the chief: only the chief validates)."""
    cfg = self.cfg
    if self.val_source is None or not is_chief:
      return None
    return data_lib.validation_dataset(
        self.val_source, cfg.val_batch_size or cfg.batch_size,
        cfg.crop_size, cfg.small_images, cfg.max_val_images,
        decoder=self.val_decoder)

  def summary(self):
    return self.train_decoder.summary()
