"""A seeded simulator of an eICU-like multi-hospital ICU cohort.

Generative model:
  hospital k has a size weight (uneven, Zipf-like), a case mix (mean age, share of
    cardiac, surgical, sepsis and other admissions, acuity shift), a baseline
    mortality offset, and its own deviation from the shared risk coefficients
    (practice and coding differ between hospitals, so the data are non-IID).
  each stay: age, sex, admission type, admission vitals (heart rate, mean arterial
    pressure, respiratory rate, temperature, SpO2, GCS) and labs (creatinine,
    lactate, white cells, sodium) drawn around type- and acuity-dependent means;
    an APACHE-like acuity score summarising the derangements plus noise.
  the skewed labs (creatinine, lactate, white cells) are log-normal, so that, as in real
    ICU tables, their bulk fills a sliver of wide public bounds (median creatinine about
    1.0 of 0.1-15 mg/dL, lactate about 1.5 of 0-30 mmol/L) with a long right tail.
  lactate is not drawn for about 5% of stays, mostly the stable ones (informative), and
    white cells for about 2% at random: the spec says missing: model.
  in-hospital mortality ~ Bernoulli(sigmoid(offset_k + (beta + delta_k) . f(x))),
    with U-shaped terms for temperature, heart rate and sodium.
About 6% of patients have a second stay in the same hospital, so the privacy unit
(the patient) can span rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from clinical_dp.simulators.sites import draw_sites, site_names
from clinical_dp.spec import DatasetSpec, StaticFeature

ADMISSION_TYPES = ("cardiac", "surgical", "sepsis", "respiratory", "other")
_NUMERIC_BOUNDS = {
    "age": (16, 100), "heart_rate": (20, 250), "mean_bp": (20, 200), "resp_rate": (4, 70),
    "temperature": (30, 43), "spo2": (50, 100), "gcs": (3, 15), "creatinine": (0.1, 15),
    "lactate": (0, 30), "wbc": (0.1, 100), "sodium": (110, 170), "acuity_score": (0, 200),
}
# Recorded as whole numbers (vital signs, scores, age in years), as the table holds them.
_INTEGER_COLUMNS = frozenset({"age", "heart_rate", "mean_bp", "resp_rate", "spo2", "gcs",
                              "sodium", "acuity_score"})
# Shared log-odds per unit of each standardized risk term.
_RISK_TERMS = ("age", "map_low", "resp_rate", "temp_dev", "hr_dev", "spo2_low", "gcs_low",
               "creatinine", "lactate", "wbc_dev", "sodium_dev", "acuity")
# The labs that are log-normal on wide bounds (their medians sit low in the public range).
SKEWED_LABS = ("creatinine", "lactate", "wbc")
_BETA = np.array([0.45, 0.30, 0.20, 0.20, 0.20, 0.25, 0.55, 0.25, 0.55, 0.15, 0.15, 0.50])


@dataclasses.dataclass(frozen=True)
class IcuConfig:
  """Size and heterogeneity of a simulated multi-hospital ICU cohort."""
  patients: int = 20000
  sites: int = 8
  seed: int = 0
  site_coefficient_sd: float = 0.5
  risk_scale: float = 1.2
  readmission_rate: float = 0.06
  base_mortality_logit: float = -3.3
  # Log-odds that lactate is not drawn: for a stay of average severity, and per unit of
  # severity (negative: the sicker, the likelier it is measured); white cells at random.
  lactate_missing_logit: float = -3.15
  lactate_missing_per_severity: float = -0.9
  wbc_missing_rate: float = 0.02


def icu_spec(config: IcuConfig = IcuConfig()) -> DatasetSpec:
  """The dataset spec of the simulated table, with public clinical bounds."""
  del config
  static = [StaticFeature("age", "numeric", min=16, max=100, integer=True),
            StaticFeature("sex", "categorical", values=("F", "M")),
            StaticFeature("admission_type", "categorical", values=ADMISSION_TYPES)]
  for name, (lo, hi) in _NUMERIC_BOUNDS.items():
    if name != "age":
      static.append(StaticFeature(name, "numeric", min=lo, max=hi, integer=name in _INTEGER_COLUMNS))
  return DatasetSpec(name="icu_like", id_column="patient_id", label_column="hospital_death",
                     label_positive=1, label_negative=0, site_column="hospital",
                     missing="model", static=tuple(static))


def _hospitals(rng: np.random.Generator, sites: int, config: IcuConfig) -> dict:
  mix = rng.dirichlet(np.full(len(ADMISSION_TYPES), 2.0), size=sites)
  return {
      "age_shift": rng.normal(0, 5.0, sites),
      "acuity_shift": rng.normal(0, 0.2, sites),
      "offset": rng.normal(0, 0.25, sites),
      "delta": rng.normal(0, config.site_coefficient_sd, (sites, len(_RISK_TERMS))),
      "mix": mix,
  }


def simulate_icu(config: IcuConfig = IcuConfig()) -> pd.DataFrame:
  """Simulates one row per ICU stay, with the hospital and the death label."""
  rng = np.random.default_rng(config.seed)
  sites = config.sites
  hospitals = _hospitals(rng, sites, config)
  first_stays = int(round(config.patients / (1 + config.readmission_rate)))
  site = draw_sites(rng, first_stays, sites)
  repeat = np.sort(rng.choice(first_stays, size=config.patients - first_stays, replace=False))
  patient = np.concatenate([np.arange(first_stays), repeat])
  site = np.concatenate([site, site[repeat]])
  n = len(patient)

  base_age = np.clip(rng.normal(64, 16, first_stays), 18, 95)
  age = np.clip(base_age[patient] + hospitals["age_shift"][site] + np.where(
      np.arange(n) >= first_stays, rng.uniform(0, 2, n), 0), 16, 100).round(0)
  sex = np.where(rng.random(first_stays) < 0.45, "F", "M")[patient]
  adm = np.array([rng.choice(len(ADMISSION_TYPES), p=hospitals["mix"][k]) for k in site])
  severity = rng.normal(0, 1, n) + hospitals["acuity_shift"][site] + np.select(
      [adm == 2, adm == 3, adm == 1], [0.6, 0.4, -0.3], 0.0)

  def noisy(mean, sd, lo, hi, scale=1.0):
    return np.clip(mean + scale * severity + rng.normal(0, sd, n), lo, hi)

  heart_rate = noisy(88 + 6 * (adm == 2), 15, 30, 220, 8)
  mean_bp = noisy(80 - 4 * (adm == 2), 12, 30, 180, -7)
  resp_rate = noisy(19 + 3 * (adm == 3), 4.5, 6, 60, 2.5)
  temperature = noisy(36.9 + 0.8 * (adm == 2), 0.7, 32, 42, 0.2)
  spo2 = noisy(96 - 3 * (adm == 3), 2.5, 60, 100, -1.5)
  gcs = np.clip(np.round(14 - 1.5 * np.maximum(severity, 0) + rng.normal(0, 1.8, n)), 3, 15)
  # Log-normal, held only by the public bounds (no inner clip piling values on one number);
  # lactate at least 0.1, the one decimal it is reported at.
  creatinine = np.clip(np.exp(rng.normal(-0.05 + 0.25 * severity, 0.55)),
                       *_NUMERIC_BOUNDS["creatinine"])
  lactate = np.clip(np.exp(rng.normal(0.3 + 0.35 * severity, 0.5)), 0.1,
                    _NUMERIC_BOUNDS["lactate"][1])
  wbc = np.clip(np.exp(rng.normal(2.3 + 0.15 * severity + 0.3 * (adm == 2), 0.42)),
                *_NUMERIC_BOUNDS["wbc"])
  sodium = noisy(139, 4.0, 115, 165, 0.8)
  derangement = np.stack([
      (age - 64) / 16, np.maximum(70 - mean_bp, 0) / 10, (resp_rate - 19) / 5,
      np.abs(temperature - 37) / 0.8, np.abs(heart_rate - 85) / 15, np.maximum(94 - spo2, 0) / 3,
      (15 - gcs) / 3, np.log(creatinine) / 0.5, np.log(lactate) / 0.45,
      np.abs(np.log(wbc) - 2.2) / 0.4, np.abs(sodium - 139) / 4], axis=1)
  acuity = np.clip(45 + 9 * derangement[:, [0, 1, 2, 6, 7, 8]].sum(axis=1)
                   + rng.normal(0, 10, n), 0, 199).round(0)
  terms = np.concatenate([derangement, ((acuity - 55) / 20)[:, None]], axis=1)
  # Centering keeps the intercept interpretable as the typical patient's risk.
  terms = terms - terms.mean(axis=0)
  coefficients = config.risk_scale * _BETA[None, :] + hospitals["delta"][site]
  logit = (config.base_mortality_logit + hospitals["offset"][site]
           + (coefficients * terms).sum(axis=1))
  death = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
  # Holes drawn after the label, which was drawn from the values as measured or not.
  lactate = np.where(rng.random(n) < 1 / (1 + np.exp(-(
      config.lactate_missing_logit + config.lactate_missing_per_severity * severity))),
      np.nan, lactate)
  wbc = np.where(rng.random(n) < config.wbc_missing_rate, np.nan, wbc)

  return pd.DataFrame({
      "patient_id": [f"P{p:06d}" for p in patient],
      "hospital": site_names(site, "hospital"),
      "hospital_death": death,
      "age": age, "sex": sex, "admission_type": np.array(ADMISSION_TYPES)[adm],
      "heart_rate": heart_rate.round(0), "mean_bp": mean_bp.round(0),
      "resp_rate": resp_rate.round(0), "temperature": temperature.round(1),
      "spo2": spo2.round(0), "gcs": gcs.astype(np.int64), "creatinine": creatinine.round(2),
      "lactate": lactate.round(1), "wbc": wbc.round(1), "sodium": sodium.round(0),
      "acuity_score": acuity,
  })
