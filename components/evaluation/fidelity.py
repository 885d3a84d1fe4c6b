"""Fidelity: how closely synthetic patients follow the real ones.

Per-column marginals (Kolmogorov-Smirnov and Wasserstein distance on the spec's [0, 1]
scale for numeric columns, total variation for categorical ones), SPRINT_gan's
correlation-structure agreement (Spearman correlation between the lower triangles of
the real and the synthetic feature correlation matrices), median trajectories per
visit and label class and how far the synthetic ones stray (in clinical units), and
saturation: the share of values piled up at a public bound.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from scipy import stats

from clinical_dp.spec import DatasetSpec


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


def fidelity_report(real: pd.DataFrame, synthetic: pd.DataFrame, spec: DatasetSpec) -> Dict:
  """Marginals per column, correlation agreement, trajectories and their error, and
  saturation, real vs synthetic."""
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
  }
