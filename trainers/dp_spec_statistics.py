"""DP statistics a user reads while writing a spec, charged to the release.

`clinical-dp spec draft --dp-bounds EPSILON` asks for the bounds of the numeric columns the
public library cannot match and the categories of categorical columns no public code list
holds; `clinical-dp spec check` asks how much of each declared range the values use and
whether a numeric column holds whole numbers or only 0 and 1. Each is a statistic of the
patients, so each is answered by one Gaussian mechanism over all of the columns asked
about, and its privacy record goes into the spec (`privacy_spent`), from where
ReleasePusher adds it to the release's total (components/release.py). The trap avoided is
smartnoise's `preprocessor_eps`, silently taken from the user's budget: here the charge
is stated, recorded and summed.

Mechanism. Every released count is a sum over rows with Gaussian noise of one standard
deviation `noise` (`noise_multiplier` times the L2 sensitivity below), calibrated with the
project's one accountant function (trainers/accounting.gaussian_noise_for_epsilon).

Sensitivity under `one patient added or removed` (clinical_dp/sensitivity.py), m the
number of histograms and counts released, k the most rows one patient has:
* a static column's histogram: a row adds 1 to one bin (or nothing when the cell is
  empty); a series' histogram pools its V visits, each observed visit adding 1 / V, so a
  row's vector has total at most 1 and L2 norm at most 1; a count of rows that satisfy a
  rule (a value not a whole number, a value other than 0 and 1): 1. A row therefore moves
  the m released vectors by an L2 norm of at most sqrt(m), a patient by k sqrt(m)
  (`sensitivity.histograms`); tests/test_dp_spec_statistics.py enumerates neighbouring
  tables and checks it.
* Numeric histograms are over a PUBLIC grid (`GRID`, 1-2-5 steps from 1e-3 to 5e8 of
  either sign, and 0), so no bin exists because of a patient.
* Categorical histograms are keyed by the values in the data, so a patient can bring a
  value no one else has: a category is released only when its noisy count passes a
  threshold t (partition selection). The value absent from the neighbour is released with
  probability P(N(0, noise) > t - 1), at most delta_threshold / c for each of the patient's
  c categorical columns (here k = 1 rows per patient for simplicity of the bound: with
  k > 1 the count moves by k and t is raised by k - 1). The record's delta is the
  Gaussian part's plus delta_threshold.
Everything after the noise (thresholds, widening, quantiles) is post-processing.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from clinical_dp import secret_seed, sensitivity
from trainers import accounting

# Public bin edges of the numeric histograms: 0 and +-{1, 2, 5} x 10^p, p = -3 .. 8.
_STEPS = np.array([m * 10.0 ** p for p in range(-3, 9) for m in (1, 2, 5)])
GRID = np.concatenate([-_STEPS[::-1], [0.0], _STEPS])
MECHANISM = "Gaussian histograms and counts"


@dataclasses.dataclass(frozen=True)
class DpSpecConfig:
  """How a spec's DP statistics are made."""
  epsilon: float
  delta: float = 1e-6
  # Share of delta for the categories' partition selection (when there are any).
  threshold_delta_share: float = 0.5
  # A grid bin counts as holding values when its noisy count passes the noise's
  # (1 - bin_false_positive / bins) quantile: a spurious bin in 1 of 20 columns.
  bin_false_positive: float = 0.05
  # Bounds are widened by this many grid steps beyond the bins that hold values (3 steps:
  # a factor 10), so that the few patients in bins under the threshold stay inside.
  widen_steps: int = 3
  # `spec check`: equal bins over a declared range, to see where the values are.
  range_bins: int = 50
  seed: Optional[int] = None

  def __post_init__(self):
    if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
      raise ValueError(f"epsilon must be a positive number, got {self.epsilon}")
    if not 0 < self.delta < 1:
      raise ValueError(f"delta must be in (0, 1), got {self.delta}")


@dataclasses.dataclass
class GaussianRelease:
  """The noise of one mechanism over m released vectors, and its record."""
  config: DpSpecConfig
  released: int
  rows_per_patient: int
  categorical_columns: int
  purpose: str
  columns: Sequence[str]

  def __post_init__(self):
    share = self.config.threshold_delta_share if self.categorical_columns else 0.0
    self.gaussian_delta = self.config.delta * (1 - share)
    self.threshold_delta = self.config.delta * share
    self.l2_sensitivity = sensitivity.histograms(self.released, self.rows_per_patient)
    self.noise_multiplier = accounting.gaussian_noise_for_epsilon(self.config.epsilon,
                                                                  self.gaussian_delta)
    self.noise = self.noise_multiplier * self.l2_sensitivity
    self.rng = np.random.default_rng(secret_seed.resolve(self.config.seed))

  def noisy(self, counts: np.ndarray) -> np.ndarray:
    return counts + self.rng.normal(0.0, self.noise, size=np.shape(counts))

  def category_threshold(self) -> float:
    """t with P(N(0, noise) > t - k) = threshold_delta / (categorical columns)."""
    tail = self.threshold_delta / max(self.categorical_columns, 1)
    return self.rows_per_patient + self.noise * float(stats.norm.isf(tail))

  def record(self) -> Dict:
    """The privacy record the spec carries (`privacy_spent`) and the release adds in."""
    return {
        "epsilon": self.config.epsilon, "delta": self.config.delta, "unit": "patient",
        "relation": sensitivity.RELATION, "accountant": "rdp", "purpose": self.purpose,
        "mechanism": MECHANISM + (" with thresholded categories" if self.categorical_columns
                                  else ""),
        "released_vectors": self.released, "max_rows_per_patient": self.rows_per_patient,
        "l2_sensitivity": round(self.l2_sensitivity, 6),
        "noise_multiplier": round(self.noise_multiplier, 6),
        "columns": list(self.columns), "randomness": secret_seed.describe(self.config.seed),
        "date": datetime.date.today().isoformat()}


