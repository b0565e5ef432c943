"""Tests of image file I/O (dcae_tf/io.py) on real files of every format."""
import os
import struct
import warnings
import zlib

import imagecodecs
import numpy as np
import pytest
from PIL import Image, ImageFile

from dcae_tf import io as dio


def rgb(height=24, width=32, seed=0):
  return np.random.default_rng(seed).integers(
      0, 256, (height, width, 3), dtype=np.uint8)


def smooth(height=24, width=32):
  y, x = np.mgrid[:height, :width]
  return np.stack([x * 7, y * 9, (x + y) * 4], -1).astype(np.uint8)


def read(path, **kwargs):
  """read_image, failing on any warning."""
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    return dio.read_image(path, **kwargs)


def read_warning(path, pattern):
  with pytest.warns(dio.ImageWarning, match=pattern):
    return dio.read_image(path)


@pytest.mark.parametrize("fmt, ext, lossless", [
    ("PNG", ".png", True), ("BMP", ".bmp", True), ("TIFF", ".tif", True),
    ("WEBP", ".webp", True), ("JPEG", ".jpg", False)])
def test_rgb_formats(tmp_path, fmt, ext, lossless):
  image = rgb() if lossless else smooth()
  path = tmp_path / f"img{ext}"
  kwargs = {"lossless": True} if fmt == "WEBP" else {}
  if fmt == "JPEG":
    kwargs = {"quality": 95}
  Image.fromarray(image).save(path, fmt, **kwargs)
  out = read(path)
  assert out.dtype == np.uint8 and out.shape == image.shape
  assert out.flags.c_contiguous
  if lossless:
    np.testing.assert_array_equal(out, image)
  else:
    assert np.abs(out.astype(int) - image).mean() < 3


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "YCbCr"])
def test_modes_without_alpha_expand_to_rgb(tmp_path, mode):
  image = Image.fromarray(rgb()).convert(mode)
  fmt = {"CMYK": "TIFF", "YCbCr": "JPEG"}.get(mode, "PNG")
  path = tmp_path / f"img.{fmt.lower()}"
  image.save(path, fmt)
  out = read(path)
  assert out.shape == (24, 32, 3) and out.dtype == np.uint8
  if mode in ("L", "1"):
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(out[..., 0], np.asarray(image.convert("L")))
  if mode == "P":
    np.testing.assert_array_equal(out, np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("mode, fmt", [("RGBA", "PNG"), ("LA", "PNG"),
                                       ("RGBA", "WEBP"), ("RGBA", "TIFF")])
def test_alpha_is_dropped_with_a_warning(tmp_path, mode, fmt):
  image = rgb()
  alpha = np.linspace(0, 255, 32, dtype=np.uint8)[None].repeat(24, 0)
  rgba = np.dstack([image, alpha])
  path = tmp_path / f"img.{fmt.lower()}"
  kwargs = {"lossless": True} if fmt == "WEBP" else {}
  Image.fromarray(rgba, "RGBA").convert(mode).save(path, fmt, **kwargs)
  out = read_warning(path, "alpha channel dropped")
  assert out.shape == (24, 32, 3)
  if mode == "RGBA" and fmt != "WEBP":
    np.testing.assert_array_equal(out, image)


def test_palette_with_transparency_warns(tmp_path):
  image = Image.fromarray(rgb()).convert("P")
  path = tmp_path / "p.png"
  image.save(path, transparency=0)
  out = read_warning(path, "alpha channel dropped")
  assert out.shape == (24, 32, 3)


def _png_chunk(kind, data):
  return (struct.pack(">I", len(data)) + kind + data +
          struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def test_16_bit_gray_png(tmp_path):
  gray = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85)
  path = tmp_path / "g16.png"
  Image.fromarray(gray).save(path)
  assert Image.open(path).mode.startswith("I")
  out = read_warning(path, "precision was lost")
  expected = np.round(gray / 65535 * 255).astype(np.uint8)
  np.testing.assert_array_equal(out[..., 0], expected)
  np.testing.assert_array_equal(out[..., 1], expected)


@pytest.mark.parametrize("channels", [3, 4])
def test_48_and_64_bit_png(tmp_path, channels):
  data = np.random.default_rng(0).integers(0, 65536, (24, 32, channels),
                                           dtype=np.uint16)
  path = tmp_path / "deep.png"
  path.write_bytes(imagecodecs.png_encode(data))
  with pytest.warns(dio.ImageWarning) as record:
    out = dio.read_image(path)
  messages = " ".join(str(w.message) for w in record)
  assert "precision was lost" in messages
  assert ("alpha channel dropped" in messages) == (channels == 4)
  assert out.shape == (24, 32, 3)
  np.testing.assert_array_equal(out, (data[..., :3] >> 8).astype(np.uint8))


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_depth_tiff(tmp_path, mode):
  gray = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 85
  if mode == "F":
    array = gray.astype(np.float32) / 65535
  elif mode == "I":
    array = gray.astype(np.int32)
  else:
    array = gray
  path = tmp_path / "deep.tif"
  Image.fromarray(array).save(path, "TIFF")
  assert Image.open(path).mode == mode
  out = read_warning(path, "precision was lost")
  expected = np.round(gray / 65535 * 255).astype(np.uint8)
  assert np.abs(out[..., 0].astype(int) - expected).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
  image = rgb(10, 20)
  exif = Image.Exif()
  exif[0x0112] = 6  # Rotated 90 degrees clockwise.
  path = tmp_path / "rot.jpg"
  Image.fromarray(image).save(path, "JPEG", exif=exif, quality=95)
  assert read(path).shape == (20, 10, 3)


@pytest.mark.parametrize("fmt", ["GIF", "PPM", "ICO", "TGA"])
def test_other_formats_are_refused_by_name(tmp_path, fmt):
  path = tmp_path / f"img.{fmt.lower()}"
  Image.fromarray(rgb()).save(path, fmt)
  with pytest.raises(ValueError, match=rf"{path}: unsupported image format "
                     rf"'{fmt}' \(supported: BMP, JPEG, PNG, TIFF, WebP\)"):
    dio.read_image(path)


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
  path = tmp_path / "big.png"
  Image.fromarray(rgb(100, 100)).save(path)
  decoded = []
  monkeypatch.setattr(ImageFile.ImageFile, "load",
                      lambda self: decoded.append(1))
  with pytest.raises(ValueError, match=r"image 100x100 has 10000 pixels, "
                     r"more than max_pixels 9999"):
    dio.read_image(path, max_pixels=9999)
  assert not decoded


def test_lying_header_is_refused_cheaply(tmp_path):
  """A 60-byte PNG that claims to be 100000 x 100000."""
  ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
  data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) +
          _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b""))
  path = tmp_path / "bomb.png"
  path.write_bytes(data)
  with pytest.raises(ValueError, match=rf"{path}: image (100000x100000 has|"
                     r"too large)"):
    dio.read_image(path)
  # Pillow's own bomb limit (2x MAX_IMAGE_PIXELS) also ends as ValueError.
  with pytest.raises(ValueError, match=rf"{path}: image"):
    dio.read_image(path, max_pixels=10 ** 12)


