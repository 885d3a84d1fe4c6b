"""Fidelity: how closely synthetic patients follow the real ones.

Per-column marginals (Kolmogorov-Smirnov and Wasserstein distance on the spec's [0, 1]
scale for numeric columns, total variation for categorical ones), SPRINT_gan's
correlation-structure agreement (Spearman correlation between the lower triangles of
the real and the synthetic feature correlation matrices), median trajectories per
visit and label class and how far the synthetic ones stray (in clinical units), and
saturation: the share of values piled up at a public bound. The correlation Spearman and
the median KS come with bootstrap draws (fidelity_bootstrap) so that two tables scored
against the same real rows can be compared draw by draw.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from scipy import stats

from clinical_dp.spec import DatasetSpec
from components.evaluation.utility import percentile_interval


def numeric_marginal(real: np.ndarray, synthetic: np.ndarray, low: float, high: float) -> Dict:
  """KS statistic, and the Wasserstein distance as a fraction of the column's public range.

  Both are defined for constant columns (0 when both tables hold the same single value);
  with no rows on a side they are None, with the reason.
  """
  real, synthetic = _floats(real), _floats(synthetic)
  # Missing cells (missing: model) are left out: missingness.py compares the holes.
  real, synthetic = real[np.isfinite(real)], synthetic[np.isfinite(synthetic)]
  if not len(real) or not len(synthetic):
    return {"ks": None, "wasserstein": None,
            "reason": f"no {'real' if not len(real) else 'synthetic'} values to compare"}
  return {"ks": _finite(stats.ks_2samp(real, synthetic).statistic),
          "wasserstein": _finite(stats.wasserstein_distance(real, synthetic) / (high - low))}


def _floats(values) -> np.ndarray:
  """Values as floats with NaN for a missing cell (pandas' nullable "Int64" refuses a
  plain float conversion while it holds <NA>)."""
  return pd.Series(values).astype(float).to_numpy()


def _finite(value) -> Optional[float]:
  """A float, or None for NaN and infinities (report.json has no NaN)."""
  value = float(value)
  return value if np.isfinite(value) else None


def total_variation(real, synthetic, values) -> float:
  """Half the L1 distance between the category frequencies (0 same, 1 disjoint), over
  the non-missing cells (None read from the examples and NaN from a generated table would
  otherwise count as two different categories)."""
  real = pd.Series(real).dropna().astype(str).value_counts(normalize=True)
  synthetic = pd.Series(synthetic).dropna().astype(str).value_counts(normalize=True)
  names = set(map(str, values)) | set(real.index) | set(synthetic.index)
  return float(0.5 * sum(abs(real.get(v, 0.0) - synthetic.get(v, 0.0)) for v in names))


def numeric_columns(spec: DatasetSpec) -> List[str]:
  """Numeric static columns, then every series column visit by visit."""
  columns = [f.name for f in spec.static if not f.is_categorical]
  for series in spec.series:
    columns.extend(series.columns)
  return columns


def lower_triangle(matrix: np.ndarray) -> np.ndarray:
  return matrix[np.tril_indices_from(matrix, k=-1)]


def correlation_agreement(real: pd.DataFrame, synthetic: pd.DataFrame) -> Dict:
  """Spearman rank correlation between the real and synthetic pairwise (Pearson)
  correlations of the same columns; columns constant in either table are left out. A
  correlation is taken over the rows where both of its columns are present."""
  usable = [c for c in real.columns
            if real[c].astype(float).std() > 0 and synthetic[c].astype(float).std() > 0]
  left_out = [c for c in real.columns if c not in usable]
  if len(usable) < 3:
    if not len(real.columns):
      reason = "no numeric columns (correlation structure needs at least 3)"
    else:
      reason = (f"fewer than 3 numeric columns vary in both tables ({len(usable)} of "
                f"{len(real.columns)}"
                + (f"; constant in one table: {', '.join(left_out[:5])}" if left_out else "")
                + ")")
    return {"spearman": None, "columns": usable, "left_out_constant": left_out,
            "reason": reason}
  # Pairwise-complete (pandas' corr): a missing cell costs its row only the pairs it is in.
  real_corr = real[usable].astype(float).corr().to_numpy()
  synthetic_corr = synthetic[usable].astype(float).corr().to_numpy()
  real_lower, synthetic_lower = lower_triangle(real_corr), lower_triangle(synthetic_corr)
  result = {"spearman": None, "columns": usable, "left_out_constant": left_out,
            "real_matrix": np.nan_to_num(real_corr).round(4).tolist(),
            "synthetic_matrix": np.nan_to_num(synthetic_corr).round(4).tolist()}
  if not (np.all(np.isfinite(real_lower)) and np.all(np.isfinite(synthetic_lower))):
    result["reason"] = "a correlation could not be computed (too few rows)"
  elif np.ptp(real_lower) == 0 or np.ptp(synthetic_lower) == 0:
    result["reason"] = ("the correlations of one table are all equal, so their ranks carry "
                        "no structure")
  else:
    result["spearman"] = _finite(stats.spearmanr(real_lower, synthetic_lower).statistic)
    if result["spearman"] is None:
      result["reason"] = "Spearman correlation undefined"
  return result


def median_trajectories(table: pd.DataFrame, spec: DatasetSpec) -> Dict[str, Dict[str, list]]:
  """{series: {label value: median per visit}} (SPRINT_gan's Figure 2)."""
  labels = table[spec.label_column].astype(str)
  result = {}
  for series in spec.series:
    result[series.name] = {
        str(value): table.loc[labels == str(value), list(series.columns)].astype(float)
        .median().tolist()
        for value in (spec.label_negative, spec.label_positive)
        if (labels == str(value)).any()}
  return result


def trajectory_error(real: Dict[str, Dict[str, list]], synthetic: Dict[str, Dict[str, list]]
                     ) -> Dict[str, Dict]:
  """{series: {"by_class": {label: {"per_visit": |median synthetic - median real| per
  visit, "max"}}, "max"}} in the series' clinical units, from median_trajectories' output
  of both tables; a class the synthetic table lacks is n/a with the reason."""
  result = {}
  for series, classes in real.items():
    by_class = {}
    for label, real_medians in classes.items():
      synthetic_medians = synthetic.get(series, {}).get(label)
      if synthetic_medians is None:
        by_class[label] = {"per_visit": None, "max": None,
                           "reason": f"no synthetic patients of class {label}"}
        continue
      errors = [_finite(abs(s - r)) for s, r in zip(synthetic_medians, real_medians)]
      measured = [e for e in errors if e is not None]
      by_class[label] = {"per_visit": errors, "max": max(measured, default=None)}
    maxima = [c["max"] for c in by_class.values() if c["max"] is not None]
    result[series] = {"by_class": by_class, "max": max(maxima, default=None)}
  return result


def _bounds(spec: DatasetSpec) -> Dict[str, tuple]:
  """Public (min, max) of every numeric column."""
  bounds = {f.name: (f.min, f.max) for f in spec.static if not f.is_categorical}
  for series in spec.series:
    bounds.update({c: (series.min, series.max) for c in series.columns})
  return bounds


def saturation(real: pd.DataFrame, synthetic: pd.DataFrame, spec: DatasetSpec) -> Dict:
  """The share of each numeric column's values at its public min or max (within 1e-6 of
  the range), synthetic and real, and the largest over columns: a generator squashed
  into its output range piles patients up at the bounds."""
  columns = {}
  for column, (low, high) in _bounds(spec).items():
    shares = {}
    for name, table in (("synthetic", synthetic), ("real", real)):
      values = _floats(table[column])
      values = values[np.isfinite(values)]
      tolerance = 1e-6 * (high - low)
      at_bound = (np.abs(values - low) <= tolerance) | (np.abs(values - high) <= tolerance)
      shares[name] = float(at_bound.mean()) if len(values) else None
    columns[column] = shares
  result = {"columns": columns}
  for name in ("synthetic", "real"):
    measured = {c: s[name] for c, s in columns.items() if s[name] is not None}
    worst = max(measured, key=measured.get, default=None)
    result[f"max_{name}"] = measured.get(worst)
    result[f"max_{name}_column"] = worst
  if result["max_synthetic"] is None:
    result["reason"] = ("no numeric columns" if not columns
                        else "no numeric values to compare")
  return result


def _ks(real: np.ndarray, synthetic: np.ndarray) -> float:
  """ks_2samp's statistic of the finite values of two columns, computed directly: the
  largest gap of their empirical CDFs at the values of either."""
  real, synthetic = np.sort(real[np.isfinite(real)]), np.sort(synthetic[np.isfinite(synthetic)])
  if not len(real) or not len(synthetic):
    return np.nan
  at = np.concatenate([real, synthetic])
  return float(np.max(np.abs(np.searchsorted(real, at, side="right") / len(real)
                             - np.searchsorted(synthetic, at, side="right") / len(synthetic))))


def _pairwise_correlations(values: np.ndarray) -> np.ndarray:
  """Pairwise-complete Pearson correlations of the columns of `values` (rows, k; NaN
  missing), as pandas' DataFrame.corr computes them, from four matrix products."""
  present = np.isfinite(values).astype(np.float64)
  filled = np.nan_to_num(values - np.nanmean(values, axis=0)) * present
  count = np.maximum(present.T @ present, 1e-12)  # rows where both columns are present
  mean_a = (filled.T @ present) / count  # [a, b]: the mean of a where b is present too
  covariance = (filled.T @ filled) / count - mean_a * mean_a.T
  variance = np.clip(((filled * filled).T @ present) / count - mean_a ** 2, 0, None)
  with np.errstate(invalid="ignore", divide="ignore"):
    return covariance / np.sqrt(variance * variance.T)


def _spearman_of_lower(real_corr: np.ndarray, synthetic_corr: np.ndarray) -> float:
  lower = np.tril_indices(len(real_corr), k=-1)
  a, b = real_corr[lower], synthetic_corr[lower]
  ok = np.isfinite(a) & np.isfinite(b)
  if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
    return np.nan
  return float(stats.spearmanr(a[ok], b[ok]).statistic)


def fidelity_bootstrap(real: pd.DataFrame, synthetic: pd.DataFrame, columns: List[str],
                       correlated: List[str], samples: int, max_rows: int, seed: int,
                       full: Dict[str, Optional[float]], confidence: float = 0.95
                       ) -> Dict[str, list]:
  """Bootstrap draws of the median KS (over the numeric `columns`) and of the correlation
  Spearman (over the `correlated` columns, those correlation_agreement used); the real
  rows and the synthetic rows each resampled with replacement.

  The real resamples depend only on the number of real rows and the seed, so every table
  scored against the same real rows (the released one, the baselines) gets the same real
  resamples: paired draws, as the AUROC's test resamples are. The rows of the two tables
  are the sampling noise measured here; the DP noise of the one release is not (drawing
  it again would spend budget). A table of more than max_rows rows is resampled max_rows
  rows at a time (m out of n), and each draw is then the full tables' value (`full`) plus
  its departure from the draws' mean scaled by sqrt((1/n_real + 1/n_synthetic) /
  (1/m_real + 1/m_synthetic)): both measures vary about as 1 / sqrt(rows), so the spread
  is about the full tables' (a smaller resample's KS is biased upwards, hence the
  recentring) at a cost that stops growing with the table."""
  cap = lambda rows: min(rows, max_rows) if max_rows else rows
  real_drawn, synthetic_drawn = cap(len(real)), cap(len(synthetic))
  real_rng, synthetic_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
  as_floats = lambda table: np.stack([_floats(table[c]) for c in real.columns], axis=1) \
      if len(real.columns) else np.zeros((len(table), 0))
  real_values, synthetic_values = as_floats(real), as_floats(synthetic)
  measured = [list(real.columns).index(c) for c in columns]
  correlated = [list(real.columns).index(c) for c in correlated] if len(correlated) >= 3 \
      else []
  ks_draws, spearman_draws = [], []
  for _ in range(samples if real_drawn and synthetic_drawn else 0):
    real_rows = real_values[real_rng.integers(0, len(real), real_drawn)]
    synthetic_rows = synthetic_values[synthetic_rng.integers(0, len(synthetic),
                                                             synthetic_drawn)]
    if measured:
      ks_draws.append(np.nanmedian([_ks(real_rows[:, j], synthetic_rows[:, j])
                                    for j in measured]))
    if correlated:
      spearman_draws.append(_spearman_of_lower(
          _pairwise_correlations(real_rows[:, correlated]),
          _pairwise_correlations(synthetic_rows[:, correlated])))
  capped = (real_drawn, synthetic_drawn) != (len(real), len(synthetic))
  # the variance of either measure as 1 / (real rows) + 1 / (synthetic rows), each table's
  # rows alike: the full tables' spread over the drawn rows' spread
  scale = (np.sqrt((1 / max(len(real), 1) + 1 / max(len(synthetic), 1))
                   / (1 / max(real_drawn, 1) + 1 / max(synthetic_drawn, 1))))

  def rescaled(draws, measure):
    draws = np.asarray(draws, np.float64)
    if not len(draws) or not np.all(np.isfinite(draws)) or full.get(measure) is None:
      return []
    if capped:
      draws = full[measure] + scale * (draws - draws.mean())
    return np.round(draws, 6).tolist()

  result = {"median_ks": rescaled(ks_draws, "median_ks"),
            "correlation_spearman": rescaled(spearman_draws, "correlation_spearman"),
            "rows_per_resample": {"real": int(real_drawn), "synthetic": int(synthetic_drawn)},
            "rows": {"real": len(real), "synthetic": len(synthetic)}, "samples": int(samples)}
  for measure in ("median_ks", "correlation_spearman"):
    result[f"{measure}_ci"] = percentile_interval(result[measure], confidence)
  return result


def fidelity_report(real: pd.DataFrame, synthetic: pd.DataFrame, spec: DatasetSpec,
                    bootstrap_samples: int = 0, bootstrap_rows: int = 0, seed: int = 0
                    ) -> Dict:
  """Marginals per column, correlation agreement, trajectories and their error, and
  saturation, real vs synthetic; with bootstrap_samples, fidelity_bootstrap's draws of
  the correlation Spearman and the median KS."""
  marginals = {}
  for feature in spec.static:
    if feature.is_categorical:
      marginals[feature.name] = {"total_variation": total_variation(
          real[feature.name], synthetic[feature.name], feature.values)}
    else:
      marginals[feature.name] = numeric_marginal(real[feature.name], synthetic[feature.name],
                                                 feature.min, feature.max)
  for series in spec.series:
    for column in series.columns:
      marginals[column] = numeric_marginal(real[column], synthetic[column], series.min,
                                           series.max)
  numeric = numeric_columns(spec)
  ks = [m["ks"] for m in marginals.values() if m.get("ks") is not None]
  correlation = correlation_agreement(real[numeric], synthetic[numeric])
  trajectories = {"real": median_trajectories(real, spec),
                  "synthetic": median_trajectories(synthetic, spec)}
  bootstrap = None
  if bootstrap_samples:
    measured = [c for c in numeric if marginals[c].get("ks") is not None]
    bootstrap = fidelity_bootstrap(
        real[numeric], synthetic[numeric], measured,
        correlation["columns"] if correlation["spearman"] is not None else [],
        bootstrap_samples, bootstrap_rows, seed,
        {"median_ks": float(np.median(ks)) if ks else None,
         "correlation_spearman": correlation["spearman"]})
  return {
      "correlation_spearman": correlation["spearman"],
      "correlation_reason": correlation.get("reason") if correlation["spearman"] is None
                            else None,
      "correlation": correlation,
      "marginals": marginals,
      "median_ks": float(np.median(ks)) if ks else None,
      "max_ks": max(ks, default=None),
      "max_total_variation": max((m["total_variation"] for m in marginals.values()
                                  if "total_variation" in m), default=None),
      "label_rate": {"real": float((real[spec.label_column].astype(str)
                                    == str(spec.label_positive)).mean()),
                     "synthetic": float((synthetic[spec.label_column].astype(str)
                                         == str(spec.label_positive)).mean())},
      "trajectories": trajectories,
      "trajectory_error": trajectory_error(trajectories["real"], trajectories["synthetic"]),
      "saturation": saturation(real, synthetic, spec),
      **({"bootstrap": bootstrap} if bootstrap is not None else {}),
  }
