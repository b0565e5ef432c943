"""tf.data input pipelines for training and validating DCAE.

Training examples are random `crop_size` crops, validation examples are
center crops (as the official `train.py`: RandomCrop / CenterCrop + ToTensor),
float32 in [0, 1], NHWC.

Images come from local files (globs, recursive `**` allowed) or from a locally
prepared TensorFlow Datasets dataset. Decoding local files goes through one
small Python function (`ImageDecoder`) so that an unreadable file can be
skipped *by name*: a pure in-graph `decode_image` + `ignore_errors` would drop
it silently (its error message does not say which file it was), and a
corrupted file in a 300k-image crawl should neither stop a week of training
nor go unnoticed. Formats TF decodes natively (PNG, JPEG, BMP, GIF) use
`tf.io.decode_image`; WebP and TIFF, which TF 2.14 cannot decode, use Pillow.
Decoding dominates nothing here: a DCAE training step costs far more than
decoding its batch.
"""
import glob
import io
import os
import threading

from absl import logging
import numpy as np
import tensorflow as tf

from dcae_tf import io as dio

SMALL_IMAGE_POLICIES = ("skip", "pad")
DEFAULT_CROP_SIZE = 256
# The file list is shuffled in full up to this many names, then in windows.
MAX_FILE_SHUFFLE_BUFFER = 100_000
# Crops are shuffled again across files (cheap: they are small).
CROP_SHUFFLE_BUFFER = 64
# Validation uses at most this many images by default (they are cached).
DEFAULT_MAX_VAL_IMAGES = 64
# Magic bytes of the formats tf.io.decode_image handles itself.
_TF_NATIVE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8")
# Number of individual file names logged per problem kind before only counts.
_MAX_NAMED_WARNINGS = 20


def list_images(patterns):
  """Expands globs / directories into a sorted list of image file names.

  Args:
    patterns: a glob or a directory, a comma-separated string of those, or a
      list of them. `**` matches any number of directories. A directory
      stands for every image below it.

  Returns:
    Sorted list of file names with an image extension (case-insensitive).

  Raises:
    ValueError: if the patterns match no image file.
  """
  if isinstance(patterns, str):
    patterns = [p for p in patterns.split(",") if p.strip()]
  patterns = [os.path.expanduser(p.strip()) for p in patterns]
  if not patterns:
    raise ValueError("no image glob given")
  files = set()
  for pattern in patterns:
    if os.path.isdir(pattern):
      files.update(dio.list_files(pattern, recursive=True))
      continue
    files.update(name for name in glob.glob(pattern, recursive=True)
                 if dio.has_extension(name) and os.path.isfile(name))
  if not files:
    raise ValueError(
        f"no image files ({', '.join(dio.IMAGE_EXTENSIONS)}) match "
        f"{', '.join(repr(p) for p in patterns)}")
  return sorted(files)


