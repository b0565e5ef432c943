"""exact_tables: valid tables, as good as TFC's, the same integers anywhere.

The tables are compared with the ones TFC builds for the same priors
(lengths, offsets and the expected code length of TFC-distributed symbols
under each), and built in fresh interpreters with oneDNN limited to SSE4.1
on one thread, switched off and by default: all must hash to the digest
pinned here. A change of that digest changes the bitstream format (the
tables are part of it) and must be deliberate.
"""
import decimal
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from dcae_tf import config
from dcae_tf import entropy
from dcae_tf import rans
from dcae_tf.codec import exact_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISION = 16
# The official scale table: 64 log-spaced scales from 0.11 to 256.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = "0.11", "256", 64
# Expected code length of TFC-distributed symbols under our tables, at most
# this much above that under TFC's own (relative), or ABSOLUTE_BITS per
# symbol for nearly certain tables (one count there is 1e-5 bits).
RATE_TOLERANCE = 1e-3
ABSOLUTE_BITS = 1e-4
SEED = 2025
# sha256 of `digest()`'s tables: any machine, any oneDNN setting.
GOLDEN_DIGEST = (
    "e4ebd2f76a61c5e8b4f397515ab71a02a0fda810bb04d10fba0148a6c3bc47c9")
ENVIRONMENTS = {"sse41_one_thread": {"ONEDNN_MAX_CPU_ISA": "SSE41",
                                     "TF_NUM_INTRAOP_THREADS": "1"},
                "no_onednn": {"TF_ENABLE_ONEDNN_OPTS": "0"},
                "default": {}}


def official_scales():
  """exp(ln 0.11 + k (ln 256 - ln 0.11) / 63) in decimal, k = 0 .. 63."""
  with decimal.localcontext() as ctx:
    ctx.prec = 40
    low = decimal.Decimal(SCALE_MIN).ln()
    step = (decimal.Decimal(SCALE_MAX).ln() - low) / (SCALE_LEVELS - 1)
    return [float((low + k * step).exp()) for k in range(SCALE_LEVELS)]


def seeded_hyperprior(seed=SEED, preset="tiny"):
  """A hyperprior whose channels differ, from numpy's integer-based
  generator only (no platform math): the same weights everywhere."""
  hyperprior = entropy.HyperpriorModel(config.get_config(preset))
  rng = np.random.default_rng(seed)
  base = hyperprior.prior.base
  for group, low, high in (("_matrices", -2.5, .5), ("_biases", -2., 2.),
                           ("_factors", -2., 2.)):
    for var in getattr(base, group):
      var.assign(rng.uniform(low, high, var.shape).astype(np.float32))
  hyperprior.offset.assign(
      rng.uniform(-.5, .5, hyperprior.offset.shape).astype(np.float32))
  return hyperprior


def arrays(tables):
  """(cdf (T, W), cdf_offset, cdf_length) of `rans.Tables` as numpy."""
  return (tables.cdf.numpy()[:-1], tables.cdf_offset.numpy(),
          tables.cdf_length.numpy())


def digest():
  """sha256 of the official Gaussian tables and a seeded z prior's."""
  h = hashlib.sha256()
  for tables in (exact_tables.gaussian_tables(official_scales(), PRECISION),
                 exact_tables.factorized_tables(seeded_hyperprior(),
                                                PRECISION)):
    for a in arrays(tables):
      h.update(np.ascontiguousarray(a, np.int64).tobytes())
  return h.hexdigest()


def check_valid(tables):
  cdf, offset, length = arrays(tables)
  top = 1 << PRECISION
  assert tables.precision == PRECISION
  for row, n in zip(cdf, length):
    assert row[0] == 0 and row[n - 1] == top
    assert np.all(np.diff(row[:n]) > 0)
    assert np.all(row[n:] == top)
  assert np.all(length >= 3) and offset.shape == length.shape


def distribution(cdf, offset, length):
  """{value: probability} of a table's bins; the overflow bin as None."""
  freq = np.diff(cdf[:length]) / float(1 << PRECISION)
  values = list(range(offset, offset + length - 2)) + [None]
  return dict(zip(values, freq))


def code_lengths(reference, tables):
  """Per table: (bits per symbol under `reference`'s own table, under
  `tables`), the symbols distributed as `reference` gives them."""
  out = []
  for ref, ours in zip(zip(*arrays(reference)), zip(*arrays(tables))):
    p, q = distribution(*ref), distribution(*ours)
    own = -sum(f * np.log2(f) for f in p.values())
    cross = -sum(f * np.log2(q.get(v, q[None])) for v, f in p.items())
    out.append((own, cross))
  return np.array(out)


def check_rate(reference, tables):
  bits = code_lengths(reference, tables)
  own, cross = bits[:, 0], bits[:, 1]
  assert np.all(cross - own <= np.maximum(RATE_TOLERANCE * own,
                                          ABSOLUTE_BITS))
  assert cross.sum() <= own.sum() * (1 + RATE_TOLERANCE)


@pytest.fixture(scope="module")
def gaussian():
  return exact_tables.gaussian_tables(official_scales(), PRECISION)


@pytest.fixture(scope="module")
def hyperprior():
  """The seeded prior with TFC's offsets (its medians), as the codec's."""
  model = seeded_hyperprior()
  model.refresh_offset()
  return model


