"""Exact entropy parameters cost the shipped models (almost) no rate.

`tests/data/float_path_rates.json` holds, per shipped model and held-out
photograph, the bitstream's bpp and the decoded PSNR of the same weights
with float entropy parameters (`DCAECodec(numerics="float")`, the
arithmetic of codecs before format 3), measured by `bench/exact_rate.py`
(its date and CPU are in the file). The shipped exports compute them
exactly; each photograph must cost at most `MAX_IMAGE_GROWTH` more, and
the zoo's curve (each model's mean bpp and PSNR) must stay within
`MAX_BD_RATE_PERCENT` BD-rate (PSNR) of the float curve.
"""
import json
import os

import numpy as np
import pytest

from dcae_tf import export
from dcae_tf import zoo
from dcae_tf.evaluation import bd
from dcae_tf.evaluation import images
from dcae_tf.evaluation import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "saved_models")
HELD_OUT = os.path.join(ROOT, "data", "test")
FLOAT_PATH = os.path.join(ROOT, "tests", "data", "float_path_rates.json")
MAX_IMAGE_GROWTH = 0.01
MAX_BD_RATE_PERCENT = 0.5


def _float_path():
  with open(FLOAT_PATH, encoding="utf-8") as f:
    return json.load(f)["models"]


@pytest.fixture(scope="module")
def exact_path():
  """{model: {image: (bpp, psnr)}} of the shipped exports."""
  photos = {images.image_name(p, HELD_OUT): images.read_image(p)
            for p in images.list_images(HELD_OUT)}
  out = {}
  for name in sorted(_float_path()):
    codec = export.load_exported(os.path.join(SHIPPED, name))
    out[name] = {}
    for key, image in photos.items():
      data = codec.compress(image)
      out[name][key] = (
          metrics.bits_per_pixel(len(data), *image.shape[:2]),
          metrics.psnr(image, codec.decompress(data)))
  return out


def test_every_shipped_model_was_measured():
  shipped = {m.dir_name for m in zoo.list_models(SHIPPED)}
  assert shipped == set(_float_path())


@pytest.mark.slow
def test_no_photograph_grows_by_more_than_one_percent(exact_path):
  stored = _float_path()
  growth = {(m, k): bpp / stored[m][k]["bpp"] - 1.
            for m, rows in exact_path.items() for k, (bpp, _) in rows.items()}
  print(f"largest growth: {max(growth.values()):+.4%}")
  assert max(growth.values()) <= MAX_IMAGE_GROWTH, growth


@pytest.mark.slow
def test_zoo_bd_rate_against_the_float_path(exact_path):
  stored = _float_path()
  names = sorted(exact_path)
  exact = np.array([np.mean(list(exact_path[n].values()), axis=0)
                    for n in names])
  floats = np.array([np.mean([(r["bpp"], r["psnr"])
                              for r in stored[n].values()], axis=0)
                     for n in names])
  result = bd.bd(exact[:, 0], exact[:, 1], floats[:, 0], floats[:, 1],
                 test="exact", anchor="float")
  print(f"BD-rate exact vs float: {result.bd_rate:+.4f} % ({result.note})")
  assert result.bd_rate <= MAX_BD_RATE_PERCENT
