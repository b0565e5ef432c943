"""Input pipelines: real image files of every supported format on disk."""
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from dcae_tf import data
from tests.images import smooth_image


def write_images(root, count=6, size=(144, 160), seed=0, ext="png",
                 corrupt=True, small=True):
  """count images under root/a/b (nested), + a corrupt and a too-small one."""
  rng = np.random.default_rng(seed)
  nested = os.path.join(root, "a", "b")
  os.makedirs(nested, exist_ok=True)
  paths = []
  for i in range(count):
    path = os.path.join(nested if i % 2 else root, f"img{i}.{ext}")
    image = smooth_image(*size, seed=int(rng.integers(1 << 30)))
    Image.fromarray(image).save(path)
    paths.append(path)
  if corrupt:
    with open(os.path.join(root, "corrupt.png"), "wb") as f:
      f.write(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
  if small:
    Image.fromarray(smooth_image(40, 48, seed=int(rng.integers(1 << 30)))).save(
        os.path.join(root, "a", "small.jpg"))
  return paths


def test_list_images_recursive_and_filtered(tmp_path):
  paths = write_images(str(tmp_path), count=4)
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / "UPPER.PNG").write_bytes(open(paths[0], "rb").read())
  found = data.list_images(str(tmp_path / "**" / "*"))
  assert set(paths) <= set(found)
  assert str(tmp_path / "UPPER.PNG") in found
  assert not any(p.endswith(".txt") for p in found)
  # A directory means everything below it; comma-separated globs combine.
  assert data.list_images(str(tmp_path)) == found
  both = data.list_images(f"{tmp_path}/*.png,{tmp_path}/a/b/*.png")
  assert set(paths) <= set(both)


def test_empty_glob_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="no image files .* match"):
    data.list_images(str(tmp_path / "**" / "*.png"))
  with pytest.raises(ValueError, match="exactly one"):
    data.ImageSource()


def test_train_batches_skip_bad_and_small_files(tmp_path):
  write_images(str(tmp_path), count=4)
  source = data.ImageSource(str(tmp_path / "**" / "*"))
  decoder = data.ImageDecoder(64, "skip", "train data")
  ds = data.train_dataset(source, batch_size=3, crop_size=64, seed=1,
                          decoder=decoder)
  batches = [b.numpy() for b in ds.take(6)]
  for b in batches:
    assert b.shape == (3, 64, 64, 3) and b.dtype == np.float32
    assert 0.0 <= b.min() and b.max() <= 1.0
  assert decoder.unreadable == {str(tmp_path / "corrupt.png")}
  assert decoder.small == {str(tmp_path / "a" / "small.jpg")}
  assert "1 unreadable" in decoder.summary()
  assert "1 image(s) smaller than 64px skipped" in decoder.summary()


def test_train_pipeline_is_reproducible_from_its_seed(tmp_path):
  write_images(str(tmp_path), count=4, corrupt=False, small=False)
  source = data.ImageSource(str(tmp_path))

  def first(seed):
    ds = data.train_dataset(source, batch_size=2, crop_size=64, seed=seed)
    return np.concatenate([b.numpy() for b in ds.take(3)])
  a, b, c = first(5), first(5), first(6)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_random_crops_come_from_the_image(tmp_path):
  rng = np.random.default_rng(3)
  image = smooth_image(80, 96, seed=int(rng.integers(1 << 30)))
  Image.fromarray(image).save(tmp_path / "one.png")
  source = data.ImageSource(str(tmp_path / "one.png"))
  ds = data.train_dataset(source, batch_size=1, crop_size=64, seed=0)
  ref = image.astype(np.float32) / 255
  for crop in ds.take(4):
    crop = crop.numpy()[0]
    hits = [np.abs(ref[t:t + 64, l:l + 64] - crop).max() < 1e-6
            for t in range(80 - 64 + 1) for l in range(96 - 64 + 1)]
    assert any(hits)


def test_small_images_padded_when_asked(tmp_path):
  rng = np.random.default_rng(0)
  image = smooth_image(40, 48, seed=int(rng.integers(1 << 30)))
  Image.fromarray(image).save(tmp_path / "small.png")
  source = data.ImageSource(str(tmp_path / "small.png"))
  decoder = data.ImageDecoder(64, "pad")
  (crop,) = list(data.validation_dataset(source, 1, 64, "pad",
                                         decoder=decoder))
  crop = crop.numpy()[0]
  assert crop.shape == (64, 64, 3)
  np.testing.assert_allclose(crop[:40, :48], image / 255, atol=1e-6)
  # Symmetric padding mirrors the last rows.
  np.testing.assert_allclose(crop[40, :48], image[39] / 255, atol=1e-6)
  np.testing.assert_allclose(crop[:40, 48], image[:, 47] / 255, atol=1e-6)
  assert len(decoder.small) == 1


