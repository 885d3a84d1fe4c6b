"""Tables shaped like the real ones that broke the pipeline (issue 12), made from the
seeded simulators: odd column names, labels written as words, few patients, two centres.
"""

from typing import Dict, Tuple

import pandas as pd
import yaml

from clinical_dp.simulators import simulate
from clinical_dp.spec import DatasetSpec, spec_from_dict
from tests.odd_tables import write_table  # noqa: F401  (one writer for every test table)

# The icu table's columns under names a hospital export might carry.
ODD_ICU_NAMES = {
    "patient_id": "id", "hospital": "Hospital / site", "hospital_death": "Died in hospital?",
    "age": "Age", "heart_rate": "heart rate (bpm)", "temperature": "Température",
    "acuity_score": "2nd-score.v1", "mean_bp": "lambda", "resp_rate": "class",
    "spo2": "SpO2 %", "gcs": "type", "sodium": "Na+ (mmol/L)", "creatinine": "größe",
    "lactate": "Lactate", "wbc": "WBC"}


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


def small_two_centre_trial(patients: int = 100, seed: int = 3):
  """Rows 2 and 3 of issue 12: a trial of 100 randomized patients at two centres, about
  half with every visit, the arms named `A` (intensive) and `P`."""
  frame, spec = simulate("sprint", patients=patients, sites=2, seed=seed)
  return renamed(frame, spec, {"intensive": "treat", "site": "centre"}, "A", "P")
