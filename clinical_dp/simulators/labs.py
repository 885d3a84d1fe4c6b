"""A seeded simulator of a cohort with laboratory values as real tables hold them:
right-skewed, filling a sliver of their public range. Shaped like the public serum free
light chain cohort that showed the generator behind its own DP copula baseline (issue 24),
with the figures measured there:
- kappa: log-normal, quantiles about 0.52 / 1.28 / 2.82 (5% / 50% / 95%) on public
  bounds 0 to 50; lambda the same shape a little higher, correlated with kappa (both rise
  with age and with failing kidneys);
- creatinine: quantiles about 0.8 / 1.0 / 1.5 on public bounds 0 to 20, with a long tail;
- age in whole years (50 to 101 of public 18 to 110), sex, the sample year (1995 to 2003 of
  1990 to 2010), the free light chain decile group (1 to 10, from kappa + lambda) and a
  0 / 1 MGUS flag, each whole-number;
- death (1 / 0) from age, the light chains and creatinine;
- the clinic (Zipf-like sizes, one by default), which does not change the risk;
- creatinine left unmeasured for about 17% of patients, and not at random: more often in
  the younger and those with healthy kidneys, whom nobody sent for a kidney panel, so a
  generator that models the hole must keep who has one (the spec says missing: model).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from clinical_dp.simulators.sites import draw_sites, site_names
from clinical_dp.spec import DatasetSpec, StaticFeature


@dataclasses.dataclass(frozen=True)
class LabsConfig:
  """Size of a simulated light chain cohort, and how its creatinine goes unmeasured."""
  patients: int = 7874
  sites: int = 1
  seed: int = 0
  # Log-odds that creatinine is missing: at age 64 with a typical kidney, per 10 years
  # above 64, per standard deviation of the shared kidney factor (higher: worse kidneys).
  creatinine_missing_logit: float = -1.8
  creatinine_missing_per_decade: float = -0.8
  creatinine_missing_per_kidney: float = -0.6


def labs_spec(config: LabsConfig = LabsConfig()) -> DatasetSpec:
  """The dataset spec of the simulated table, with public clinical bounds."""
  del config
  static = (
      StaticFeature("age", "numeric", min=18, max=110, integer=True),
      StaticFeature("sex", "categorical", values=("F", "M")),
      StaticFeature("sample_yr", "numeric", min=1990, max=2010, integer=True),
      StaticFeature("kappa", "numeric", min=0, max=50, decimals=3),
      StaticFeature("lambda", "numeric", min=0, max=50, decimals=3),
      StaticFeature("flc_grp", "numeric", min=1, max=10, integer=True),
      StaticFeature("creatinine", "numeric", min=0, max=20, decimals=1),
      StaticFeature("mgus", "numeric", min=0, max=1, integer=True))
  return DatasetSpec(name="labs", id_column="patient_id", label_column="death",
                     label_positive=1, label_negative=0, site_column="clinic",
                     missing="model", static=static)


def simulate_labs(config: LabsConfig = LabsConfig()) -> pd.DataFrame:
  """Simulates one row per patient, with the clinic, the death label and empty creatinine
  cells for the patients never tested."""
  rng = np.random.default_rng(config.seed)
  n = config.patients
  age = np.clip(50 + rng.gamma(2.0, 7.0, n), 50, 101).round(0)
  older = (age - 64) / 10
  kidney = rng.normal(0, 1, n)  # shared by creatinine and both light chains
  creatinine = np.exp(0.0 + 0.09 * older + 0.17 * kidney + 0.1 * rng.standard_t(4, n))
  chains = rng.normal(0, 1, n)
  kappa = np.exp(np.log(1.28) + 0.12 * older + 0.18 * kidney + 0.38 * chains
                 + 0.2 * rng.normal(0, 1, n))
  lam = np.exp(np.log(1.5) + 0.10 * older + 0.18 * kidney + 0.33 * chains
               + 0.2 * rng.normal(0, 1, n))
  flc_grp = np.searchsorted(np.quantile(kappa + lam, np.linspace(0.1, 0.9, 9)), kappa + lam,
                            side="right") + 1
  mgus = (rng.random(n) < 0.015).astype(np.int64)
  sample_yr = np.clip(1995 + np.floor(rng.exponential(1.3, n)), 1995, 2003)
  sex = np.where(rng.random(n) < 0.55, "F", "M")
  logit = (-1.2 + 1.1 * older + 0.45 * np.log(kappa / 1.28) + 0.45 * np.log(lam / 1.5)
           + 1.2 * np.log(creatinine) - 0.12 * (sample_yr - 1995) + 0.2 * (sex == "M"))
  death = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
  clinic = draw_sites(rng, n, config.sites)
  # Drawn last, so every other value is as in the complete table of the same seed.
  unmeasured = rng.random(n) < 1 / (1 + np.exp(-(
      config.creatinine_missing_logit + config.creatinine_missing_per_decade * older
      + config.creatinine_missing_per_kidney * kidney)))
  creatinine = np.where(unmeasured, np.nan, creatinine)
  return pd.DataFrame({
      "patient_id": [f"F{p:06d}" for p in range(n)], "clinic": site_names(clinic, "clinic"),
      "death": death, "age": age.astype(np.int64), "sex": sex,
      "sample_yr": sample_yr.astype(np.int64), "kappa": kappa.round(3),
      "lambda": lam.round(3), "flc_grp": flc_grp.astype(np.int64),
      "creatinine": creatinine.round(1), "mgus": mgus})
