"""Model structure: presets, sizes, parameter counts, official-weight loading."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from dcae_tf import config as config_lib
from dcae_tf import convert
from dcae_tf.model import DCAE
from tests import reference
from tests import watched_threads


@pytest.fixture(scope="module")
def paper():
  return DCAE("paper").build_weights()


@pytest.fixture(scope="module")
def tiny():
  return DCAE("tiny").build_weights()


def test_paper_preset_is_the_official_configuration():
  c = config_lib.get_config("paper")
  assert (c.hyper_channels, c.latent_channels, c.num_slices,
          c.max_support_slices) == (192, 320, 5, 5)
  assert c.stage_channels == (96, 144, 256)
  assert c.stage_depths == (1, 2, 12)
  assert c.analysis_head_dims == (8, 16, 32)
  assert c.synthesis_head_dims == (32, 16, 8)
  assert (c.window_size, c.hyper_window_size) == (8, 4)
  assert (c.dict_size, c.dict_heads, c.dict_head_dim, c.dict_dim,
          c.dict_mlp_ratio) == (128, 20, 32, 640, 4)
  assert (c.scale_min, c.scale_max, c.scale_levels) == (.11, 256., 64)
  assert c.pad_multiple == 128


def test_unknown_preset_is_named():
  with pytest.raises(ValueError, match="unknown preset 'huge'"):
    config_lib.get_config("huge")


def test_config_roundtrips_through_dict():
  for c in config_lib.PRESETS.values():
    assert config_lib.DCAEConfig.from_dict(c.to_dict()) == c


def test_parameter_count_matches_manifest(paper):
  """Every learned official value lands in exactly one Keras variable."""
  manifest = reference.load_manifest()
  learned = {k: s for k, s in manifest.items()
             if not convert.is_derived_buffer(k)}
  mapped = {k: v for k, v, _ in paper.torch_variables()}
  assert set(mapped) == set(learned)
  official_values = sum(int(np.prod(s)) for s in learned.values())
  # Only the lower/upper columns of `quantiles` are not used.
  quantiles = manifest["entropy_bottleneck.quantiles"]
  unused = int(np.prod(quantiles)) - quantiles[0]
  ours = sum(int(np.prod(v.shape)) for v in mapped.values())
  assert ours == official_values - unused
  # And the Keras model has no variable that the official model lacks.
  keras_params = sum(int(np.prod(v.shape)) for v in paper.variables)
  assert keras_params == ours


@pytest.mark.parametrize("size", [(1, 1), (17, 31), (130, 260)])
def test_any_size_runs(tiny, size):
  x = tf.random.uniform((1,) + size + (3,), seed=1)
  out = tiny(x, training=False)
  assert out["x_hat"].shape == x.shape
  assert np.isfinite(out["bpp"].numpy()).all()
  out = tiny(x, training=True)
  assert out["x_hat"].shape == x.shape


def test_paper_preset_runs_on_sizes_the_official_code_rejects(paper):
  # 128x128 crashes the official code (hyper stages at one window).
  out = paper(tf.random.uniform((1, 128, 128, 3), seed=2), training=False)
  assert out["x_hat"].shape == (1, 128, 128, 3)


def test_training_gradients_reach_every_variable(tiny):
  x = tf.random.uniform((2, 32, 48, 3), seed=3)
  with tf.GradientTape() as tape:
    out = tiny(x, training=True)
    loss = tf.reduce_mean(out["bpp"]) + tf.reduce_mean(
        tf.square(out["x_hat"] - x))
  grads = tape.gradient(loss, tiny.trainable_variables)
  missing = [v.name for v, g in zip(tiny.trainable_variables, grads)
             if g is None]
  assert not missing, missing


def test_variable_names_follow_the_layer_structure(tiny):
  """Names are what TensorBoard, checkpoints' readers and the weights'
  fingerprint see: unique, and under the scope of the layer owning them
  (also for layers that are built but never called, like ConvGLU's fc1)."""
  names = [v.name for v in tiny.variables]
  assert len(names) == len(set(names))
  dense = [m for m in tiny.submodules
           if isinstance(m, tf.keras.layers.Dense)]
  assert dense
  for layer in dense:
    assert f"/{layer.name}/kernel:0" in layer.kernel.name, layer.kernel.name


def _policies(layer):
  """The names of the dtype policies of `layer` and every Keras layer in it."""
  return {m.dtype_policy.name for m in [layer, *layer.submodules]
          if isinstance(m, tf.keras.layers.Layer)}


def _check_policies(model, precision):
  """The transforms compute in `precision`; the model itself, the slices
  with the dictionary, and the hyperprior are float32."""
  for transform in (model.g_a, model.g_s, model.h_a, model.h_s_scales,
                    model.h_s_means):
    assert _policies(transform) == {precision}, transform.name
  assert _policies(model.slices) == {"float32"}
  assert model.dtype_policy.name == "float32"
  assert model.hyperprior.variables
  assert all(v.dtype == tf.float32 for v in model.hyperprior.variables)


def test_construction_leaves_the_global_policy_alone_even_in_threads():
  """Layers get their policies explicitly, never through Keras's global
  one: a thread watching the global policy while two threads construct
  mixed-precision models sees it unchanged, and each model has its own
  policies."""
  global_policy = tf.keras.mixed_precision.global_policy
  before = global_policy().name
  precisions = ("mixed_bfloat16", "mixed_float16")
  built, seen = watched_threads.run_watched(
      [functools.partial(DCAE, "tiny", precision=p) for p in precisions],
      lambda: global_policy().name)
  models = dict(zip(precisions, built))
  assert seen == {before}
  assert global_policy().name == before
  for precision, model in models.items():
    _check_policies(model, precision)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_a_mixed_global_policy_reaches_no_layer(precision):
  """A caller's mixed global policy changes no layer's policy: the slices
  stay float32 (as do the outputs), the transforms compute in
  `precision`."""
  previous = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = DCAE("tiny", precision=precision).build_weights()
    assert tf.keras.mixed_precision.global_policy().name == "mixed_float16"
    out = model(tf.random.uniform((1, 32, 32, 3), seed=5),
                return_intermediates=True)
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)
  _check_policies(model, precision)
  assert all(v.dtype == tf.float32 for v in model.weights)
  assert all(v.dtype == tf.float32 for v in out.values())


