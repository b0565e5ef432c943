"""How a codec computes its entropy parameters, and the fingerprint that
names the weights, the architecture and that arithmetic.

A decoder must compute the encoder's means and scales bit for bit, so
anything that changes them, even in the last bits, changes the fingerprint
a bitstream carries: a file of one version is refused by another, never
mis-decoded.
"""
import hashlib

import numpy as np

from dcae_tf.codec import container

# Bumped whenever the code computes a model's outputs from the same weights
# differently, even in the last bits: the means and scales the range coder
# uses must be the encoder's bit for bit, so a bitstream of one version must
# be refused (the fingerprint differs), not mis-decoded, by another.
# 2 (2026-11-26): the MLP's layer norm is folded into fc1.
# 3 (2026-11-26): that layer norm divides by sqrt instead of using rsqrt,
#   and Swin blocks run over bands of rows at inference.
# 4 (2026-12-07): the entropy parameters in exact arithmetic (`exact`):
#   the same integers on every machine.
NUMERICS_VERSION = 4


# How a codec computes its entropy parameters: "exact" (`layers.exact`, the
# same integers on every machine: what codecs, exports and servers use) or
# "float", the float32 arithmetic of training, whose bitstreams open only
# where the same kernels run: kept to measure what exactness costs
# (bench/latency.py, bench/exact_rate.py).
EXACT, FLOAT = "exact", "float"
NUMERICS = (EXACT, FLOAT)


def weights_fingerprint(model, numerics=EXACT):
  """16 hex digits identifying the weights, architecture and arithmetic."""
  h = hashlib.sha256(repr(sorted(model.config.to_dict().items())).encode())
  h.update(f"numerics {NUMERICS_VERSION}".encode())
  if numerics != EXACT:
    h.update(numerics.encode())
  for v in model.variables:
    h.update(v.name.encode())
    h.update(np.ascontiguousarray(v.numpy()).tobytes())
  return h.hexdigest()[:2 * container.FINGERPRINT_SIZE]
