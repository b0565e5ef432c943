"""Mixed-precision training: one step per policy, then the run's restore.

A traced mixed-precision step is the costly part, so each policy trains
once; that the resumed run keeps the policy and float16's loss-scale state
is checked where a resumed run starts (after restoring, before its first
step), for both policies.
"""
import json

import numpy as np
import pytest
import tensorflow as tf

from dcae_tf.codec import checkpoint as ckpt_lib
from dcae_tf import training
from tests.training_runs import CROP
from tests.training_runs import config
from tests.training_runs import fixture_images  # pylint: disable=unused-import

# tf.keras.mixed_precision.LossScaleOptimizer's initial dynamic scale.
INITIAL_LOSS_SCALE = 2 ** 15


def _loss_scale_state(optimizer):
  return float(optimizer.loss_scale), int(optimizer.dynamic_counter)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_run_resumes_in_its_policy(tmp_path, images,
                                                   precision):
  """A mixed-precision run computes its transforms in the reduced dtype and
  everything that decides the rate in float32; a resumed run keeps the
  policy (and float16's loss scale), another policy is refused, and the
  weights load as an ordinary float32 model for export."""
  train_glob, _ = images
  model_path = tmp_path / "run"
  args = config(model_path, train_glob, steps=1, checkpoint_every=1000)
  result = training.train(training.TrainConfig(**args, precision=precision))
  compute = "bfloat16" if precision == "mixed_bfloat16" else "float16"
  model = result.model
  for transform in (model.g_a, model.g_s, model.h_a, model.h_s_scales,
                    model.h_s_means):
    assert transform.compute_dtype == compute
  assert model.compute_dtype == model.slices.compute_dtype == "float32"
  assert all(v.dtype == tf.float32 for v in model.weights)
  out = model(tf.random.uniform((1, CROP, CROP, 3)), training=True)
  assert all(v.dtype == tf.float32 for v in out.values())
  scaled = isinstance(result.optimizer,
                      tf.keras.mixed_precision.LossScaleOptimizer)
  assert scaled == (precision == "mixed_float16")
  with open(model_path / "model.json") as f:
    assert json.load(f)["precision"] == precision

  # Resumed without --precision: the run's own policy and state.
  resumed = training.Trainer(training.TrainConfig(**dict(args, steps=2)))
  assert resumed.precision == precision
  resumed.create_state()
  assert resumed.restore() == 1
  assert resumed.model.g_a.compute_dtype == compute
  assert isinstance(resumed.optimizer,
                    tf.keras.mixed_precision.LossScaleOptimizer) == scaled
  if scaled:
    # Restored, not re-initialised: after one step the state is one good
    # step at the initial scale, or a halved scale after an overflow;
    # neither is a fresh optimizer's (initial scale, no good step).
    state = _loss_scale_state(result.optimizer)
    assert state in {(INITIAL_LOSS_SCALE, 1), (INITIAL_LOSS_SCALE / 2, 0)}
    assert _loss_scale_state(resumed.optimizer) == state
  for a, b in zip(result.model.trainable_variables,
                  resumed.model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  with pytest.raises(ValueError, match=f"was trained with precision "
                     f"'{precision}'; this run asks for 'float32'"):
    training.train(training.TrainConfig(**dict(args, steps=2),
                                        precision="float32"))
  # The checkpoint is an ordinary model directory: an export builds a
  # float32 model from it, with the trained weights.
  loaded, meta = ckpt_lib.load_model(str(model_path))
  assert meta["precision"] == precision
  assert loaded.g_a.compute_dtype == "float32"
  for a, b in zip(loaded.trainable_variables,
                  result.model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
