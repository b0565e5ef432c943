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
  """(model folder, its codec, a bitstream of it) per storage dtype."""
  tf.keras.utils.set_random_seed(5)
  model = weights.with_weight_dtype(DCAE("tiny").build_weights(),
                                    request.param)
  codec = DCAECodec(model, name="source", lmbda=0.02, metric="mse")
  base = str(tmp_path_factory.mktemp("exports") / "source")
  export.save_versioned(codec, base)
  image = smooth_image(24, 40, seed=3)
  return base, codec, image, codec.compress(image).numpy()


def test_reexport_reproduces_the_weights_and_bitstreams(exported):
  base, codec, image, data = exported
  assert weights_source.is_export(base)
  model, meta = weights_source.load_model(base)
  assert meta["same_fingerprint"]
  assert (meta["preset"], meta["lmbda"], meta["metric"]) == ("tiny", 0.02,
                                                             "mse")
  assert meta["weight_dtype"] == weights.storage_dtype(codec.model)
  assert all(v.dtype == tf.float32 for v in model.variables)
  again = codec_from_model(model, meta, name="source",
                           weight_dtype=meta["weight_dtype"])
  assert again.fingerprint == codec.fingerprint
  assert again.compress(image).numpy() == data
  # A version directory works as well as the model folder.
  version_dir = f"{base}/{layout.complete_versions(base)[-1]}"
  _, meta = weights_source.load_model(version_dir)
  assert meta["version_dir"] == version_dir


def test_what_is_not_an_export_is_refused(tmp_path, exported):
  assert not weights_source.is_export(str(tmp_path))
  with pytest.raises(layout.ExportError, match="no complete export version"):
    weights_source.load_model(str(tmp_path))
  base, _, _, _ = exported
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
