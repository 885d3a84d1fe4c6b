"""What `run` checks before the pipeline starts, so a table is run whole or refused at once.

`validate` checks each cell; this checks the table as the pipeline will use it: the
patient split ExampleGen will make (clinical_dp/example_gen_split.py), whether each split
can be trained and scored (both label classes where a model is fitted or an AUROC measured),
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
from clinical_dp.example_gen_split import example_gen_splits

MIN_SITES = 2
# SPRINT_gan's generator (statistics_share 0, paper mode) learns from its DP steps alone:
# on simulated tables it learned the class structure under noise of 0.04 clips per
# averaged gradient (the default table at epsilon 1) and not at 0.15 or more.
GAN_LEARNED_AT_NOISE = 0.05
# The copula generator learns from its DP marginals: the noise summed over a column's
# bins, as a share of the patients of one label class, was 0.06 on the default table
# (median KS about 0.04 at epsilon 1); above this, expect visibly noisier columns.
MARGINAL_NOISE_SHARE = 0.1


class RunRefused(ValueError):
  """The table is valid but cannot be run as configured; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """The configuration to run with, and what the pre-flight changed or noticed."""
  config: PipelineConfig
  split_patients: Tuple[Tuple[str, int], ...]
  notes: Tuple[str, ...] = ()
  train_rows: int = 0  # the training split's rows, as ExampleGen will make it


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


def marginal_noise_share(gan, budget, spec: DatasetSpec, train_rows: int, max_rows: int
                         ) -> float:
  """The noise on one column's DP marginal CDF of the copula generator (the per-bin noise
  summed over its bins), as a share of one label class's patients."""
  from trainers import dp_statistics, dp_training, features  # pylint: disable=g-import-not-at-top
  statistics = gan.statistics(train_rows)
  codes = dp_statistics.CodeLayout.from_layout(features.PatientLayout.from_spec(spec),
                                               statistics.bins)
  per_bin = (dp_training.statistics_noise(gan, budget, max_rows)[0]
             * codes.marginal_sensitivity(statistics.dropout_weight(codes.num_released)))
  return per_bin * math.sqrt(statistics.bins) / max(train_rows / max_rows / 2, 1.0)


def _gan_warning(gan, budget, spec: DatasetSpec, train_rows: int, max_rows: int,
                 noise_per_example: float) -> Optional[str]:
  if gan.statistics_share:
    share = marginal_noise_share(gan, budget, spec, train_rows, max_rows)
    if share > MARGINAL_NOISE_SHARE:
      return (f"warning: on {train_rows} training rows at epsilon {budget.target_epsilon:g} "
              f"the generator's DP marginals carry noise of {share:.2f} of a label class "
              f"per column (the default table: 0.06), so expect a synthetic table of "
              f"limited use: noisy columns (a larger table or --target-epsilon lowers it)")
    return None
  if noise_per_example > GAN_LEARNED_AT_NOISE:
    return (f"warning: the DP AC-GAN trains on {train_rows} rows under noise "
            f"{noise_per_example:.2f} clips per averaged gradient at epsilon "
            f"{budget.target_epsilon:g}; on simulated tables it learned at "
            f"{GAN_LEARNED_AT_NOISE:g} or less and not at 0.15 or more, so expect a synthetic "
            "table of little use (a larger table or --target-epsilon lowers the noise)")
  return None


def _dp_checks(train_rows: int, max_rows: int, config: PipelineConfig, spec: DatasetSpec
               ) -> Tuple[List[Tuple[str, int]], List[str]]:
  """(reason, fewest training rows that would do) for each DP trainer that cannot learn,
  and a warning when the generator will be noisier than where it was measured."""
  from trainers import dp_training  # pylint: disable=g-import-not-at-top
  training = config.training
  problems, notes = [], []
  for name, trainer, budget in (("DP AC-GAN", training.gan, training.gan_budget),
                                ("DP classifier", training.classifier,
                                 training.classifier_budget)):
    feasibility = dp_training.dp_feasibility(trainer, budget, train_rows, max_rows)
    if feasibility.feasible:
      warning = trainer is training.gan and _gan_warning(
          trainer, budget, spec, train_rows, max_rows, feasibility.noise_per_example)
      if warning:
        notes.append(warning)
      continue
    needed = None
    over_budget = (feasibility.epsilon is not None
                   and feasibility.epsilon > budget.target_epsilon)
    if budget.delta * train_rows >= 1:  # more rows make it worse: a smaller delta (advice)
      over_budget = True
    if not over_budget:  # over budget, the accountant's advice in the reason says what fits
      needed = dp_training.min_examples_for_dp(trainer, budget, max_rows)
    problems.append((f"{name} on {train_rows} training rows: {feasibility.reason}",
                     needed or 0))
  return problems, notes


def _delta_problems(train_patients: int, config: PipelineConfig, spec: DatasetSpec
                    ) -> List[str]:
  """The federated step's delta against 1/N of its training patients, as the trainers'
  is checked against their rows (dp_training.dp_feasibility)."""
  federated = config.federated
  if federated is None or not spec.site_column or federated.delta * train_patients < 1:
    return []
  return [f"federated step on {train_patients} training patients: delta {federated.delta:g} "
          f"is not below 1/N = 1/{train_patients}"]


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
  dp, notes = _dp_checks(train_rows, max_rows, config, spec) if train_rows else ([], [])
  problems += [reason for reason, _ in dp]
  large_delta = _delta_problems(int(patients[train].nunique()), config, spec)
  problems += large_delta
  if problems:
    needed = max([n for _, n in dp if n] or [0])
    train_share = buckets["train"] / sum(buckets.values())
    advice = ("a table with more patients" if not needed else
              f"at least {needed} training rows, about {math.ceil(needed / train_share)} "
              "patients in the table")
    if dp:
      advice += ", or a larger --target-epsilon"
    if large_delta or any(config_delta * train_rows >= 1 for config_delta in
                          (config.training.gan_budget.delta,
                           config.training.classifier_budget.delta)):
      advice = (f"a smaller --delta: below 1/N for N = {train_rows} training rows, e.g. "
                f"{10.0 ** -(math.floor(math.log10(train_rows)) + 1):g} (a delta of 1/N or "
                "more would allow releasing a patient's record outright)")
    raise RunRefused(f"{where}; the pipeline cannot run on it:\n"
                     + "\n".join(f"  {p}" for p in problems)
                     + f"\n  what to change: {advice}")
  config, note = _federated_note(table, spec, config)
  return RunPlan(config, split_patients, tuple(notes + ([note] if note else [])), train_rows)
