"""The pre-flight check of `run`: a table is run whole or refused before anything is written."""

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest

from clinical_dp.simulators import simulate
from clinical_dp.validation import validate_table
from pipelines.config import build_config, training_config
from pipelines.preflight import RunRefused, check_run
from tests.conftest import run_cli
from tests.odd_tables import SMALL_SIZES, TABLE_CLASSES, odd_table
from tests.real_shaped import small_two_centre_trial, write_table


def _validated(tmp_path, frame, spec):
  data, _ = write_table(tmp_path, frame, spec)
  report = validate_table(data, spec)
  assert report.ok, report.findings
  return report.table


def _config(tmp_path, **training):
  return build_config(str(tmp_path / "run"), training=training_config(**training))


def _fixed_noise_config(tmp_path):
  """Configured noise and a budget it meets: the plan is checked with one accounting per
  trainer instead of a noise search (seconds each); the shapes, not the noise, are tested."""
  config = _config(tmp_path)
  training = config.training
  budget = dataclasses.replace(training.gan_budget, target_epsilon=20.0)
  return dataclasses.replace(config, training=dataclasses.replace(
      training, gan=dataclasses.replace(training.gan, noise_multiplier=30.0),
      classifier=dataclasses.replace(training.classifier, noise_multiplier=8.0),
      gan_budget=budget, classifier_budget=budget))


def test_a_small_two_centre_trial_is_planned_with_its_split(tmp_path):
  frame, spec = small_two_centre_trial()
  table = _validated(tmp_path, frame, spec)
  plan = check_run(table, spec, _config(tmp_path), "trial.csv")
  counts = dict(plan.split_patients)
  assert sum(counts.values()) == table[spec.id_column].nunique()
  assert counts["train"] > counts["test"] > 0 and plan.config.federated is not None


def test_one_site_leaves_the_federated_step_out_and_says_so(tmp_path):
  frame, spec = simulate("icu", patients=400, sites=1, seed=1)
  plan = check_run(_validated(tmp_path, frame, spec), spec, _config(tmp_path), "icu.csv")
  assert plan.config.federated is None
  assert any("federated step left out" in note and "1 site" in note for note in plan.notes)


def test_a_table_too_small_for_dp_training_is_refused_with_the_patients_needed(tmp_path):
  frame, spec = simulate("icu", patients=2000, sites=2, seed=1)
  table = _validated(tmp_path, frame, spec)
  rng = np.random.default_rng(0)
  # Keep both classes but very few patients: DP noise would drown the signal.
  keep = np.concatenate([rng.choice(np.flatnonzero(table[spec.label_column] == v), 12,
                                    replace=False) for v in (0, 1)])
  small = table.iloc[keep].reset_index(drop=True)
  try:
    check_run(small, spec, _config(tmp_path), "small.csv")
  except RunRefused as e:
    message = str(e)
  else:
    pytest.fail("24 patients were not refused")
  assert message.startswith("small.csv: 24 patients")
  assert "what to change" in message and "patients in the table" in message


def test_a_test_split_with_one_class_is_refused_by_name(tmp_path):
  frame, spec = simulate("icu", patients=400, sites=2, seed=1)
  table = _validated(tmp_path, frame, spec)
  plan = check_run(table, spec, _config(tmp_path), "icu.csv")
  assert plan.config is not None
  # Only negatives among the patients ExampleGen will put in the test split.
  from clinical_dp.validation import prepared_table  # pylint: disable=import-outside-toplevel
  from clinical_dp.example_gen_split import example_gen_splits  # pylint: disable=import-outside-toplevel
  splits = example_gen_splits(prepared_table(table, spec), {"train": 8, "eval": 1, "test": 1},
                              spec.id_column)
  table.loc[splits == "test", spec.label_column] = 0
  with pytest.raises(RunRefused, match=r"the test split \(\d+ patients\) has no patient of class 1"):
    check_run(table, spec, _config(tmp_path), "icu.csv")


def test_run_refuses_before_touching_the_output_directory(tmp_path):
  frame, spec = simulate("icu", patients=30, sites=2, seed=1)
  data, spec_path = write_table(tmp_path / "in", frame, spec)
  before = open(data, "rb").read()
  output = tmp_path / "run"
  result = run_cli("run", "--data", data, "--spec", spec_path, "--output", output, "--fast")
  assert result.returncode == 2, result.stderr
  assert "the pipeline cannot run on it" in result.stderr and "Traceback" not in result.stderr
  assert not output.exists() and open(data, "rb").read() == before


@pytest.mark.parametrize("name", sorted(TABLE_CLASSES))
def test_every_table_class_is_planned_whole(name, tmp_path):
  """Each shape of issue 12 (tests/odd_tables.py) passes the pre-flight check; a single
  site leaves the federated step out."""
  frame, spec = odd_table(name)
  table = _validated(tmp_path, frame, spec)
  plan = check_run(table, spec, _fixed_noise_config(tmp_path), f"{name}.csv")
  sites = table[spec.site_column].nunique() if spec.site_column else 0
  assert (plan.config.federated is None) == (sites == 1), name
  assert dict(plan.split_patients)["test"] > 0


@pytest.mark.parametrize("patients", [SMALL_SIZES[0], SMALL_SIZES[-1]])
def test_small_tables_are_planned_with_a_warning_about_the_generator(patients, tmp_path):
  frame, spec = odd_table("mixed", patients=patients)
  plan = check_run(_validated(tmp_path, frame, spec), spec, _config(tmp_path), "small.csv")
  assert any("DP marginals carry noise" in note and "limited use" in note for note in plan.notes)


def test_a_delta_of_one_over_n_or_more_is_refused_with_a_smaller_delta_to_give(tmp_path):
  """More patients cannot fix a delta above 1/N (a million patients at the default 1e-5):
  the advice is a smaller --delta, below 1/N; the federated step's delta is checked too."""
  frame, spec = simulate("icu", patients=400, sites=2, seed=1)
  table = _validated(tmp_path, frame, spec)
  config = _config(tmp_path)
  wide = dataclasses.replace(config.training.gan_budget, delta=0.01)  # 1/N about 1/320
  refused = dataclasses.replace(config, training=dataclasses.replace(
      config.training, gan_budget=wide, classifier_budget=wide),
      federated=dataclasses.replace(config.federated, delta=0.01))
  with pytest.raises(RunRefused) as caught:
    check_run(table, spec, refused, "icu.csv")
  message = str(caught.value)
  assert "delta 0.01 is not below 1/N" in message
  assert "federated step on" in message
  assert "what to change: a smaller --delta: below 1/N" in message and "e.g. 0.001" in message
  assert "patients in the table" not in message
  federated_only = dataclasses.replace(config, federated=refused.federated)
  with pytest.raises(RunRefused, match="federated step on .* delta 0.01"):
    check_run(table, spec, federated_only, "icu.csv")