class ImageDecoder:
  """Decodes one image file to uint8 RGB, or to an empty image to drop it.

  Keeps per-pipeline statistics (unreadable and too-small files, by name) and
  logs each problem file once, so that repeated epochs do not flood the log.
  Thread-safe: tf.data calls it from several threads.
  """

  def __init__(self, crop_size, small_images="skip", name="data"):
    if small_images not in SMALL_IMAGE_POLICIES:
      raise ValueError(f"small_images must be one of {SMALL_IMAGE_POLICIES}, "
                       f"not {small_images!r}")
    self.crop_size = int(crop_size)
    self.small_images = small_images
    self.name = name
    self.unreadable = set()
    self.small = set()
    self._lock = threading.Lock()

  def _note(self, kind, names, path, message):
    with self._lock:
      if path in names:
        return
      names.add(path)
      count = len(names)
    if count <= _MAX_NAMED_WARNINGS:
      logging.warning("%s: %s %s (%d such file(s) so far)",
                      self.name, message, path, count)
    elif count & (count - 1) == 0:  # Powers of two: keep a running count.
      logging.warning("%s: %d %s file(s) so far", self.name, count, kind)

  @staticmethod
  def _decode_bytes(data):
    if data.startswith(_TF_NATIVE_MAGIC):
      image = tf.io.decode_image(data, channels=3, expand_animations=False)
      return image.numpy()
    from PIL import Image  # pylint: disable=g-import-not-at-top
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))

  def __call__(self, path):
    """Returns uint8 [H, W, 3]; [0, 0, 3] if the file must be skipped."""
    if isinstance(path, bytes):
      path = path.decode("utf-8")
    elif not isinstance(path, str):
      path = path.numpy().decode("utf-8")
    empty = np.zeros((0, 0, 3), np.uint8)
    try:
      with open(path, "rb") as f:
        image = self._decode_bytes(f.read())
      if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"unexpected image shape {image.shape}")
    except Exception as e:  # pylint: disable=broad-except
      self._note("unreadable", self.unreadable, path,
                 f"skipping unreadable image ({type(e).__name__}: "
                 f"{str(e).splitlines()[0][:120] if str(e) else ''})")
      return empty
    return self.fit(image, path)

  def fit(self, image, path="<image>"):
    """Applies the small-image policy: drop or symmetric-pad to crop_size."""
    h, w = image.shape[:2]
    if h >= self.crop_size and w >= self.crop_size:
      return image
    if self.small_images == "skip":
      self._note("too small", self.small, path,
                 f"skipping image smaller ({h}x{w}) than the "
                 f"{self.crop_size}px crop:")
      return np.zeros((0, 0, 3), np.uint8)
    self._note("too small (padded)", self.small, path,
               f"padding image smaller ({h}x{w}) than the "
               f"{self.crop_size}px crop:")
    pad = [(0, max(0, self.crop_size - h)), (0, max(0, self.crop_size - w)),
           (0, 0)]
    return np.pad(image, pad, mode="symmetric")

  def summary(self):
    """One line with the counts, for the end-of-run log."""
    verb = "skipped" if self.small_images == "skip" else "padded"
    return (f"{self.name}: {len(self.unreadable)} unreadable file(s) skipped, "
            f"{len(self.small)} image(s) smaller than {self.crop_size}px "
            f"{verb}")


def _non_empty(image):
  return tf.reduce_all(tf.shape(image)[:2] > 0)


def _to_float(image):
  return tf.cast(image, tf.float32) / 255.0


def _center_crop(image, crop_size):
  shape = tf.shape(image)
  top = (shape[0] - crop_size) // 2
  left = (shape[1] - crop_size) // 2
  return image[top:top + crop_size, left:left + crop_size, :]


def _decode_files(paths, decoder, parallel=True):
  """Dataset of file names -> dataset of uint8 images (problem files dropped)."""
  def load(path):
    image = tf.numpy_function(decoder, [path], tf.uint8, stateful=False)
    return tf.ensure_shape(image, [None, None, 3])
  calls = tf.data.AUTOTUNE if parallel else None
  return paths.map(load, num_parallel_calls=calls,
                   deterministic=True).filter(_non_empty)


