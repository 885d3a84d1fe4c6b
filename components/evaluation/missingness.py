"""Missingness fidelity: do synthetic patients have holes where real ones do?

With `missing: model` in the spec, patients with empty cells are kept and the generator
models the holes (an indicator per static column, a dropout code for the series). The
value-level fidelity measures (components/evaluation/fidelity.py) compare only observed
values, so these measures compare the holes themselves, real vs synthetic:

- missing rate per column, overall and per label class, and their absolute difference
  (SDMetrics' MissingValueSimilarity is 1 minus this difference per column);
- co-missingness: the correlation matrices of the missingness indicators, compared entry
  by entry (which columns go missing together);
- missingness patterns (the tuple of indicators of a row), compared by total variation
  distance (Mohapatra et al., "Differentially Private Data Generation with Missing Data",
  PVLDB 2024, evaluate a generator by how well it keeps the joint missingness structure);
- for the series: monotone dropout (how many rows have a visit observed after a missing
  one) and the dropout curve (the share of patients still observed at each visit).

Pure pandas / NumPy; every result is JSON-safe (no NaN: a measure with nothing to
measure is None, and tables without any hole give zeros).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from clinical_dp.spec import DatasetSpec

# How trainers.features.encode_table fills holes before a model sees them (the report says it).
MODEL_ENCODING_RULE = (
    "missing values: a number filled with the public lower bound, a category all zeros, a "
    "series carried forward from its last observed visit; each static column gains a "
    "missing indicator and the series a dropout code (visits observed); the same rule for "
    "real and synthetic tables")


def missing_mask(table: pd.DataFrame, columns: List[str]) -> pd.DataFrame:
  """True where a cell is empty: NaN, None, pandas' <NA>, or a blank string (how
  encode_table writes a missing category)."""
  def empty(values: pd.Series) -> pd.Series:
    if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
      return values.isna()
    blank = values.map(lambda v: isinstance(v, str) and not v.strip(), na_action="ignore")
    return values.isna() | blank.fillna(False).astype(bool)
  return pd.DataFrame({c: empty(table[c]) for c in columns}, index=table.index)


def _share(mask) -> Optional[float]:
  """The mean of a boolean array, None when it is empty (a rate of nothing)."""
  mask = np.asarray(mask, bool)
  return float(mask.mean()) if mask.size else None


def _difference(real: Optional[float], synthetic: Optional[float]) -> Optional[float]:
  return None if real is None or synthetic is None else abs(real - synthetic)


def _classes(table: pd.DataFrame, spec: DatasetSpec) -> Dict[str, np.ndarray]:
  """{label as text: rows of that class}, negative class first (as fidelity.py keys them)."""
  labels = table[spec.label_column].astype(str).to_numpy()
  return {str(v): labels == str(v) for v in (spec.label_negative, spec.label_positive)}


def _rates(real: pd.DataFrame, synthetic: pd.DataFrame, real_classes: Dict[str, np.ndarray],
           synthetic_classes: Dict[str, np.ndarray]) -> Dict[str, Dict]:
  """{column: real and synthetic missing rates and their difference, overall and by class}."""
  columns = {}
  for column in real.columns:
    r, s = _share(real[column]), _share(synthetic[column])
    by_class = {}
    for label, rows in real_classes.items():
      cr = _share(real[column].to_numpy()[rows])
      cs = _share(synthetic[column].to_numpy()[synthetic_classes[label]])
      by_class[label] = {"real": cr, "synthetic": cs, "difference": _difference(cr, cs)}
    columns[column] = {"real": r, "synthetic": s, "difference": _difference(r, s),
                       "by_class": by_class}
  return columns


def indicator_correlation(mask: pd.DataFrame) -> np.ndarray:
  """Pearson correlation between the columns' missingness indicators.

  An indicator that is constant in the table (a column never, or always, missing there)
  has no defined correlation; it is taken as 0 with every other column (1 with itself),
  so that a column missing in one table and never in the other still counts.
  """
  indicators = mask.to_numpy(float)
  result = np.eye(indicators.shape[1])
  varying = np.flatnonzero(indicators.std(axis=0) > 0) if len(indicators) else []
  if len(varying) >= 2:
    result[np.ix_(varying, varying)] = np.corrcoef(indicators[:, varying], rowvar=False)
  return result


# Columns missing in fewer rows than this in either table are left out of the
# co-missingness comparison: a correlation of a handful of holes is noise (two visit-0
# columns missing in 3 of 9000 synthetic rows, together, correlate 1 against a real 0);
# their rates are compared per column instead.
CO_MISSINGNESS_MIN_RATE = 0.01


def _co_missingness(real: pd.DataFrame, synthetic: pd.DataFrame) -> Dict:
  """The largest absolute entry difference of the indicator correlation matrices, over
  the columns missing in at least CO_MISSINGNESS_MIN_RATE of the rows of both tables,
  and the pair of columns where it is."""
  kept = [c for c in real.columns if min(real[c].mean() if len(real) else 0.0,
                                         synthetic[c].mean() if len(synthetic) else 0.0)
          >= CO_MISSINGNESS_MIN_RATE]
  if len(kept) < 2:
    return {"error": 0.0, "columns": []}
  real, synthetic = real[kept], synthetic[kept]
  gap = np.abs(indicator_correlation(real) - indicator_correlation(synthetic))
  i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
  return {"error": float(gap[i, j]),
          "columns": [real.columns[i], real.columns[j]] if gap[i, j] > 0 else []}


def _patterns(mask: pd.DataFrame) -> pd.Series:
  """Share of the rows with each missingness pattern (a row's indicators as 0/1 text)."""
  codes = ["".join(row) for row in np.where(mask.to_numpy(bool), "1", "0")]
  return pd.Series(codes, dtype=object).value_counts(normalize=True)


def pattern_tvd(real: pd.DataFrame, synthetic: pd.DataFrame) -> Optional[float]:
  """Total variation distance between the distributions of missingness patterns: half the
  L1 distance between the pattern frequencies (0 same, 1 disjoint); None for an empty table."""
  if not len(real) or not len(synthetic):
    return None
  p, q = _patterns(real), _patterns(synthetic)
  return float(0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p.index) | set(q.index)))


