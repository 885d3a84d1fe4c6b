"""Which rows a run uses and the pipeline's input written from them: every validated
patient (or the fast configuration's seeded subset), checked by the preflight before
anything is written, then the prepared CSV that CsvExampleGen reads."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Tuple

import numpy as np
import pandas as pd

from clinical_dp.console import say
from clinical_dp.spec import DatasetSpec
from clinical_dp.validation import ValidationReport, write_prepared_input
from pipelines.config import PipelineConfig
from pipelines.preflight import check_run
from pipelines.run_directory import OutputDirError


@dataclasses.dataclass
class PreparedInput:
  source: str
  prepared_csv: str
  rows_in_file: int
  rows_dropped_missing: int
  rows_used: int
  patients_used: int
  subsampled: bool
  train_rows: int = 0  # of the split ExampleGen will make (pipelines/preflight.py)


@dataclasses.dataclass
class SelectedInput:
  """The validated rows the run will use (all, or the fast configuration's patients)."""
  report: ValidationReport
  table: pd.DataFrame
  subsampled: bool
  train_rows: int = 0  # set by plan_run


def select_patients(report: ValidationReport, spec: DatasetSpec, config: PipelineConfig
                    ) -> SelectedInput:
  """Every patient, or the fast configuration's seeded subset of patients."""
  table = report.table
  patients = table[spec.id_column] if spec.id_column else table.index.to_series()
  if not config.max_patients or patients.nunique() <= config.max_patients:
    return SelectedInput(report, table, subsampled=False)
  rng = np.random.default_rng(0)
  keep = rng.choice(patients.unique(), size=config.max_patients, replace=False)
  return SelectedInput(report, table[patients.isin(keep)].reset_index(drop=True),
                       subsampled=True)


def plan_run(report: ValidationReport, spec: DatasetSpec, config: PipelineConfig,
             log=say) -> Tuple[SelectedInput, PipelineConfig]:
  """The rows and configuration to run with; raises RunRefused (pipelines/preflight.py)
  before anything is written when the table cannot be run whole."""
  selected = select_patients(report, spec, config)
  plan = check_run(selected.table, spec, config, report.file)
  log(f"      splits by {'patient' if spec.id_column else 'row'}: "
      + ", ".join(f"{split} {count}" for split, count in plan.split_patients) + " patients")
  for note in plan.notes:
    log(f"      {note}")
  selected.train_rows = plan.train_rows
  return selected, plan.config


def prepare_input(selected: SelectedInput, spec: DatasetSpec, config: PipelineConfig,
                  resume: bool = False) -> PreparedInput:
  """Writes the selected rows as the pipeline's input (feature keys, label 1 / 0).

  resume: the input is already there and is kept as it is (a rewritten file would look
  new to CsvExampleGen and every component after it would run again); it must be what
  the table gives now, else the table changed since the run started."""
  table, report = selected.table, selected.report
  patients = table[spec.id_column] if spec.id_column else table.index.to_series()
  if resume:
    prepared = os.path.join(config.input_dir, "data.csv")
    check_dir = tempfile.mkdtemp(dir=config.output_dir, prefix=".resume-check-")
    try:
      check = write_prepared_input(table, spec, check_dir)
      with open(prepared, "rb") as ours, open(check, "rb") as now:
        unchanged = ours.read() == now.read()
    finally:
      shutil.rmtree(check_dir)
    if not unchanged:
      raise OutputDirError(f"{report.file}: the table is not the one the run in "
                           f"{config.output_dir} started on; start a new run")
  else:
    prepared = write_prepared_input(table, spec, config.input_dir)
  return PreparedInput(source=os.path.abspath(report.file), prepared_csv=prepared,
                       rows_in_file=report.rows, rows_dropped_missing=report.dropped_rows,
                       rows_used=len(table), patients_used=int(patients.nunique()),
                       subsampled=selected.subsampled, train_rows=selected.train_rows)