class ImageSource:
  """Where images come from: local files or a TFDS dataset (split)."""

  def __init__(self, glob_pattern=None, tfds_dataset=None, tfds_data_dir=None,
               tfds_split="train", tfds_image_key="image"):
    if bool(glob_pattern) == bool(tfds_dataset):
      raise ValueError("give exactly one of an image glob or a TFDS dataset "
                       "name")
    self.files = list_images(glob_pattern) if glob_pattern else None
    self.tfds_dataset = tfds_dataset
    self.tfds_data_dir = tfds_data_dir
    self.tfds_split = tfds_split
    self.tfds_image_key = tfds_image_key

  def describe(self):
    if self.files is not None:
      return f"{len(self.files)} image file(s)"
    return f"TFDS {self.tfds_dataset}[{self.tfds_split}]"

  def images(self, decoder, shuffle_seed=None):
    """uint8 [H, W, 3] images, each at least decoder.crop_size (or dropped)."""
    if self.files is not None:
      paths = tf.data.Dataset.from_tensor_slices(self.files)
      if shuffle_seed is not None:
        paths = paths.shuffle(min(len(self.files), MAX_FILE_SHUFFLE_BUFFER),
                              seed=shuffle_seed, reshuffle_each_iteration=True)
        paths = paths.repeat()
      return _decode_files(paths, decoder)
    ds = load_tfds(self.tfds_dataset, self.tfds_data_dir, self.tfds_split,
                   shuffle_files=shuffle_seed is not None, seed=shuffle_seed)
    key = self.tfds_image_key

    def get_image(example):
      image = example[key] if isinstance(example, dict) else example
      return _ensure_rgb(image)
    ds = ds.map(get_image, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle_seed is not None:
      ds = ds.repeat()
    return ds.map(
        lambda im: tf.ensure_shape(
            tf.numpy_function(decoder.fit, [im], tf.uint8, stateful=False),
            [None, None, 3]),
        num_parallel_calls=tf.data.AUTOTUNE).filter(_non_empty)


def _ensure_rgb(image):
  """uint8 image with 1, 3 or 4 channels (TFDS features vary) -> RGB."""
  image = tf.convert_to_tensor(image)
  if image.dtype != tf.uint8:
    image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
  channels = tf.shape(image)[-1]
  image = tf.cond(channels == 1, lambda: tf.tile(image, [1, 1, 3]),
                  lambda: image[..., :3])
  return tf.ensure_shape(image, [None, None, 3])


def load_tfds(name, data_dir=None, split="train", shuffle_files=False,
              seed=None):
  """A locally prepared TFDS dataset; never downloads.

  Raises:
    ValueError: with the command to prepare it, if it is not there.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  read_config = tfds.ReadConfig(shuffle_seed=seed) if seed is not None else None
  try:
    return tfds.load(name, split=split, data_dir=data_dir, download=False,
                     shuffle_files=shuffle_files, read_config=read_config)
  except Exception as e:  # pylint: disable=broad-except
    where = f" in {data_dir}" if data_dir else ""
    raise ValueError(
        f"TFDS dataset {name!r} split {split!r} is not prepared{where} "
        f"(training never downloads; prepare it first, e.g. `tfds build "
        f"{name} --data_dir DIR`): {str(e).splitlines()[0][:200]}") from e


def train_dataset(source, batch_size, crop_size=DEFAULT_CROP_SIZE,
                  small_images="skip", seed=0, decoder=None):
  """Endless batches of random crops, float32 [batch_size, crop, crop, 3].

  Batches are whole (`drop_remainder`) so they split evenly over replicas;
  `batch_size` is the global batch. The crop offsets are stateless functions
  of (seed, example index), so a pipeline is reproducible from its seed.

  Args:
    source: an ImageSource.
    batch_size: global batch size.
    crop_size: side of the square crops.
    small_images: "skip" or "pad" images smaller than the crop.
    seed: shuffling / cropping seed.
    decoder: optional ImageDecoder (to read its statistics afterwards).
  """
  decoder = decoder or ImageDecoder(crop_size, small_images, "train data")
  images = source.images(decoder, shuffle_seed=seed)
  crop_seeds = tf.data.Dataset.counter().map(
      lambda i: tf.stack([tf.cast(seed, tf.int64), i]))

  def crop(image, crop_seed):
    image = tf.image.stateless_random_crop(
        image, [crop_size, crop_size, 3], seed=crop_seed)
    return _to_float(image)
  ds = tf.data.Dataset.zip((images, crop_seeds))
  ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.shuffle(CROP_SHUFFLE_BUFFER, seed=seed)
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def validation_dataset(source, batch_size, crop_size=DEFAULT_CROP_SIZE,
                       small_images="skip", max_images=DEFAULT_MAX_VAL_IMAGES,
                       decoder=None):
  """One pass of center crops, float32, cached in memory after the first.

  Raises:
    ValueError: (on first iteration) never; an empty result is reported by
      the caller, which knows whether validation was asked for.
  """
  decoder = decoder or ImageDecoder(crop_size, small_images, "validation data")
  images = source.images(decoder, shuffle_seed=None)
  ds = images.map(lambda im: _to_float(_center_crop(im, crop_size)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if max_images:
    ds = ds.take(max_images)
  return ds.cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)
