"""A seeded simulator of a SPRINT-like blood-pressure trial.

Generative model, per patient i (all draws from one seeded generator):
  baseline covariates: age, sex, race or ethnicity, eGFR, prior CVD, smoking, BMI,
    with SPRINT-like marginals; untreated SBP u_i depends on age and eGFR.
  arm a_i ~ Bernoulli(1/2): 1 = intensive (target SBP < 120), 0 = standard (< 140).
  medication classes m_it (0-6) are titrated at each visit: one class is added when
    the previous SBP is above the arm's target (with a clinician adherence that
    varies by patient), and the standard arm steps down when SBP is far below 130.
  SBP_it = u_i - r_i * m_it + e_it, with a patient response r_i per class and visit
    noise e_it; DBP follows SBP with an age-dependent offset.
  Dropout is monotone and informative: after each visit a patient still in the trial
  leaves with a hazard that rises with that visit's SBP, the drug classes taken, age,
  and a patient frailty (gamma, mean 1); every later visit of every series is then
  empty. Visit 0 is always observed, and about 70% of patients (SPRINT: 6502 of 9361)
  have all 12 visits. Real trials lose patients this way, and a generator that models
  the holes must learn who leaves, not only how many cells are empty.
Clinics are of uneven size (Zipf-like weights).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from clinical_dp.simulators.sites import draw_sites, site_names
from clinical_dp.spec import DatasetSpec, SeriesFeature, StaticFeature

VISITS = ("rz", "1m", "2m", "3m", "6m", "9m", "12m", "15m", "18m", "21m", "24m", "27m")
RACES = ("white", "black", "hispanic", "other")
SMOKING = ("never", "former", "current")


@dataclasses.dataclass(frozen=True)
class SprintConfig:
  """Size and shape of a simulated SPRINT-like trial."""
  patients: int = 9361
  sites: int = 20
  seed: int = 0
  target_intensive: float = 120.0
  target_standard: float = 140.0
  visit_noise_sd: float = 11.0
  titration_adherence: float = 0.9
  step_down_below: float = 130.0
  step_down_rate: float = 0.5
  drift_sd: float = 2.0
  response_mean: float = 10.0
  response_sd: float = 3.0
  # Hazard of leaving after a visit: mean_dropout_hazard * frailty * exp(log-hazard ratios
  # per 15 mmHg SBP above 135, per drug class above 3, per 10 years above age 68).
  mean_dropout_hazard: float = 0.05
  dropout_per_sbp: float = 0.6
  dropout_per_med: float = 0.25
  dropout_per_age: float = 0.4


def monotone_observed(leaves: np.ndarray) -> np.ndarray:
  """Which visits are observed, given leaves[i, v]: patient i leaves between visits v and
  v + 1 if still in. Visit 0 is always observed and no visit after the first leaving is,
  so the holes are monotone dropout, as the "model" missing policy's dropout code expects."""
  stays = np.cumprod(~leaves, axis=1).astype(bool)
  return np.concatenate([np.ones((len(leaves), 1), dtype=bool), stays], axis=1)


def sprint_spec(config: SprintConfig = SprintConfig()) -> DatasetSpec:
  """The dataset spec of the simulated table, with public clinical bounds."""
  del config  # The columns and bounds do not depend on the size.
  return DatasetSpec(
      name="sprint_like",
      id_column="patient_id",
      label_column="intensive",
      label_positive=1,
      label_negative=0,
      site_column="site",
      missing="model",
      static=(
          StaticFeature("age", "numeric", min=18, max=110),
          StaticFeature("sex", "categorical", values=("F", "M")),
          StaticFeature("race", "categorical", values=RACES),
          StaticFeature("egfr", "numeric", min=5, max=200),
          StaticFeature("prior_cvd", "categorical", values=("no", "yes")),
          StaticFeature("smoking", "categorical", values=SMOKING),
          StaticFeature("bmi", "numeric", min=12, max=70),
      ),
      series=(
          SeriesFeature("sbp", min=60, max=260, columns=tuple(f"sbp_{v}" for v in VISITS)),
          SeriesFeature("dbp", min=30, max=150, columns=tuple(f"dbp_{v}" for v in VISITS)),
          SeriesFeature("bp_meds", min=0, max=6, integer=True,
                        columns=tuple(f"meds_{v}" for v in VISITS)),
      ),
  )


