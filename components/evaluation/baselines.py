"""DP baselines the released generator must beat, fitted inside the report, never released.

Both read the real training patients only through Gaussian statistics
(trainers/dp_statistics.py) at the released generator's own budget (its target epsilon
and delta, per patient), with the label as one more categorical code:
- copula: a DP Gaussian copula over every column and the label (one group, pooled
  correlation of normal scores; half of 1 / sigma^2 on the marginals, half on the
  correlation); the label is read back from the sampled label block.
- marginals: independent per-column DP histograms (no correlation at all): a floor that
  any generator that learns structure must clear, and a control that the correlation
  measure can fail.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import numpy as np

from trainers import accounting, dp_statistics
from trainers.features import PatientLayout

BASELINES = {
    "copula": dp_statistics.StatisticsConfig(by_class=False, marginal_weight=0.5),
    "marginals": dp_statistics.StatisticsConfig(by_class=False, marginal_weight=1.0),
}
BASELINE_NAMES = {"copula": "DP Gaussian copula", "marginals": "DP independent marginals"}
STATISTICS = ("marginals", "correlation")  # what each noise multiplier releases, in order
_RECORD_KEYS = ("epsilon", "delta", "unit", "accountant", "num_examples", "max_rows_per_patient",
                "released_noise_multipliers")  # a plan of statistics alone: no steps


@dataclasses.dataclass(frozen=True)
class Baseline:
  flat: np.ndarray  # sampled patients, trainers.features.flat_features order on [0, 1]
  labels: np.ndarray  # 0 / 1
  privacy: Dict  # the accountant's record


def noise_for_budget(config: dp_statistics.StatisticsConfig, target_epsilon: float,
                     delta: float, max_rows_per_patient: int, num_rows: int
                     ) -> Tuple[Tuple[float, ...], Dict]:
  """The statistics' noise multipliers (per row) that spend the budget per patient, and
  their privacy record. A patient with k rows moves each statistic k times as far, so the
  noise of one Gaussian mechanism at the budget is scaled by k (the accountant's group
  bound divides it again)."""
  total = accounting.gaussian_noise_for_epsilon(target_epsilon, delta) * max_rows_per_patient
  rows = max(num_rows, 1)
  for _ in range(20):  # the solver's noise is within budget; float rounding may not be
    noise = tuple(float(s) for s in dp_statistics.statistics_noise(config, total))
    record = accounting.compute_epsilon(accounting.PrivacyPlan(
        num_examples=rows, batch_size=rows, noise_multiplier=0.0, epochs=0, delta=delta,
        max_rows_per_patient=max_rows_per_patient, released_noise_multipliers=noise))
    if record.epsilon <= target_epsilon:
      privacy = {key: getattr(record, key) for key in _RECORD_KEYS}
      privacy.update(target_epsilon=target_epsilon, statistics=list(STATISTICS[:len(noise)]))
      return noise, privacy
    total *= 1 + 1e-6
  raise accounting.BudgetExceededError(f"no baseline noise within epsilon {target_epsilon}")


def fit_and_sample(name: str, flat: np.ndarray, labels: np.ndarray, layout: PatientLayout,
                   target_epsilon: float, delta: float, max_rows_per_patient: int,
                   patients: int, seed: int) -> Baseline:
  """Baseline `name` fitted on real rows (flat features, 0 / 1 labels) at the budget, and
  `patients` synthetic patients sampled from it."""
  config = BASELINES[name]
  noise, privacy = noise_for_budget(config, target_epsilon, delta, max_rows_per_patient,
                                    len(flat))
  codes = dp_statistics.CodeLayout.from_layout(layout, config.bins)
  codes = dataclasses.replace(codes, categories=codes.categories + (2,))  # the label
  labels = np.asarray(labels).reshape(-1).astype(np.int64)
  with_label = np.concatenate([flat, np.eye(2)[labels]], axis=1)
  rng = np.random.default_rng(seed)
  copula = dp_statistics.release(with_label, labels, codes, config, noise, rng)
  sampled = copula.sample(np.zeros(patients, np.int64), rng)
  return Baseline(sampled[:, :-2], np.argmax(sampled[:, -2:], axis=1), privacy)
