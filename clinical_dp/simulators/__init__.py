"""Seeded simulators of the access-controlled anchor datasets (SPRINT, eICU), and of a
cohort with skewed laboratory values (labs)."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import pandas as pd

from clinical_dp.files import write_atomically, write_text_atomically
from clinical_dp.simulators.icu import IcuConfig, icu_spec, simulate_icu
from clinical_dp.simulators.labs import LabsConfig, labs_spec, simulate_labs
from clinical_dp.simulators.sprint import SprintConfig, simulate_sprint, sprint_spec
from clinical_dp.spec import DatasetSpec

KINDS = ("sprint", "icu", "labs")


def simulate(kind: str, patients: Optional[int] = None, sites: Optional[int] = None,
             seed: int = 0) -> Tuple[pd.DataFrame, DatasetSpec]:
  """Simulates a table of the given kind; None keeps that kind's default size."""
  if kind == "sprint":
    config, simulator, spec_fn = SprintConfig(), simulate_sprint, sprint_spec
  elif kind == "icu":
    config, simulator, spec_fn = IcuConfig(), simulate_icu, icu_spec
  elif kind == "labs":
    config, simulator, spec_fn = LabsConfig(), simulate_labs, labs_spec
  else:
    raise ValueError(f"unknown simulator kind {kind!r}; choose one of {list(KINDS)}")
  changes = {"seed": seed}
  if patients is not None:
    changes["patients"] = patients
  if sites is not None:
    changes["sites"] = sites
  config = dataclasses.replace(config, **changes)
  if config.patients < 10:
    raise ValueError(f"--patients must be at least 10, got {config.patients}")
  if config.sites < 1:
    raise ValueError(f"--sites must be at least 1, got {config.sites}")
  return simulator(config), spec_fn(config)


def write_simulated(out_dir: str, frame: pd.DataFrame, spec: DatasetSpec) -> Tuple[str, str]:
  """Writes DIR/data.csv and DIR/spec.yaml, each atomically."""
  data_path = write_atomically(os.path.join(out_dir, "data.csv"),
                               lambda tmp: frame.to_csv(tmp, index=False))
  spec_path = write_text_atomically(os.path.join(out_dir, "spec.yaml"), spec.to_yaml())
  return data_path, spec_path
