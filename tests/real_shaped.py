"""Tables shaped like the real ones that broke the pipeline (issue 12), made from the
seeded simulators: odd column names, labels written as words, few patients, two centres;
and a cohort export with skewed labs, holes and informative dropout (missing: model).
"""

from typing import Dict, Tuple

import numpy as np
import pandas as pd
import yaml

from clinical_dp.simulators import simulate
from clinical_dp.simulators.sites import draw_sites
from clinical_dp.simulators.sprint import monotone_observed
from clinical_dp.spec import DatasetSpec, spec_from_dict
from tests.odd_tables import write_table  # noqa: F401  (one writer for every test table)

# The icu table's columns under names a hospital export might carry.
ODD_ICU_NAMES = {
    "patient_id": "id", "hospital": "Hospital / site", "hospital_death": "Died in hospital?",
    "age": "Age", "heart_rate": "heart rate (bpm)", "temperature": "Température",
    "acuity_score": "2nd-score.v1", "mean_bp": "lambda", "resp_rate": "class",
    "spo2": "SpO2 %", "gcs": "type", "sodium": "Na+ (mmol/L)", "creatinine": "größe",
    "lactate": "Lactate", "wbc": "WBC"}

# The same columns as a hospital's export writes them: units in the header, abbreviations,
# German for creatinine (issue 25: `spec draft` must match 90% of them).
HOSPITAL_ICU_NAMES = {
    "patient_id": "Patient ID", "hospital": "Hospital", "hospital_death": "Hospital mortality",
    "age": "Age (years)", "sex": "Gender", "admission_type": "Admission type",
    "heart_rate": "HR (bpm)", "mean_bp": "MAP (mmHg)", "resp_rate": "Resp. rate",
    "temperature": "Temp (°C)", "spo2": "SpO2 %", "gcs": "GCS total",
    "creatinine": "Kreatinin (mg/dL)", "lactate": "Lactate (mmol/L)", "wbc": "WBC (10^9/L)",
    "sodium": "Na+ (mmol/L)", "acuity_score": "APACHE IV score"}


def renamed(frame: pd.DataFrame, spec: DatasetSpec, names: Dict[str, str],
            positive: str, negative: str) -> Tuple[pd.DataFrame, DatasetSpec]:
  """The same table and spec under other column names and label classes."""
  raw = yaml.safe_load(spec.to_yaml())
  for key in ("id_column", "label_column", "site_column"):
    if raw.get(key):
      raw[key] = names.get(raw[key], raw[key])
  for feature in raw["static"]:
    feature["name"] = names.get(feature["name"], feature["name"])
  for series in raw["series"]:
    series["columns"] = [names.get(c, c) for c in series["columns"]]
  raw["label_positive"], raw["label_negative"] = positive, negative
  frame = frame.copy()
  frame[spec.label_column] = frame[spec.label_column].map({1: positive, 0: negative})
  return frame.rename(columns=names), spec_from_dict(raw)


def odd_icu(patients: int = 1500, sites: int = 4, seed: int = 7):
  """Rows 1 and 4 of issue 12: keywords, builtins, spaces, signs, accents, a leading digit,
  names equal but for case (`Age` here, `age` in none), and Yes / No labels."""
  frame, spec = simulate("icu", patients=patients, sites=sites, seed=seed)
  return renamed(frame, spec, ODD_ICU_NAMES, "Yes", "No")


def hospital_export_icu(patients: int = 600, sites: int = 3, seed: int = 5):
  """The icu table under HOSPITAL_ICU_NAMES, its label written `died` / `survived`."""
  frame, spec = simulate("icu", patients=patients, sites=sites, seed=seed)
  return renamed(frame, spec, HOSPITAL_ICU_NAMES, "died", "survived")


def small_two_centre_trial(patients: int = 100, seed: int = 3):
  """Rows 2 and 3 of issue 12: a trial of 100 randomized patients at two centres, about
  half with every visit, the arms named `A` (intensive) and `P`."""
  frame, spec = simulate("sprint", patients=patients, sites=2, seed=seed)
  return renamed(frame, spec, {"intensive": "treat", "site": "centre"}, "A", "P")


# Visits of the real-shaped follow-up series; the first is always observed.
FOLLOW_UP = ("m0", "m3", "m6", "m9", "m12")
# Static labs of the skewed table: name -> (public min, max, median, log sd, decimals), the
# bounds as a data dictionary gives them, far wider than the bulk of the values.
SKEWED_LABS = {"creatinine": (0, 20, 1.0, 0.45, 2), "bilirubin": (0, 50, 0.7, 0.6, 1),
               "crp": (0, 500, 6.0, 0.9, 1)}