@pytest.mark.parametrize("content, pattern", [
    (b"", "not an image file"),
    (b"x", "not an image file"),
    (b"GIF89a garbage", "not an image file|cannot read"),
    (np.random.default_rng(0).bytes(500), "not an image file"),
])
def test_garbage_files(tmp_path, content, pattern):
  path = tmp_path / "bad.png"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=rf"{path}: ({pattern})"):
    dio.read_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
def test_truncated_files(tmp_path, fmt):
  path = tmp_path / f"t.{fmt.lower()}"
  Image.fromarray(rgb(64, 64)).save(path, fmt)
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=rf"^{path}: "):
    dio.read_image(path)


def test_missing_and_directory(tmp_path):
  with pytest.raises(ValueError, match=rf"{tmp_path / 'nope.png'}: no such "
                     "file"):
    dio.read_image(tmp_path / "nope.png")
  with pytest.raises(ValueError, match="is a directory"):
    dio.read_image(tmp_path)


def test_write_image_round_trip_and_atomicity(tmp_path):
  image = rgb()
  path = tmp_path / "out.png"
  dio.write_image(path, image)
  np.testing.assert_array_equal(read(path), image)
  assert os.listdir(tmp_path) == ["out.png"]
  assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)
  # A failing write leaves neither a temp file nor a partial output, and
  # does not touch an existing file.
  before = path.read_bytes()
  with pytest.raises(ValueError):
    dio.write_image(path, image.astype(np.float32))
  with pytest.raises(ValueError):
    dio.write_image(path, image[..., :2])

  class Boom(Exception):
    pass

  def boom(*args, **kwargs):
    raise Boom()

  original = Image.Image.save
  Image.Image.save = boom
  try:
    with pytest.raises(Boom):
      dio.write_image(tmp_path / "new.png", image)
  finally:
    Image.Image.save = original
  assert os.listdir(tmp_path) == ["out.png"]
  assert path.read_bytes() == before


def test_write_bytes_atomic(tmp_path):
  path = tmp_path / "x.dcae"
  dio.write_bytes_atomic(path, b"abc")
  dio.write_bytes_atomic(path, b"defg")
  assert path.read_bytes() == b"defg"
  assert os.listdir(tmp_path) == ["x.dcae"]
  with pytest.raises(OSError):
    dio.write_bytes_atomic(tmp_path / "missing" / "x", b"abc")
  (tmp_path / "d").mkdir()
  with pytest.raises(OSError):
    dio.write_bytes_atomic(tmp_path / "d", b"abc")
  assert sorted(os.listdir(tmp_path)) == ["d", "x.dcae"]
