"""Bjontegaard deltas (BD-rate, BD-PSNR / BD-MS-SSIM-dB) between RD curves.

Uses the `bjontegaard` package (akima or pchip interpolation of log-rate, the
modern replacement of the original cubic fit; `cubic` is accepted too). Sign
convention: BD-rate < 0 means the test curve needs fewer bits than the anchor
for the same quality; BD-metric > 0 means higher quality at the same rate.

Real curves are not always well behaved, so before interpolating we:
* drop points with a non-finite rate or quality (e.g. a lossless PSNR = inf),
* sort by rate and drop points whose quality does not strictly increase with
  rate (interpolation needs a monotone curve), and
* need >= 2 points per curve and overlapping ranges.
Anything that makes a delta undefined gives NaN and a `note` explaining why;
a partial overlap (< `MIN_OVERLAP` of the joint range) keeps the value and
says so in the note.
"""
import dataclasses
import math
import warnings

import bjontegaard
import numpy as np

BD_METHODS = ("akima", "pchip", "cubic")
DEFAULT_METHOD = "akima"
# Below this relative overlap of the two curves the value is extrapolation-
# free but covers only part of the range: reported with a note.
MIN_OVERLAP = 0.75
MIN_POINTS = 2


@dataclasses.dataclass
class BDResult:
  """Deltas of one test curve against one anchor curve for one metric."""
  test: str
  anchor: str
  metric: str
  bd_rate: float      # percent
  bd_metric: float    # metric units (dB)
  method: str
  test_points: int
  anchor_points: int
  note: str = ""


def clean_curve(rates, qualities):
  """Monotone, finite (rate, quality) arrays sorted by rate, and a note."""
  rates = np.asarray(rates, np.float64)
  qualities = np.asarray(qualities, np.float64)
  if rates.shape != qualities.shape:
    raise ValueError("rates and qualities must have the same length")
  notes = []
  finite = np.isfinite(rates) & np.isfinite(qualities) & (rates > 0)
  if not finite.all():
    notes.append(f"dropped {int((~finite).sum())} non-finite point(s)")
  rates, qualities = rates[finite], qualities[finite]
  order = np.lexsort((qualities, rates))
  rates, qualities = rates[order], qualities[order]
  keep = []
  for i, q in enumerate(qualities):
    if not keep or (q > qualities[keep[-1]] and rates[i] > rates[keep[-1]]):
      keep.append(i)
  dropped = len(rates) - len(keep)
  if dropped:
    notes.append(f"dropped {dropped} non-monotone point(s)")
  return rates[keep], qualities[keep], "; ".join(notes)


def _overlap(a, b):
  lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
  total = max(a.max(), b.max()) - min(a.min(), b.min())
  return max(hi - lo, 0.0) / total if total > 0 else 0.0


def _delta(fn, rate_a, q_a, rate_t, q_t, method):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return float(fn(rate_a, q_a, rate_t, q_t, method=method,
                    require_matching_points=False, min_overlap=0.0))


def bd(test_rates, test_qualities, anchor_rates, anchor_qualities,
       method=DEFAULT_METHOD, test="test", anchor="anchor", metric="psnr"):
  """BD-rate (%) and BD-metric of a test curve against an anchor curve."""
  if method not in BD_METHODS:
    raise ValueError(f"unknown BD method {method!r}; choose from "
                     f"{', '.join(BD_METHODS)}")
  rate_t, q_t, note_t = clean_curve(test_rates, test_qualities)
  rate_a, q_a, note_a = clean_curve(anchor_rates, anchor_qualities)
  notes = [f"test: {note_t}"] if note_t else []
  if note_a:
    notes.append(f"anchor: {note_a}")
  result = BDResult(test, anchor, metric, math.nan, math.nan, method,
                    len(rate_t), len(rate_a))
  if len(rate_t) < MIN_POINTS or len(rate_a) < MIN_POINTS:
    notes.append(f"need >= {MIN_POINTS} RD points per curve")
    result.note = "; ".join(notes)
    return result
  # BD-rate integrates log-rate over the common quality range; BD-metric
  # integrates quality over the common log-rate range.
  log_t, log_a = np.log10(rate_t), np.log10(rate_a)
  for field, fn, label, axis, overlap in (
      ("bd_rate", bjontegaard.bd_rate, "BD-rate", "quality",
       _overlap(q_t, q_a)),
      ("bd_metric", bjontegaard.bd_psnr, f"BD-{metric}", "log-rate",
       _overlap(log_t, log_a))):
    if overlap <= 0:
      notes.append(f"{axis} ranges do not overlap: no {label}")
      continue
    setattr(result, field, _delta(fn, rate_a, q_a, rate_t, q_t, method))
    if overlap < MIN_OVERLAP:
      notes.append(f"{label} over {overlap:.0%} of the {axis} range")
  result.note = "; ".join(notes)
  return result
