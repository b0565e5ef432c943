"""An export as the source of a model's weights (`runtime.weights_source`):
re-exports and fine-tunes start from it, so weights are kept once."""
import json
import shutil

import pytest
import tensorflow as tf

from dcae_tf import export
from dcae_tf.codec import DCAECodec, codec_from_model
from dcae_tf.codec import metadata as metadata_lib
from dcae_tf.codec import weights
from dcae_tf.model import DCAE
from dcae_tf.runtime import layout
from dcae_tf.runtime import weights_source
from tests.images import smooth_image


@pytest.fixture(name="exported", scope="module",
                params=[metadata_lib.FLOAT16, metadata_lib.FLOAT32])
def fixture_exported(request, tmp_path_factory):
  """(model folder, its codec, an image) per storage dtype."""
  tf.keras.utils.set_random_seed(5)
  model = weights.with_weight_dtype(DCAE("tiny").build_weights(),
                                    request.param)
  codec = DCAECodec(model, name="source", lmbda=0.02, metric="mse")
  base = str(tmp_path_factory.mktemp("exports") / "source")
  export.save_versioned(codec, base)
  return base, codec, smooth_image(24, 40, seed=3)


def _reexported(base):
  """(the codec a re-export of `base` would save, its load metadata)."""
  model, meta = weights_source.load_model(base)
  assert all(v.dtype == tf.float32 for v in model.variables)
  return codec_from_model(model, meta, name="source",
                          weight_dtype=meta["weight_dtype"]), meta


def test_reexport_reproduces_the_weights(exported):
  base, codec, _ = exported
  assert weights_source.is_export(base)
  again, meta = _reexported(base)
  assert meta["same_fingerprint"]
  assert (meta["preset"], meta["lmbda"], meta["metric"]) == ("tiny", 0.02,
                                                             "mse")
  assert meta["weight_dtype"] == weights.storage_dtype(codec.model)
  assert again.fingerprint == codec.fingerprint
  assert again.metadata == codec.metadata
  assert len(again.model.variables) == len(codec.model.variables)
  for a, b in zip(again.model.variables, codec.model.variables):
    assert a.dtype == b.dtype and a.name == b.name
    tf.debugging.assert_equal(a, b)
  # A version directory works as well as the model folder.
  version_dir = f"{base}/{layout.complete_versions(base)[-1]}"
  _, meta = weights_source.load_model(version_dir)
  assert meta["version_dir"] == version_dir


# Bitstreams of the shipped storage (float16); the same weights in float32
# code alike (the test above: identical variables and fingerprint).
@pytest.mark.parametrize("exported", [metadata_lib.FLOAT16], indirect=True)
def test_reexport_writes_the_same_bitstreams(exported):
  base, codec, image = exported
  again, _ = _reexported(base)
  assert again.compress(image).numpy() == codec.compress(image).numpy()


def test_what_is_not_an_export_is_refused(tmp_path, exported):
  assert not weights_source.is_export(str(tmp_path))
  with pytest.raises(layout.ExportError, match="no complete export version"):
    weights_source.load_model(str(tmp_path))
  base, _, _ = exported
  # The variables of another preset do not fit.
  version_dir = f"{base}/{layout.complete_versions(base)[-1]}"
  metadata = layout.read_metadata(version_dir)
  other = tmp_path / "other"
  other.mkdir()
  shutil.copytree(f"{version_dir}/variables", other / "variables")
  (other / layout.SAVED_MODEL_FILENAME).write_bytes(b"")
  layout.write_metadata(str(other), json.dumps(dict(metadata, preset="small")))
  with pytest.raises(layout.ExportError, match="not those of a 'small'"):
    weights_source.load_model(str(other))