def test_gaussian_tables_match_tfc(gaussian):
  log_min, log_max = np.log(float(SCALE_MIN)), np.log(float(SCALE_MAX))
  step = (log_max - log_min) / (SCALE_LEVELS - 1)
  model = tfc.LocationScaleIndexedEntropyModel(
      tfc.NoisyNormal, SCALE_LEVELS,
      lambda i: tf.math.exp(log_min + step * i), coding_rank=1,
      compression=True, range_coder_precision=PRECISION)
  tfc_tables = rans.tables_from_tfc(model.cdf.numpy(),
                                    model.cdf_offset.numpy())
  check_valid(gaussian)
  _, offset, length = arrays(gaussian)
  _, tfc_offset, tfc_length = arrays(tfc_tables)
  # Symmetric around 0, TFC's lengths (at most a bin either side apart).
  np.testing.assert_array_equal(length, 3 - 2 * offset)
  assert np.all(np.abs(length - tfc_length) <= 2)
  assert np.all(np.abs(offset - tfc_offset) <= 1)
  check_rate(tfc_tables, gaussian)


def test_factorized_tables_match_tfc(hyperprior):
  offset = tf.convert_to_tensor(hyperprior.offset)

  @tf.function(autograph=False)
  def tfc_tables():  # TFC's tail search, traced (eagerly ~10x slower).
    model = tfc.ContinuousBatchedEntropyModel(
        hyperprior.prior, coding_rank=3, compression=True, stateless=True,
        quantization_offset=offset, range_coder_precision=PRECISION)
    return model.cdf, model.cdf_offset

  cdf, cdf_offset = tfc_tables()
  reference = rans.tables_from_tfc(cdf.numpy(), cdf_offset.numpy())
  tables = exact_tables.factorized_tables(hyperprior, PRECISION)
  check_valid(tables)
  _, ours_offset, ours_length = arrays(tables)
  _, tfc_offset, tfc_length = arrays(reference)
  assert len(set(ours_length)) > 1, "the seeded channels should differ"
  assert np.all(np.abs(ours_offset - tfc_offset) <= 1)
  assert np.all(np.abs(ours_length - tfc_length) <= 2)
  check_rate(reference, tables)


def test_quantized_cdf_corrects_the_total_both_ways():
  total = 1 << PRECISION
  # Many tiny bins are raised to 1 count: the big bin gives counts back.
  many = exact_tables.quantized_cdf([1. - 1e-3] + [1e-3 / 500] * 500,
                                    1e-9, PRECISION)
  # Rounding leaves one count short: the largest bin (the first of
  # ties) gets it.
  thirds = exact_tables.quantized_cdf([1 / 3., 1 / 3., 1 / 3. - 2. ** -15],
                                      2. ** -15, PRECISION)
  for cdf in (many, thirds):
    assert cdf[0] == 0 and cdf[-1] == total and np.all(np.diff(cdf) >= 1)
  np.testing.assert_array_equal(np.diff(thirds),
                                [21846, 21845, 21843, 2])
  assert np.diff(many)[0] == total - 501
  with pytest.raises(ValueError, match="do not fit"):
    exact_tables.quantized_cdf(np.full(8, 1 / 8.), 0., 3)


def test_tables_are_the_same_everywhere():
  """Fresh interpreters with different oneDNN settings, and the digest
  pinned: what another machine must also build."""
  script = ("from tests.test_exact_tables import digest; print(digest())")
  runs = {}
  for name, extra in ENVIRONMENTS.items():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    runs[name] = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
  digests = {}
  for name, run in runs.items():
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err[-2000:]
    digests[name] = out.strip().splitlines()[-1]
  assert len(set(digests.values())) == 1, digests
  assert digests["default"] == GOLDEN_DIGEST


@pytest.mark.parametrize("scales, message", [
    ([], "empty"), ([0.11, 0.], "positive"), ([-1.], "positive"),
    ([float("nan")], "positive")])
def test_bad_scales_raise(scales, message):
  with pytest.raises(ValueError, match=message):
    exact_tables.gaussian_tables(scales, PRECISION)


def test_bad_tail_mass_raises():
  with pytest.raises(ValueError, match="tail_mass"):
    exact_tables.gaussian_tables([1.], PRECISION, tail_mass=0.)


def test_factorized_range_is_clipped_to_the_grid():
  """A prior wider than the search grid: its tables stop at Z_RANGE and
  the rest of its mass is the overflow bin's (values there stay codable)."""
  model = seeded_hyperprior()
  matrix = model.prior.base._matrices[0]  # pylint: disable=protected-access
  # softplus(-9) ~ 1e-4: a prior thousands of integers wide.
  matrix.assign(np.full(matrix.shape, -9., np.float32))
  tables = exact_tables.factorized_tables(model, PRECISION)
  check_valid(tables)
  cdf, offset, length = arrays(tables)
  limit = exact_tables.Z_RANGE
  assert np.all(offset >= -limit)
  assert np.all(offset + length - 3 <= limit)
  assert np.any(offset == -limit)
  overflow = cdf[np.arange(len(length)), length - 1] - cdf[
      np.arange(len(length)), length - 2]
  assert np.all(overflow > (1 << PRECISION) // 2)