def _series_missing(mask: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
  """(rows, series, visits) booleans: True where the visit of the series is empty."""
  return np.stack([mask[list(s.columns)].to_numpy(bool) for s in spec.series], axis=1)


def _violations(missing: np.ndarray) -> Dict:
  """Rows where some series has a visit observed after one of its missing visits (an
  intermittent hole): count and share. Monotone dropout has none."""
  # A missing visit before the current one, per series: running "any" along the visits.
  missing_before = np.logical_or.accumulate(missing, axis=2)[:, :, :-1]
  broken = (missing_before & ~missing[:, :, 1:]).any(axis=(1, 2))
  return {"rows": int(broken.sum()), "share": float(broken.mean()) if len(broken) else 0.0}


def _visits_observed(missing: np.ndarray) -> np.ndarray:
  """Per row, the last visit (1-based) where any series is observed; 0 if none is."""
  observed = ~missing.all(axis=1)  # (rows, visits)
  last = observed.shape[1] - np.argmax(observed[:, ::-1], axis=1)
  return np.where(observed.any(axis=1), last, 0)


def _curve(visits: np.ndarray, rows: np.ndarray, num_visits: int) -> Optional[List[float]]:
  """Share of the rows still observed at each visit (at or before their last observed one)."""
  kept = visits[rows]
  if not len(kept):
    return None
  return [float((kept >= v).mean()) for v in range(1, num_visits + 1)]


def _curve_pair(real: np.ndarray, synthetic: np.ndarray, real_rows: np.ndarray,
                synthetic_rows: np.ndarray, num_visits: int) -> Dict:
  r = _curve(real, real_rows, num_visits)
  s = _curve(synthetic, synthetic_rows, num_visits)
  error = None if r is None or s is None else max(abs(a - b) for a, b in zip(r, s))
  return {"real": r, "synthetic": s, "max_error": error}


def _dropout(real: np.ndarray, synthetic: np.ndarray, real_classes: Dict[str, np.ndarray],
             synthetic_classes: Dict[str, np.ndarray], num_visits: int) -> Dict:
  """The dropout curves overall and per class, real and synthetic."""
  real_visits, synthetic_visits = _visits_observed(real), _visits_observed(synthetic)
  everyone = (np.ones(len(real_visits), bool), np.ones(len(synthetic_visits), bool))
  return {"visits": list(range(1, num_visits + 1)),
          "overall": _curve_pair(real_visits, synthetic_visits, *everyone, num_visits),
          "by_class": {label: _curve_pair(real_visits, synthetic_visits, rows,
                                          synthetic_classes[label], num_visits)
                       for label, rows in real_classes.items()}}


def missingness_fidelity(real: pd.DataFrame, synthetic: pd.DataFrame,
                         spec: DatasetSpec) -> Dict:
  """How closely the synthetic table's holes follow the real table's.

  Args:
    real: real patients in the spec's columns (label never missing).
    synthetic: synthetic patients in the same columns.
    spec: the dataset spec; every feature column is measured.

  Returns:
    A JSON-safe dict: `columns` (per column: real and synthetic missing rate, their
    absolute difference, and the same per label class), `max_rate_error` (the largest
    overall difference), `co_missingness_error` (the largest absolute difference between
    the real and synthetic correlation matrices of the missingness indicators; a constant
    indicator correlates 0 off the diagonal, see indicator_correlation) and
    `co_missingness_columns` (its pair), `pattern_tvd` (total variation distance between
    the distributions of missingness patterns) and, when the spec has series,
    `monotonicity_violations` ({real, synthetic}: rows with a visit observed after a
    missing visit of the same series, count and share), `dropout_curve` (overall and per
    class, real and synthetic: the share of patients still observed at each visit, that
    is at or before the last visit where any series is observed, and the largest gap) and
    `max_dropout_curve_error`.
  """
  columns = spec.feature_columns
  real_mask, synthetic_mask = missing_mask(real, columns), missing_mask(synthetic, columns)
  real_classes, synthetic_classes = _classes(real, spec), _classes(synthetic, spec)
  rates = _rates(real_mask, synthetic_mask, real_classes, synthetic_classes)
  co_missingness = _co_missingness(real_mask, synthetic_mask)
  result = {
      "columns": rates,
      "max_rate_error": max((r["difference"] for r in rates.values()
                             if r["difference"] is not None), default=0.0),
      "co_missingness_error": co_missingness["error"],
      "co_missingness_columns": co_missingness["columns"],
      "pattern_tvd": pattern_tvd(real_mask, synthetic_mask),
      "patterns": {"real": int(len(_patterns(real_mask))),
                   "synthetic": int(len(_patterns(synthetic_mask)))},
  }
  if spec.series:
    real_series = _series_missing(real_mask, spec)
    synthetic_series = _series_missing(synthetic_mask, spec)
    result["monotonicity_violations"] = {"real": _violations(real_series),
                                         "synthetic": _violations(synthetic_series)}
    curves = _dropout(real_series, synthetic_series, real_classes, synthetic_classes,
                      spec.num_visits)
    result["dropout_curve"] = curves
    errors = [c["max_error"] for c in [curves["overall"], *curves["by_class"].values()]
              if c["max_error"] is not None]
    result["max_dropout_curve_error"] = max(errors, default=None)
  return result