def test_validation_center_crops_every_format(tmp_path):
  rng = np.random.default_rng(1)
  image = smooth_image(70, 90, seed=int(rng.integers(1 << 30)))
  lossless = ("png", "bmp", "webp", "tiff")
  # The JPEG near-lossless (no chroma subsampling), so its pixels stay
  # within the tolerance below.
  options = {"webp": {"lossless": True},
             "jpg": {"quality": 95, "subsampling": 0}}
  for ext in lossless + ("jpg",):
    Image.fromarray(image).save(tmp_path / f"im.{ext}", **options.get(ext, {}))
  source = data.ImageSource(str(tmp_path / "*"))
  assert len(source.files) == 5
  decoder = data.ImageDecoder(64)
  ds = data.validation_dataset(source, batch_size=2, crop_size=64,
                               decoder=decoder)
  crops = np.concatenate([b.numpy() for b in ds])
  assert crops.shape == (5, 64, 64, 3)
  expected = image[3:67, 13:77] / 255  # (70-64)//2, (90-64)//2
  names = sorted(source.files)
  for name, crop in zip(names, crops):
    tol = 0.1 if name.endswith(".jpg") else 1e-6
    np.testing.assert_allclose(crop, expected, atol=tol, err_msg=name)
  assert not decoder.unreadable


def test_validation_max_images(tmp_path):
  write_images(str(tmp_path), count=5, corrupt=False, small=False)
  source = data.ImageSource(str(tmp_path))
  ds = data.validation_dataset(source, batch_size=2, crop_size=64,
                               max_images=3)
  assert sum(int(b.shape[0]) for b in ds) == 3


def test_grayscale_and_rgba_files_become_rgb(tmp_path):
  rng = np.random.default_rng(2)
  rgb = smooth_image(64, 64, seed=int(rng.integers(1 << 30)))
  Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
  Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(tmp_path / "rgba.png")
  source = data.ImageSource(str(tmp_path / "*.png"))
  crops = np.concatenate(
      [b.numpy() for b in data.validation_dataset(source, 2, 64)])
  gray, rgba = crops
  np.testing.assert_allclose(gray[..., 1], rgb[..., 0] / 255, atol=1e-6)
  np.testing.assert_allclose(rgba, rgb / 255, atol=1e-6)


# -- TensorFlow Datasets --------------------------------------------------------

def _make_tfds_dataset(data_dir):
  """Prepares a tiny image dataset with TFDS, entirely offline."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class DcaeTinyImages(tfds.core.GeneratorBasedBuilder):
    """Six generated images in train, two in validation."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict(
              {"image": tfds.features.Image(shape=(None, None, 3))}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(6, 0),
              "validation": self._generate_examples(2, 1)}

    def _generate_examples(self, count, seed):  # pylint: disable=arguments-differ
      rng = np.random.default_rng(seed)
      for i in range(count):
        yield i, {"image": smooth_image(
            72, 80, seed=int(rng.integers(1 << 30)))}

  DcaeTinyImages(data_dir=data_dir).download_and_prepare()
  return "dcae_tiny_images"


def test_tfds_local_dataset(tmp_path):
  name = _make_tfds_dataset(str(tmp_path))
  train = data.ImageSource(tfds_dataset=name, tfds_data_dir=str(tmp_path))
  batches = list(data.train_dataset(train, 4, 64, seed=0).take(3))
  assert all(b.shape == (4, 64, 64, 3) for b in batches)
  val = data.ImageSource(tfds_dataset=name, tfds_data_dir=str(tmp_path),
                         tfds_split="validation")
  crops = np.concatenate([b.numpy() for b in data.validation_dataset(val, 4,
                                                                     64)])
  assert crops.shape == (2, 64, 64, 3)


def test_tfds_missing_dataset_is_a_clear_error(tmp_path):
  source = data.ImageSource(tfds_dataset="no_such_dataset_xyz",
                            tfds_data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="not prepared.*tfds build"):
    data.train_dataset(source, 2, 64)
