"""What `run` checks before the pipeline starts, so a table is run whole or refused at once.

`validate` checks each cell; this checks the table as the pipeline will use it: the
patient split ExampleGen will make (pipelines/splits.py), whether each split can be
trained and scored (both label classes where a model is fitted or an AUROC measured),
whether DP training at the budget can learn anything on the training split
(trainers/dp_training.py: dp_feasibility), and whether there are sites enough for
federated learning. A refusal names the rule and what to change; a table with a site
column but one site runs without the federated step, and the plan says so.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Tuple

import pandas as pd

from clinical_dp.names import ColumnKeys
from clinical_dp.spec import DatasetSpec
from clinical_dp.validation import prepared_table
from pipelines.config import PipelineConfig
from pipelines.splits import example_gen_splits

MIN_SITES = 2
# Noise on the GAN discriminator's averaged clipped gradient (noise multiplier / batch)
# under which the generator learned the class structure on simulated tables: it did at
# 0.04 (the default table at epsilon 1) and did not at 0.15 or more (400 rows or fewer).
GAN_LEARNED_AT_NOISE = 0.05


class RunRefused(ValueError):
  """The table is valid but cannot be run as configured; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """The configuration to run with, and what the pre-flight changed or noticed."""
  config: PipelineConfig
  split_patients: Tuple[Tuple[str, int], ...]
  notes: Tuple[str, ...] = ()


def _patients(table: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
  return table[spec.id_column].astype(str) if spec.id_column else pd.Series(
      table.index.astype(str), index=table.index)


def _class_name(spec: DatasetSpec, value: int) -> str:
  return repr(spec.label_positive if value == 1 else spec.label_negative)


def _split_problems(table: pd.DataFrame, splits: pd.Series, spec: DatasetSpec,
                    label: pd.Series) -> List[str]:
  """Train: both classes (a classifier and a conditional generator are fitted); test: both
  classes (AUROC); eval: some patients (the membership attacks' non-members)."""
  problems = []
  patients = _patients(table, spec)
  for split, need_classes in (("train", True), ("eval", False), ("test", True)):
    rows = splits == split
    count = patients[rows].nunique()
    if count == 0:
      problems.append(f"the {split} split is empty")
      continue
    if need_classes:
      present = set(label[rows].astype(int))
      for value in (1, 0):
        if value not in present:
          problems.append(f"the {split} split ({count} patients) has no patient of class "
                          f"{_class_name(spec, value)}")
  return problems


def _dp_checks(train_rows: int, max_rows: int, config: PipelineConfig
               ) -> Tuple[List[Tuple[str, int]], List[str]]:
  """(reason, fewest training rows that would do) for each DP trainer that cannot learn,
  and a warning when the generator trains, but under more noise than it learned with."""
  from trainers import accounting, dp_training  # pylint: disable=g-import-not-at-top
  training = config.training
  problems, notes = [], []
  for name, trainer, budget in (("DP AC-GAN", training.gan, training.gan_budget),
                                ("DP classifier", training.classifier,
                                 training.classifier_budget)):
    feasibility = dp_training.dp_feasibility(trainer, budget, train_rows, max_rows)
    if feasibility.feasible:
      if trainer is training.gan and feasibility.noise_per_example > GAN_LEARNED_AT_NOISE:
        notes.append(
            f"warning: the DP AC-GAN trains on {train_rows} rows under noise "
            f"{feasibility.noise_per_example:.2f} clips per averaged gradient at epsilon "
            f"{budget.target_epsilon:g}; on simulated tables it learned at "
            f"{GAN_LEARNED_AT_NOISE:g} or less and not at 0.15 or more, so expect a synthetic "
            "table of little use (a larger table or --target-epsilon lowers the noise)")
      continue
    reason = feasibility.reason
    if feasibility.epsilon is not None and feasibility.epsilon > budget.target_epsilon:
      # A configured noise over budget: the accountant's refusal says what would fit.
      plan = dp_training.plan_for(
          train_rows, dataclasses.replace(trainer, batch_size=feasibility.batch_size), budget,
          max_rows, label_count_noise_multiplier=getattr(trainer, "label_count_noise_multiplier",
                                                         0.0))
      try:
        accounting.check_budget(plan, budget.target_epsilon)
      except accounting.BudgetExceededError as e:
        reason = str(e)
    needed = dp_training.min_examples_for_dp(trainer, budget, max_rows)
    problems.append((f"{name} on {train_rows} training rows: {reason}", needed or 0))
  return problems, notes


def _federated_note(table: pd.DataFrame, spec: DatasetSpec, config: PipelineConfig
                    ) -> Tuple[PipelineConfig, Optional[str]]:
  if config.federated is None or not spec.site_column:
    return config, None
  sites = table[spec.site_column].astype(str).nunique()
  if sites < MIN_SITES:
    return (dataclasses.replace(config, federated=None),
            f"federated step left out: column '{spec.site_column}' holds {sites} site; "
            f"federated learning needs at least {MIN_SITES}")
  per_round = config.federated.clients_per_round
  if per_round and per_round > sites:
    return (dataclasses.replace(config, federated=dataclasses.replace(
        config.federated, clients_per_round=0)),
            f"federated step: {per_round} clients per round asked, {sites} sites present; "
            "every site takes part in every round")
  return config, None


def check_run(table: pd.DataFrame, spec: DatasetSpec, config: PipelineConfig, source: str
              ) -> RunPlan:
  """The run plan for a validated table (the patients the run will use), or RunRefused."""
  keys = ColumnKeys.for_spec(spec)
  internal = keys.internal_spec(spec)
  prepared = prepared_table(table, spec)
  buckets = dataclasses.asdict(config.splits)
  splits = example_gen_splits(prepared, buckets, internal.id_column)
  label = prepared[internal.label_column]
  patients = _patients(table, spec)
  split_patients = tuple((s, int(patients[splits == s].nunique())) for s in buckets)
  counts = ", ".join(f"{s} {n}" for s, n in split_patients)
  where = (f"{source}: {patients.nunique()} patients, split by "
           f"{'patient id' if spec.id_column else 'row'} into {counts}")

  problems = _split_problems(table, splits, spec, label)
  train = splits == "train"
  train_rows = int(train.sum())
  max_rows = int(patients[train].value_counts().max()) if train_rows else 1
  dp, notes = _dp_checks(train_rows, max_rows, config) if train_rows else ([], [])
  problems += [reason for reason, _ in dp]
  if problems:
    needed = max([n for _, n in dp if n] or [0])
    train_share = buckets["train"] / sum(buckets.values())
    advice = ("a table with more patients" if not needed else
              f"at least {needed} training rows, about {math.ceil(needed / train_share)} "
              "patients in the table")
    if dp:
      advice += ", or a larger --target-epsilon"
    raise RunRefused(f"{where}; the pipeline cannot run on it:\n"
                     + "\n".join(f"  {p}" for p in problems)
                     + f"\n  what to change: {advice}")
  config, note = _federated_note(table, spec, config)
  return RunPlan(config, split_patients, tuple(notes + ([note] if note else [])))
