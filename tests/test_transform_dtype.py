"""bfloat16 transforms (codec.transform_dtype): g_a and g_s in bfloat16,
everything that decides the entropy parameters in float32."""
import numpy as np
import pytest
import tensorflow as tf

from dcae_tf.codec import core
from dcae_tf.codec import transform_dtype
from dcae_tf.codec import weights
from dcae_tf.model import DCAE


@pytest.fixture(name="codecs", scope="module")
def fixture_codecs():
  """float32 and bfloat16 codecs of one tiny model, float16 storage."""
  model = weights.with_weight_dtype(DCAE("tiny").build_weights(),
                                    weights.FLOAT16)
  return (core.DCAECodec(model),
          core.DCAECodec(model, transform_dtype=transform_dtype.BFLOAT16))


def test_same_weights_once_same_fingerprint_dtype_in_metadata(codecs):
  f32, bf16 = codecs
  # The views hold the model's variables: nothing added, nothing copied
  # (each codec has its own coding-table variables besides).
  model_ids = {id(v) for v in f32.model.variables}
  assert bf16.model is f32.model
  assert len(bf16.variables) == len(f32.variables)
  assert sum(id(v) in model_ids for v in bf16.variables) == len(model_ids)
  assert bf16.fingerprint == f32.fingerprint
  assert f32.metadata["transform_dtype"] == "float32"
  assert bf16.metadata["transform_dtype"] == "bfloat16"
  views = bf16._transforms  # pylint: disable=protected-access
  g_a, g_s = views.g_a, views.g_s
  # Convolutions, attention and MLPs compute in bfloat16 ...
  block = g_s.steps[1].blocks[0]
  assert block.msa.compute_dtype == block.mlp.compute_dtype == "bfloat16"
  assert g_a.steps[2].conv.compute_dtype == "bfloat16"
  assert g_s.steps[-1].res[-1].conv2.compute_dtype == "bfloat16"
  assert g_s.steps[1].conv.compute_dtype == "bfloat16"
  # ... the residual stream between them stays float32: the containers,
  # residual scales and layer norms compute in float32 ...
  for layer in (g_a, g_s, g_s.steps[1], block, block.ln1, block.res_scale_1,
                g_s.steps[-1].res[-1]):
    assert layer.compute_dtype == "float32", layer.name
  # ... as do the convolutions reading the image or y_hat and writing y or
  # the image (before rounding either).
  assert g_a.steps[0].conv.compute_dtype == g_a.steps[-1].compute_dtype
  assert g_s.steps[0].compute_dtype == g_s.steps[-1].conv.compute_dtype
  assert g_a.steps[-1].compute_dtype == g_s.steps[0].compute_dtype == "float32"
  # g_a's first steps (at 1/2 resolution) compute wholly in float32.
  assert transform_dtype.FLOAT32_ANALYSIS_STEPS == 2
  first = g_a.steps[1].blocks[0]
  assert first.msa.compute_dtype == first.mlp.compute_dtype == "float32"
  assert g_a.steps[0].res[0].conv2.compute_dtype == "float32"
  y = g_a(tf.zeros((1, 64, 64, 3)))
  assert y.dtype == tf.float32 and g_s(y).dtype == tf.float32
  assert g_s.steps[1](g_s.steps[0](y)).dtype == tf.float32
  with pytest.raises(ValueError, match="transform dtype must be one of"):
    transform_dtype.check_transform_dtype("float16")


@pytest.mark.slow  # Traces both codecs' graphs: minutes on a loaded CPU.
def test_bfloat16_round_trip_is_exact_and_decodes_with_float32(codecs):
  f32, bf16 = codecs
  rng = np.random.default_rng(0)
  image = tf.constant(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
  data, y_hat, reconstruction = bf16.compress_with_reconstruction(image)
  # decode == the encoder's reconstruction: the decoder runs the same g_s.
  np.testing.assert_array_equal(bf16.decompress(data).numpy(),
                                reconstruction.numpy())
  # The entropy parameters are float32 arithmetic on both sides: a float32
  # codec of the same weights decodes the same latents.
  decoded_y, _ = f32.decompress_with_latents(data)
  np.testing.assert_array_equal(decoded_y.numpy(), y_hat.numpy())