def test_loader_names_bad_keys(tiny):
  good = convert.to_official_state_dict(tiny)
  report = convert.load_official_weights(
      tiny, {"module." + k: v for k, v in good.items()})
  assert len(report["loaded"]) == len(good)
  broken = dict(good)
  del broken["dt"]
  with pytest.raises(convert.WeightsError, match="missing key 'dt'"):
    convert.load_official_weights(tiny, broken)
  with pytest.raises(convert.WeightsError,
                     match="unexpected key 'foo.weight'"):
    convert.load_official_weights(tiny, dict(good, **{"foo.weight": 1}))
  bad_shape = dict(good, dt=np.ones((3, 3), np.float32))
  with pytest.raises(convert.WeightsError, match="key 'dt' has shape"):
    convert.load_official_weights(tiny, bad_shape)


def test_official_naming_round_trip_is_identity(tiny):
  """Export to official names and load back: no value changes."""
  before = [v.numpy().copy() for v in tiny.variables]
  for v in tiny.trainable_variables:
    v.assign(v + 1.)  # so the load must really write every variable
  state = convert.to_official_state_dict(tiny)
  for v, b in zip(tiny.variables, before):
    v.assign(b)
  for v in tiny.trainable_variables:
    v.assign(v * 0.)
  convert.load_official_weights(tiny, state)
  for b, v in zip(before, tiny.variables):
    if v.trainable:
      np.testing.assert_allclose(v.numpy(), b + 1., rtol=1e-6, atol=1e-6)


def test_legacy_compressai_prior_names_are_accepted(tiny):
  state = convert.to_official_state_dict(tiny)
  legacy = {}
  for k, v in state.items():
    for plural, singular in (("matrices", "_matrix"), ("biases", "_bias"),
                             ("factors", "_factor")):
      if k.startswith(f"entropy_bottleneck.{plural}."):
        k = "entropy_bottleneck." + singular + k.rsplit(".", 1)[1]
    legacy[k] = v
  assert "entropy_bottleneck._matrix0" in legacy
  convert.load_official_weights(tiny, legacy)
