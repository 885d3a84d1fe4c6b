"""Fidelity: how closely synthetic patients follow the real ones.

Per-column marginals (Kolmogorov-Smirnov and Wasserstein distance on the spec's [0, 1]
scale for numeric columns, total variation for categorical ones), SPRINT_gan's
correlation-structure agreement (Spearman correlation between the lower triangles of
the real and the synthetic feature correlation matrices), and median trajectories per
visit and label class.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import pandas as pd
from scipy import stats

from clinical_dp.spec import DatasetSpec


def numeric_marginal(real: np.ndarray, synthetic: np.ndarray, low: float, high: float) -> Dict:
  """KS statistic, and the Wasserstein distance as a fraction of the column's public range."""
  real, synthetic = np.asarray(real, float), np.asarray(synthetic, float)
  return {"ks": float(stats.ks_2samp(real, synthetic).statistic),
          "wasserstein": float(stats.wasserstein_distance(real, synthetic) / (high - low))}


def total_variation(real, synthetic, values) -> float:
  """Half the L1 distance between the category frequencies (0 same, 1 disjoint)."""
  real = pd.Series(np.asarray(real).astype(str)).value_counts(normalize=True)
  synthetic = pd.Series(np.asarray(synthetic).astype(str)).value_counts(normalize=True)
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
  correlations of the same columns; columns constant in either table are left out."""
  usable = [c for c in real.columns
            if real[c].astype(float).std() > 0 and synthetic[c].astype(float).std() > 0]
  if len(usable) < 3:
    return {"spearman": None, "columns": usable,
            "reason": "fewer than 3 non-constant numeric columns"}
  real_corr = np.corrcoef(real[usable].to_numpy(float), rowvar=False)
  synthetic_corr = np.corrcoef(synthetic[usable].to_numpy(float), rowvar=False)
  rho = stats.spearmanr(lower_triangle(real_corr), lower_triangle(synthetic_corr)).statistic
  return {"spearman": float(rho), "columns": usable,
          "left_out_constant": [c for c in real.columns if c not in usable],
          "real_matrix": real_corr.round(4).tolist(),
          "synthetic_matrix": synthetic_corr.round(4).tolist()}


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


def fidelity_report(real: pd.DataFrame, synthetic: pd.DataFrame, spec: DatasetSpec) -> Dict:
  """Marginals per column, correlation agreement and trajectories, real vs synthetic."""
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
  ks = [m["ks"] for m in marginals.values() if "ks" in m]
  correlation = correlation_agreement(real[numeric], synthetic[numeric])
  return {
      "correlation_spearman": correlation["spearman"],
      "correlation": correlation,
      "marginals": marginals,
      "median_ks": float(np.median(ks)) if ks else None,
      "max_total_variation": max((m["total_variation"] for m in marginals.values()
                                  if "total_variation" in m), default=None),
      "label_rate": {"real": float((real[spec.label_column].astype(str)
                                    == str(spec.label_positive)).mean()),
                     "synthetic": float((synthetic[spec.label_column].astype(str)
                                         == str(spec.label_positive)).mean())},
      "trajectories": {"real": median_trajectories(real, spec),
                       "synthetic": median_trajectories(synthetic, spec)},
  }