def rows_per_patient(frame: pd.DataFrame, id_column: Optional[str]) -> int:
  """k: the most rows one patient id has (1 without an id column), as the trainers read it."""
  if not id_column or id_column not in frame or frame.empty:
    return 1
  return int(frame[id_column].value_counts().max())


def _numbers(frame: pd.DataFrame, columns: Sequence[str]) -> List[np.ndarray]:
  return [pd.to_numeric(frame[c], errors="coerce").to_numpy(float) for c in columns]


def _grid_histogram(values: Sequence[np.ndarray]) -> np.ndarray:
  """Counts over GRID's bins (below the first edge, between edges, above the last) of a
  column's values, or a series' visits pooled with weight 1 / V each."""
  counts = np.zeros(len(GRID) + 1)
  for column in values:
    observed = column[~np.isnan(column)]
    np.add.at(counts, np.searchsorted(GRID, observed, side="right"), 1.0 / len(values))
  return counts


def _bounds_from(noisy: np.ndarray, threshold: float, widen: int
                 ) -> Optional[Tuple[float, float]]:
  """(min, max) around the bins whose noisy count passes threshold, widened by `widen`
  grid steps; a column with no value below 0 keeps 0 as its lower bound."""
  held = np.flatnonzero(noisy > threshold)
  if held.size == 0:
    return None
  zero = int(np.searchsorted(GRID, 0.0))  # GRID[zero] == 0
  low_bin, high_bin = held[0], held[-1]  # bin b holds [GRID[b-1], GRID[b])
  low = 0.0 if low_bin > zero else GRID[max(low_bin - 1 - widen, 0)]
  high = GRID[min(high_bin + widen, len(GRID) - 1)]
  if high <= low:
    high = GRID[min(int(np.searchsorted(GRID, low, side="right")) + widen, len(GRID) - 1)]
  return float(low), float(high)


@dataclasses.dataclass
class DraftEstimates:
  """What `spec draft --dp-bounds` writes where the library and code lists are silent."""
  bounds: Dict[str, Tuple[float, float]]  # by spec name (a column, or a series' name)
  categories: Dict[str, List[str]]
  record: Dict


def draft_counts(frame: pd.DataFrame, numeric: Dict[str, Sequence[str]],
                 categorical: Sequence[str]) -> Dict[str, pd.Series]:
  """What `spec draft --dp-bounds` adds noise to, before the noise: per numeric entry its
  histogram over GRID's bins (indexed by bin), per categorical column its values' counts
  (indexed by value: the keys a patient can bring)."""
  counts = {name: pd.Series(_grid_histogram(_numbers(frame, columns)))
            for name, columns in numeric.items()}
  for column in categorical:
    cells = frame[column].dropna().astype(str).str.strip()
    counts[column] = cells[cells != ""].value_counts().astype(float)
  return counts


def draft_estimates(frame: pd.DataFrame, numeric: Dict[str, Sequence[str]],
                    categorical: Sequence[str], config: DpSpecConfig,
                    id_column: Optional[str] = None) -> DraftEstimates:
  """DP bounds for `numeric` ({spec name: its columns}: one for a static column, a
  series' visits) and DP category lists for `categorical`, in one mechanism."""
  release = GaussianRelease(
      config, len(numeric) + len(categorical), rows_per_patient(frame, id_column),
      len(categorical), "spec draft --dp-bounds",
      [c for columns in numeric.values() for c in columns] + list(categorical))
  counts = draft_counts(frame, numeric, categorical)
  bin_threshold = release.noise * float(stats.norm.isf(config.bin_false_positive
                                                       / (len(GRID) + 1)))
  bounds = {}
  for name in numeric:
    found = _bounds_from(release.noisy(counts[name].to_numpy()), bin_threshold,
                         config.widen_steps)
    if found is not None:
      bounds[name] = found
  threshold = release.category_threshold()
  categories = {}
  for column in categorical:
    noisy = release.noisy(counts[column].to_numpy())
    kept = sorted(str(value) for value, count in zip(counts[column].index, noisy)
                  if count > threshold)
    if kept:
      categories[column] = kept
  return DraftEstimates(bounds, categories, release.record())


