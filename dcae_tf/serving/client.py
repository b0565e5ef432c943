"""Compatibility names: the gRPC client moved to `dcae_tf.runtime.client`."""
# pylint: disable=unused-import,wildcard-import,unused-wildcard-import
from dcae_tf.runtime.client import *  # noqa: F401,F403
