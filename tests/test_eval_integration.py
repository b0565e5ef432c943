"""Evaluation of a real (tiny, random-weight) DCAECodec, in process."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dcae_tf import codec as codec_lib
from dcae_tf.evaluation import metrics
from dcae_tf.evaluation import runner


@pytest.mark.slow
def test_evaluate_real_codec(tmp_path):
  from dcae_tf.model import DCAE  # pylint: disable=import-outside-toplevel

  folder = tmp_path / "images"
  folder.mkdir()
  yy, xx = np.mgrid[0:48, 0:80]
  image = np.stack([xx * 3, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)
  Image.fromarray(image).save(folder / "a.png")

  tf.random.set_seed(0)
  model = DCAE("tiny").build_weights()
  codec = codec_lib.DCAECodec(model, name="tiny-eval", lmbda=0.01,
                              metric="mse")
  results = runner.run_evaluation(str(folder), str(tmp_path / "out"),
                                  codecs=[codec], anchors=[], progress=False)
  (row,) = results["per_image"]
  stream = codec.compress(image).numpy()
  # The rate is that of the real bitstream, container included.
  assert row.num_bytes == len(stream)
  assert row.bpp == pytest.approx(len(stream) * 8 / (48 * 80))
  assert row.curve == "DCAE-tiny-mse" and row.kind == "model"
  # The quality is that of the real decode, not merely a finite number.
  decoded = codec.decompress(stream).numpy()
  assert row.psnr == pytest.approx(metrics.psnr(image, decoded), rel=1e-12)
  assert row.msssim_scales == 3
  assert row.msssim == pytest.approx(metrics.msssim(image, decoded),
                                     rel=1e-12)
  assert row.encode_seconds > 0