STAGES = ("I", "II", "III", "IV")


def skewed_labs_with_dropout(patients: int = 4000, seed: int = 11
                             ) -> Tuple[pd.DataFrame, DatasetSpec]:
  """A table shaped like a real cohort export, which the simulators' tidy tables are not:
  labs log-normal on wide public bounds (most values in 0.5-3 of 0-50), whole-number
  columns, a stage, a label written "died" / "alive", five follow-up visits of SBP and
  drug classes with monotone dropout that depends on the trajectory (a high SBP, a
  failing patient), and bilirubin never measured for about an eighth of the patients,
  mostly the early-stage ones. Its spec says missing: model, as such a table needs."""
  rng = np.random.default_rng(seed)
  n, t = patients, len(FOLLOW_UP)
  age = np.clip(rng.normal(63, 13, n), 18, 100).round(0)
  stage = rng.choice(len(STAGES), size=n, p=(0.3, 0.3, 0.25, 0.15))
  frailty = 0.4 * (age - 63) / 13 + 0.45 * stage + rng.normal(0, 1, n)  # unseen, drives all
  labs = {}
  for k, (name, (lo, hi, median, sd, decimals)) in enumerate(SKEWED_LABS.items()):
    labs[name] = np.clip(np.exp(np.log(median) + 0.15 * (k + 1) * frailty + rng.normal(0, sd, n)),
                         10.0 ** -decimals, hi).round(decimals)
  admissions = np.clip(rng.poisson(np.exp(0.2 + 0.4 * frailty)), 0, 50)
  sbp = np.clip(138 + 4 * frailty[:, None] + np.cumsum(rng.normal(0, 6, (n, t)), axis=1)
                + rng.normal(0, 10, (n, 1)), 80, 230).round(0)
  meds = np.clip(rng.poisson(1.5, n)[:, None] + np.cumsum(rng.random((n, t)) < 0.2 + 0.15
                                                          * (sbp > 140), axis=1), 0, 10)
  hazard = 0.06 * np.exp(0.5 * (sbp - 140) / 15 + 0.35 * frailty[:, None])
  observed = monotone_observed(rng.random((n, t - 1)) < hazard[:, :-1])
  logit = -1.6 + 0.9 * frailty + 0.4 * np.log(labs["creatinine"]) + 0.02 * (sbp[:, -1] - 138)
  died = rng.random(n) < 1 / (1 + np.exp(-logit))
  unmeasured = rng.random(n) < 1 / (1 + np.exp(-(-1.2 - 0.6 * stage)))
  labs["bilirubin"] = np.where(unmeasured, np.nan, labs["bilirubin"])
  table = {"patient": [f"R{p:06d}" for p in range(n)],
           "centre": [f"centre {c + 1}" for c in draw_sites(rng, n, 3)],
           "outcome": np.where(died, "died", "alive"), "age": age.astype(np.int64),
           "prior_admissions": admissions.astype(np.int64),
           "stage": np.array(STAGES)[stage], **labs}
  for name, values in (("sbp", sbp), ("meds", meds)):
    for v, visit in enumerate(FOLLOW_UP):
      table[f"{name}_{visit}"] = np.where(observed[:, v], values[:, v], np.nan)
  frame = pd.DataFrame(table)
  meds_columns = [f"meds_{v}" for v in FOLLOW_UP]
  frame[meds_columns] = frame[meds_columns].astype("Int64")
  return frame, spec_from_dict(skewed_labs_spec_dict(), "skewed_labs_with_dropout")


def skewed_labs_spec_dict() -> dict:
  """The spec of `skewed_labs_with_dropout` as a user would write it in YAML."""
  static = [{"name": "age", "type": "numeric", "min": 18, "max": 110, "integer": True},
            {"name": "prior_admissions", "type": "numeric", "min": 0, "max": 50,
             "integer": True},
            {"name": "stage", "type": "categorical", "values": list(STAGES)}]
  static += [{"name": name, "type": "numeric", "min": lo, "max": hi, "decimals": decimals}
             for name, (lo, hi, _, _, decimals) in SKEWED_LABS.items()]
  return {"name": "skewed_labs_dropout", "id_column": "patient", "label_column": "outcome",
          "label_positive": "died", "label_negative": "alive", "site_column": "centre",
          "missing": "model", "static": static,
          "series": [{"name": "sbp", "min": 60, "max": 260,
                      "columns": [f"sbp_{v}" for v in FOLLOW_UP]},
                     {"name": "meds", "min": 0, "max": 10, "integer": True,
                      "columns": [f"meds_{v}" for v in FOLLOW_UP]}]}
