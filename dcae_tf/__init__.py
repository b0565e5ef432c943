"""dcae_tf: DCAE learned image compression on TensorFlow Compression."""
from dcae_tf.config import DCAEConfig, PRESETS, get_config

__version__ = "0.1.0"