@dataclasses.dataclass(frozen=True)
class ColumnUse:
  """What `spec check` learns of one numeric spec entry from noisy counts; None where the
  noise is too large for the values there are."""
  name: str
  in_use: Optional[Tuple[float, float]]  # the bins whose noisy count passes the noise
  range_share: Optional[float]  # of [min, max] that in_use spans
  looks_whole: Optional[bool]  # noisy count of values not whole within the noise of 0
  looks_binary: Optional[bool]  # the same for values other than 0 and 1


def check_counts(frame: pd.DataFrame,
                 numeric: Dict[str, Tuple[Sequence[str], float, float]], bins: int
                 ) -> Dict[str, np.ndarray]:
  """What `spec check` adds noise to, per numeric entry ({spec name: (its columns, min,
  max)}): its values' histogram over `bins` equal bins of [min, max] (values outside
  clipped to the ends), then the counts of values observed, of values not whole, and of
  values other than 0 and 1: CHECK_VECTORS released vectors; a series' visits each weigh
  1 / V."""
  counts = {}
  for name, (columns, low, high) in numeric.items():
    values = _numbers(frame, columns)
    observed = np.concatenate([v[~np.isnan(v)] for v in values])
    histogram = np.histogram(np.clip(observed, low, high), np.linspace(low, high, bins + 1))[0]
    rules = [observed.size, np.sum(observed != np.round(observed)),
             np.sum((observed != 0) & (observed != 1))]
    counts[name] = np.concatenate([histogram, rules]).astype(float) / len(values)
  return counts


CHECK_VECTORS = 4  # per entry: the histogram and three counts


def column_use(frame: pd.DataFrame, numeric: Dict[str, Tuple[Sequence[str], float, float]],
               config: DpSpecConfig, id_column: Optional[str] = None
               ) -> Tuple[List[ColumnUse], Dict]:
  """For each numeric entry ({spec name: (its columns, min, max)}): the span of its
  declared range that holds values, and whether its values look whole or 0 / 1, from one
  Gaussian release of check_counts."""
  release = GaussianRelease(config, CHECK_VECTORS * len(numeric),
                            rows_per_patient(frame, id_column), 0, "spec check",
                            [c for columns, _, _ in numeric.values() for c in columns])
  bins = config.range_bins
  held_threshold = release.noise * float(stats.norm.isf(config.bin_false_positive / bins))
  # A count is read as 0 when it is within two noise deviations of it, and a rule is only
  # judged where the values outnumber the noise tenfold.
  zero, enough = 2 * release.noise, 10 * release.noise
  found = []
  for name, counts in check_counts(frame, numeric, bins).items():
    _, low, high = numeric[name]
    noisy = release.noisy(counts)
    held = np.flatnonzero(noisy[:bins] > held_threshold)
    observed, not_whole, not_binary = noisy[bins:]
    in_use = share = None
    if held.size:
      edges = np.linspace(low, high, bins + 1)
      in_use = (float(edges[held[0]]), float(edges[held[-1] + 1]))
      share = (in_use[1] - in_use[0]) / (high - low)
    judged = observed > enough
    found.append(ColumnUse(name, in_use, share, bool(not_whole < zero) if judged else None,
                           bool(not_binary < zero) if judged else None))
  return found, release.record()


def check_warnings(uses: Sequence[ColumnUse], integer: Dict[str, bool],
                   narrow_share: float = 0.1) -> List[str]:
  """`spec check`'s warnings, each with its fix: values of a column not declared integer
  that fill under `narrow_share` of its declared range; a column not declared integer
  whose values look whole, or whose values look like 0 and 1 only."""
  found = []
  unjudged = [use.name for use in uses if use.looks_whole is None]
  if unjudged:
    found.append(f"{', '.join(unjudged)}: too few values against the noise to judge whether "
                 "they are whole or 0 / 1 at this epsilon (raise --epsilon, or check by hand)")
  for use in uses:
    if use.looks_whole is None:
      pass
    elif use.looks_binary:
      found.append(f"{use.name}: its values look like 0 and 1 only (DP estimate); a yes / no "
                   f"column is categorical: `type: categorical, values: [0, 1]`")
    elif use.looks_whole and not integer.get(use.name):
      found.append(f"{use.name}: its values look whole (DP estimate); if it counts something "
                   "or is a year or a score, add `integer: true` so the synthetic values are "
                   "whole too")
    # A whole-number column (a score, a count) keeps its values as atoms of their own
    # bins, so its defined range costs nothing to keep.
    if use.range_share is not None and use.range_share < narrow_share and not integer.get(
        use.name):
      low, high = use.in_use
      found.append(
          f"{use.name}: most of its values lie in about [{low:.4g}, {high:.4g}] (DP estimate), "
          f"{use.range_share:.0%} of the declared range; narrow min / max to a public range "
          "that still holds every possible value (the assay's reportable range, a data "
          "dictionary), or write them with `spec draft --dp-bounds`: the generator's bins "
          "follow the data, but a far wider range costs resolution")
  return found