def simulate_sprint(config: SprintConfig = SprintConfig()) -> pd.DataFrame:
  """Simulates the trial table in wide format; visits after a patient left are empty."""
  rng = np.random.default_rng(config.seed)
  n, t = config.patients, len(VISITS)
  age = np.clip(rng.normal(67.9, 9.4, n), 50, 95).round(0)
  sex = np.where(rng.random(n) < 0.36, "F", "M")
  race = rng.choice(RACES, size=n, p=(0.58, 0.30, 0.10, 0.02))
  egfr = np.clip(rng.normal(72.0, 20.0, n) - 0.3 * (age - 68), 15, 150).round(1)
  prior_cvd = np.where(rng.random(n) < 0.20, "yes", "no")
  smoking = rng.choice(SMOKING, size=n, p=(0.44, 0.42, 0.14))
  bmi = np.clip(rng.normal(29.9, 5.8, n), 16, 60).round(1)
  intensive = (rng.random(n) < 0.5).astype(np.int64)

  meds = np.zeros((n, t), dtype=np.int64)
  meds[:, 0] = np.clip(rng.poisson(1.8, n), 0, 6)
  response = np.clip(rng.normal(config.response_mean, config.response_sd, n), 2.0, 20.0)
  untreated = (139.7 + 0.25 * (age - 68) - 0.05 * (egfr - 72)
               + response * meds[:, 0] + rng.normal(0, 14.0, n))
  adherence = np.clip(rng.normal(config.titration_adherence, 0.25, n), 0.05, 1.0)
  target = np.where(intensive == 1, config.target_intensive, config.target_standard)
  sbp = np.zeros((n, t))
  sbp[:, 0] = untreated - response * meds[:, 0] + rng.normal(0, config.visit_noise_sd, n)
  for v in range(1, t):
    # Clinicians act on the mean of the last two readings, not on one noisy visit.
    recent = sbp[:, max(v - 2, 0):v].mean(axis=1)
    step_up = (recent > target) & (rng.random(n) < adherence)
    step_down = ((intensive == 0) & (recent < config.step_down_below)
                 & (rng.random(n) < config.step_down_rate))
    meds[:, v] = np.clip(meds[:, v - 1] + step_up - step_down, 0, 6)
    untreated = untreated + rng.normal(0, config.drift_sd, n)
    sbp[:, v] = untreated - response * meds[:, v] + rng.normal(0, config.visit_noise_sd, n)
  sbp = np.clip(sbp, 80, 230).round(0)
  dbp_offset = rng.normal(0, 6.0, n)[:, None]
  dbp = np.clip(78.0 + 0.45 * (sbp - 135) - 0.35 * (age[:, None] - 68) + dbp_offset
                + rng.normal(0, 5.0, (n, t)), 35, 130).round(0)

  # Same draws as the former per-visit misses, so the complete part and the clinics are
  # unchanged; column v of the uniforms decides leaving between visits v - 1 and v.
  frailty = rng.gamma(0.5, 2.0, n)
  leave_draws = rng.random((n, t))
  hazard = config.mean_dropout_hazard * frailty[:, None] * np.exp(
      config.dropout_per_sbp * (sbp - 135) / 15 + config.dropout_per_med * (meds - 3)
      + config.dropout_per_age * (age[:, None] - 68) / 10)
  missed = ~monotone_observed(leave_draws[:, 1:] < hazard[:, :-1])

  table = {
      "patient_id": [f"S{i:05d}" for i in range(n)],
      "site": site_names(draw_sites(rng, n, config.sites), "clinic"),
      "intensive": intensive,
      "age": age, "sex": sex, "race": race, "egfr": egfr, "prior_cvd": prior_cvd,
      "smoking": smoking, "bmi": bmi,
  }
  for name, values in (("sbp", sbp), ("dbp", dbp), ("meds", meds.astype(float))):
    for v, visit in enumerate(VISITS):
      column = values[:, v].copy()
      column[missed[:, v]] = np.nan
      table[f"{name}_{visit}"] = column
  frame = pd.DataFrame(table)
  meds_columns = [f"meds_{v}" for v in VISITS]
  frame[meds_columns] = frame[meds_columns].astype("Int64")
  return frame
