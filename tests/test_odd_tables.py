"""Small and oddly shaped tables (issue 12), without a pipeline run: the table generator,
batch fitting and the can-DP-work criterion, the GAN's layout for few visits, and the
report's functions on one-class, constant and feature-poor inputs."""

import dataclasses
import html
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from clinical_dp.spec import DatasetSpec, SeriesFeature, StaticFeature, load_spec
from clinical_dp.validation import validate_table
from clinical_dp.report_format import json_safe
from components.evaluation import (attacks, audit, disclosure, fidelity, plots, report_html,
                                   utility, verdicts)
from tests import odd_tables
from trainers import accounting, classifier, dp_training, gan, gan_trainer
from trainers.features import PatientLayout

BUDGET = dp_training.PrivacyBudget(target_epsilon=1.0, delta=1e-5)
FAST_UTILITY = utility.UtilityConfig(bootstrap_samples=20, forest_trees=10, shuffle_repeats=3)
TINY_GAN = gan.GanConfig(latent_dim=8, generator_units=16, generator_filters=8,
                         discriminator_filters=4, discriminator_units=16, epochs=1)


# The generator of odd tables.

@pytest.mark.parametrize("name", sorted(odd_tables.TABLE_CLASSES))
def test_every_table_class_is_valid_seeded_and_learnable(name, tmp_path):
  frame, spec = odd_tables.odd_table(name, patients=120, seed=3)
  data, spec_path = odd_tables.write_table(str(tmp_path), frame, spec)
  assert validate_table(data, load_spec(spec_path)).ok
  again, _ = odd_tables.odd_table(name, patients=120, seed=3)
  pd.testing.assert_frame_equal(frame, again)
  assert frame[odd_tables.ID_COLUMN].nunique() == 120
  assert set(frame[odd_tables.LABEL_COLUMN]) == {0, 1}
  assert all(c == c.lower() and c.isascii() for c in frame.columns)
  # Learnable: a logistic regression on the numeric and one-hot columns beats chance.
  x = pd.get_dummies(frame[spec.feature_columns].astype(
      {f.name: str for f in spec.static if f.is_categorical})).to_numpy(float)
  y = frame[odd_tables.LABEL_COLUMN].to_numpy()
  half = len(y) // 2
  model = LogisticRegression(max_iter=2000).fit(x[:half], y[:half])
  assert roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1]) > 0.7


def test_table_classes_have_the_shapes_they_name():
  shapes = {name: odd_tables.odd_table(name, patients=60) for name in odd_tables.TABLE_CLASSES}
  assert not shapes["static_only"][1].series
  assert not shapes["series_only"][1].static
  assert shapes["series_two_visits"][1].num_visits == 2
  assert shapes["series_three_visits"][1].num_visits == 3
  categorical_only = shapes["categorical_only"][1]
  assert not categorical_only.series and all(f.is_categorical for f in categorical_only.static)
  assert max(len(f.values) for f in shapes["categorical_30"][1].static) == 30
  frame = shapes["constant_columns"][0]
  assert frame[odd_tables.CONSTANT_STATIC].nunique() == 1
  assert frame.filter(like=odd_tables.CONSTANT_SERIES).stack().nunique() == 1
  repeated = shapes["repeated_ids"][0]
  assert repeated[odd_tables.ID_COLUMN].value_counts().max() == 3
  assert (repeated.groupby(odd_tables.ID_COLUMN)[odd_tables.SITE_COLUMN].nunique() == 1).all()
  for name, sites in (("one_site", 1), ("two_sites", 2), ("fifty_sites", 50)):
    assert shapes[name][0][odd_tables.SITE_COLUMN].nunique() == sites
  assert shapes["no_site"][1].site_column is None


# Batch fitting and the can-DP-work criterion.

@pytest.mark.parametrize("config", [gan.GanConfig(), classifier.ClassifierConfig()],
                         ids=["gan", "classifier"])
@pytest.mark.parametrize("rows", [300, 5000, 16_001, 25_601, 79_984, 999_999, 10 ** 7])
def test_large_tables_train_at_most_max_steps_and_the_plan_counts_them(config, rows):
  lines = []
  fitted = dp_training.fit_to_data(config, rows, log=lines.append)
  planned = dp_training.plan_for(rows, dataclasses.replace(fitted, noise_multiplier=5.0),
                                 BUDGET)
  uncapped = math.ceil(config.epochs * rows / config.batch_size)
  assert planned.steps == min(uncapped, config.max_steps)
  assert (fitted.epochs < config.epochs) == (uncapped > config.max_steps) == bool(lines)
  if lines:
    assert f"above the cap of {config.max_steps}" in lines[0]
  # Paper mode (SPRINT_gan's 500 epochs of batch 1) is never capped.
  paper = gan.paper_config()
  assert dp_training.fit_to_data(paper, rows, log=None).epochs == paper.epochs


@pytest.mark.parametrize("config", [gan.GanConfig(), gan.paper_config(),
                                    classifier.ClassifierConfig()],
                         ids=["gan", "gan_paper", "classifier"])
@pytest.mark.parametrize("rows", [1, 30, 42, 64, 300, 5000])
def test_fit_batch_to_data_caps_the_batch_at_the_rows_and_says_so(config, rows):
  lines = []
  fitted = dp_training.fit_batch_to_data(config, rows, log=lines.append)
  assert fitted.batch_size == min(config.batch_size, rows)
  assert dataclasses.replace(fitted, batch_size=config.batch_size) == config
  assert bool(lines) == (rows < config.batch_size)
  # The accountant accepts the fitted plan, one row per patient or several.
  for max_rows in (1, 3):
    plan = dp_training.plan_for(rows, dataclasses.replace(fitted, noise_multiplier=5.0),
                                BUDGET, max_rows_per_patient=max_rows)
    assert plan.batch_size <= plan.num_examples


def _train_rows(patients):
  return int(0.8 * patients)  # the pipeline's 8:1:1 split, roughly


@pytest.mark.parametrize("patients", odd_tables.SMALL_SIZES)
def test_fast_configs_can_train_on_small_tables(patients):
  rows = _train_rows(patients)
  for config in (dataclasses.replace(gan.GanConfig(), epochs=2),
                 dataclasses.replace(classifier.ClassifierConfig(), epochs=2)):
    if rows >= config.batch_size:  # the accounting of partial batches is slow; not needed
      continue
    verdict = dp_training.dp_feasibility(config, BUDGET, rows)
    assert verdict.feasible, verdict.reason
    assert verdict.batch_size == rows and verdict.epsilon <= 1.0
    assert verdict.noise_per_example == pytest.approx(verdict.noise_multiplier / rows)
    count_noise = getattr(config, "label_count_noise_multiplier", 0.0)
    assert verdict.label_rate_noise_sd == (count_noise / rows if count_noise else None)
    json.dumps(verdict.to_dict(), allow_nan=False)


def test_feasibility_refuses_noise_that_drowns_the_signal_and_plans_over_budget():
  # SPRINT_gan's generator learns from its DP steps alone (30 epochs: noise 22.6 at
  # batch = rows, every step sees all rows); the copula generator from its statistics.
  assert dp_training.dp_feasibility(gan.GanConfig(), BUDGET, 20).feasible
  config = dataclasses.replace(gan.GanConfig(), statistics_share=0.0)
  verdict = dp_training.dp_feasibility(config, BUDGET, 20)
  assert not verdict.feasible and "drowns" in verdict.reason
  assert verdict.noise_per_example > 1.0
  assert dp_training.dp_feasibility(config, BUDGET, 40).feasible
  # A configured noise that overspends the budget (paper mode, 500 epochs at batch 1).
  paper = dp_training.dp_feasibility(gan.paper_config(), BUDGET, 100)
  assert not paper.feasible and "over the budget" in paper.reason and paper.epsilon > 1
  # delta must be below 1/N.
  assert not dp_training.dp_feasibility(config, dp_training.PrivacyBudget(1.0, 0.1), 20).feasible


def test_min_examples_for_dp_is_the_boundary_of_the_criterion():
  config = dataclasses.replace(gan.GanConfig(), statistics_share=0.0)  # learns from DP steps
  n = dp_training.min_examples_for_dp(config, BUDGET)
  assert n is not None and 10 < n < config.batch_size  # rows above the batch pass too
  assert dp_training.dp_feasibility(config, BUDGET, n).feasible
  assert not dp_training.dp_feasibility(config, BUDGET, n - 1).feasible
  classifier_n = dp_training.min_examples_for_dp(classifier.ClassifierConfig(), BUDGET,
                                                 upper=64)
  assert classifier_n is not None and classifier_n < 64
  # A stricter criterion needs more rows; an impossible one none.
  assert dp_training.min_examples_for_dp(config, BUDGET, max_noise_per_example=0.3,
                                         upper=config.batch_size) > n
  assert dp_training.min_examples_for_dp(
      dataclasses.replace(config, noise_multiplier=0.01), BUDGET, upper=200) is None


def test_trainers_fit_the_batch_and_record_what_ran():
  rng = np.random.default_rng(0)
  frame, spec = odd_tables.odd_table("mixed", patients=12)
  layout = PatientLayout.from_spec(spec)
  inputs = [rng.random((12, layout.num_visits, layout.num_series)).astype(np.float32),
            rng.random((12, layout.static_width)).astype(np.float32)]
  labels = frame[odd_tables.LABEL_COLUMN].to_numpy(np.int32).reshape(-1, 1)
  lines = []
  trained = gan_trainer.train_gan(inputs, labels, spec, TINY_GAN, BUDGET, seed=0,
                                  log=lines.append)
  assert trained.config.batch_size == 12 and trained.record.batch_size == 12
  assert trained.record.epsilon <= 1.0 and any("above the 12 training rows" in l for l in lines)
  # The classifier, with several rows per patient: Poisson sampling at rate 1 (the batch
  # is every row) with the patient-level bound.
  x = np.concatenate([i.reshape(12, -1) for i in inputs], axis=1)
  _, record = classifier.train_classifier(
      x, labels.reshape(-1), dataclasses.replace(classifier.ClassifierConfig(), epochs=1),
      BUDGET, seed=0, max_rows_per_patient=3, log=lines.append)
  assert record.sampling == "poisson" and record.batch_size == 12
  assert record.sampling_probability == 1.0
  assert record.unit == "patient" and record.epsilon <= 1.0


# The GAN's layout for few visits.

def _series_spec(visits, static=True):
  return DatasetSpec(
      name="few_visits", label_column="y",
      static=(StaticFeature("age", "numeric", min=0, max=100),) if static else (),
      series=(SeriesFeature("sbp", 60, 260, tuple(f"sbp_v{v}" for v in range(visits))),
              SeriesFeature("dbp", 30, 150, tuple(f"dbp_v{v}" for v in range(visits)))))


@pytest.mark.parametrize("visits", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("mode", ["default", "paper"])
def test_gan_builds_and_steps_for_few_visits(visits, mode):
  base = gan.paper_config(epochs=1) if mode == "paper" else gan.GanConfig()
  config = dataclasses.replace(base, latent_dim=8, generator_units=16, batch_size=4,
                               discriminator_units=16, noise_multiplier=1.0)
  layout = PatientLayout.from_spec(_series_spec(visits, static=visits % 2 == 0))
  generator = gan.build_generator(layout, config)
  discriminator = gan.build_discriminator(layout, config)
  fake, _ = gan.sample_fake(generator, 4, config.latent_dim)
  assert tuple(fake[0].shape) == (4, visits, 2)
  real_fake, label = discriminator(fake, training=False)
  assert tuple(real_fake.shape) == (4, 1) and tuple(label.shape) == (4, 1)
  real = [tf.random.uniform(f.shape) for f in fake]
  labels = tf.constant([[0], [1], [0], [1]], tf.int32)
  loss = gan.discriminator_dp_step(discriminator, generator,
                                   gan.dp_discriminator_optimizer(config), real, labels,
                                   config.latent_dim)
  assert np.isfinite(float(loss))


# The report's functions on one-class, constant and feature-poor inputs.

def _assert_json(value):
  return json.loads(json.dumps(json_safe(value), allow_nan=False))


def test_utility_on_a_one_class_test_split_is_na_with_the_reason():
  rng = np.random.default_rng(0)
  x, y = rng.random((60, 3)), np.tile([0, 1], 30)
  x_test, y_test = rng.random((8, 3)), np.ones(8, int)
  table = utility.utility_table({"real": (x, y), "synthetic": (x, y)}, x_test, y_test,
                                FAST_UTILITY)
  for model in utility.MODELS:
    assert table["real"][model]["auroc"] is None
    assert "only label 1" in table["real"][model]["auroc_reason"]
    assert table["real"][model]["accuracy"] is not None
  table["synthetic_relative_to_real"] = utility.relative_to_real(table, "synthetic")
  assert set(table["synthetic_relative_to_real"].values()) == {None}
  control = utility.shuffled_label_control(x, y, x_test, y_test, FAST_UTILITY)
  assert control["auroc"] is None and "only label 1" in control["auroc_reason"]
  verdict = verdicts.utility_verdict(table, verdicts.Thresholds())
  assert verdict["status"] == "unknown" and "only label 1" in verdict["text"]
  table["shuffled_label_control"] = control
  assert plots.utility_bars(table)[:4] == b"\x89PNG"
  _assert_json(table)


def _spec(static=(), series=()):
  return DatasetSpec(name="odd", label_column="y", static=tuple(static), series=tuple(series))


def test_fidelity_with_constant_columns_and_without_numeric_columns():
  rng = np.random.default_rng(1)
  spec = _spec(static=[StaticFeature("unit", "numeric", min=0, max=10),
                       StaticFeature("age", "numeric", min=0, max=100),
                       StaticFeature("sex", "categorical", values=("F", "M"))],
               series=[SeriesFeature("flag", 0, 5, ("flag_v1", "flag_v2"))])
  n = 50
  real = pd.DataFrame({"y": np.tile([0, 1], n // 2), "unit": 1.0, "age": rng.uniform(20, 80, n),
                       "sex": rng.choice(["F", "M"], n), "flag_v1": 1.0, "flag_v2": 1.0})
  synthetic = real.copy()
  synthetic["age"] = rng.uniform(20, 80, n)
  result = fidelity.fidelity_report(real, synthetic, spec)
  assert result["marginals"]["unit"]["ks"] == 0.0
  assert result["correlation_spearman"] is None
  assert "fewer than 3" in result["correlation_reason"]
  assert "unit" in result["correlation"]["left_out_constant"]
  assert "could not be measured: fewer than 3" in verdicts.fidelity_verdict(
      result, verdicts.Thresholds())["text"]
  assert plots.correlation_matrices(result) is None
  _assert_json(result)
  # No numeric column at all, no series.
  categorical = _spec(static=[StaticFeature("sex", "categorical", values=("F", "M"))])
  result = fidelity.fidelity_report(real, synthetic, categorical)
  assert result["median_ks"] is None and result["correlation_spearman"] is None
  assert "no numeric columns" in result["correlation_reason"]
  assert plots.trajectories(result, "y") is None
  _assert_json(result)


def test_correlation_agreement_with_equal_correlations_is_na_not_nan():
  rng = np.random.default_rng(2)
  base = rng.normal(size=200)
  frame = pd.DataFrame({c: base + 0.0 * i for i, c in enumerate("abc")})  # all correlations 1
  result = fidelity.correlation_agreement(frame, frame)
  assert result["spearman"] is None and "all equal" in result["reason"]
  _assert_json(result)


def test_attacks_disclosure_and_control_on_degenerate_inputs():
  assert attacks.attack_metrics([0.1, 0.2], [])["auroc"] is None
  # A control forest trained on one class only.
  x = np.random.default_rng(3).random((20, 3))
  probabilities = audit.overfit_model(x, np.zeros(20, int), audit.AuditConfig(control_trees=5))
  assert np.all(probabilities(x) == 0)
  # Categorical-only features: held-out rows coincide with training rows.
  train = np.array([[1, 0], [0, 1]] * 10, float)
  d = disclosure.disclosure_report(train, train[:6], train[:6])
  assert d["dcr_holdout_median"] == 0 and d["dcr_ratio"] == 1.0 and "note" in d
  d = disclosure.disclosure_report(train, train[:6], train[:6] + 0.5)
  assert d["dcr_ratio"] is None and d["dcr_reason"]
  _assert_json(d)


def test_report_renders_and_serialises_with_na_everywhere():
  rng = np.random.default_rng(4)
  x, y = rng.random((40, 2)), np.tile([0, 1], 20)
  x_test, y_test = rng.random((4, 2)), np.zeros(4, int)
  use = utility.utility_table({"real": (x, y), "synthetic": (x, y)}, x_test, y_test,
                              FAST_UTILITY)
  use["synthetic_relative_to_real"] = utility.relative_to_real(use, "synthetic")
  use["shuffled_label_control"] = utility.shuffled_label_control(x, y, x_test, y_test,
                                                                 FAST_UTILITY)
  use["test_patients"], use["dp_models"] = 4, {}
  spec = _spec(static=[StaticFeature("sex", "categorical", values=("F", "M"))])
  frame = pd.DataFrame({"y": y, "sex": rng.choice(["F", "M"], 40)})
  fid = fidelity.fidelity_report(frame, frame, spec)
  scores = {"members": attacks.attack_metrics([0.2, 0.4], [0.1, 0.3]),
            "empty": attacks.attack_metrics([0.2], [])}
  attack = {"membership_auroc": 0.5, "positive_control_auroc": 0.7, "released": ["members"],
            "targets": {"members": scores}, "setup": "test",
            "thresholds": dataclasses.asdict(verdicts.Thresholds())}
  record = accounting.compute_epsilon(accounting.PrivacyPlan(40, 40, 5.0, 1, 1e-5)).to_dict()
  result = {"dataset": "odd", "data_note": "note", "utility": use, "fidelity": fid,
            "attack": attack,
            "disclosure": {**disclosure.disclosure_report(x, x[:5], x[:5] + 0.1),
                           "exact_copies": 0},
            "privacy": {**{k: record[k] for k in ("epsilon", "delta", "unit", "accountant",
                                                  "sampling")},
                        "artifacts": {"generator": record}},
            "baselines": {"copula": {"name": "DP Gaussian copula", "released": False,
                                     "utility": use, "fidelity": fid}},
            "headline": {"utility": verdicts.utility_verdict(use, verdicts.Thresholds()),
                         "fidelity": verdicts.fidelity_verdict(fid, verdicts.Thresholds()),
                         "privacy": verdicts.attack_verdict(attack, verdicts.Thresholds())}}
  result["headline"]["baselines"] = verdicts.baseline_verdict(use, fid, result["baselines"])
  assert result["headline"]["baselines"]["status"] == "unknown"
  result["utility"]["real"]["lr"]["auroc_ci"] = [float("nan"), float("nan")]
  page = report_html.render_html(result, {"utility": plots.utility_bars(use, result["baselines"]),
                                     "trajectories": plots.trajectories(fid, "y"),
                                     "correlation": plots.correlation_matrices(fid),
                                     "attacks": plots.attack_bars(attack)})
  assert "n/a" in page and "only label 0" in page and "no series" in page
  # Not for release, before anything else on the page (even without the JSON's key).
  body = page.split("<body>", 1)[1]
  assert body.startswith(
      f'\n<p class="private"><strong>{html.escape(report_html.NOT_FOR_RELEASE)}</strong>')
  assert "DP Gaussian copula <small>(not released)" in page
  text = re.sub(r'src="data:[^"]*"', "", page)  # base64 images may spell anything
  assert "nan" not in text.lower()
  loaded = _assert_json(result)
  assert loaded["utility"]["real"]["lr"]["auroc_ci"] == [None, None]


def test_attack_verdict_on_few_patients_is_inconclusive_not_fail():
  thresholds = verdicts.Thresholds()
  def attack(auroc, members, non_members):
    return {"membership_auroc": auroc, "positive_control_auroc": 0.7,
            "strongest": {"auroc": auroc, "members": members, "non_members": non_members}}
  small = verdicts.attack_verdict(attack(0.63, 80, 10), thresholds)
  assert small["status"] == "inconclusive" and "10 non-members" in small["text"]
  assert verdicts.attack_verdict(attack(0.63, 1000, 600), thresholds)["status"] == "fail"
  assert verdicts.attack_verdict(attack(0.52, 80, 10), thresholds)["status"] == "pass"
  # The strongest of several attacks: the interval widens with their number.
  borderline = attack(0.68, 60, 40)
  assert verdicts.attack_verdict(borderline, thresholds)["status"] == "fail"
  verdict = verdicts.attack_verdict({**borderline, "attacks_compared": 6}, thresholds)
  assert verdict["status"] == "inconclusive" and "corrected for the 6 attacks" in verdict["text"]
  # At AUROC 0.5, Hanley-McNeil is the Mann-Whitney null: sqrt((m + n + 1) / (12 m n)).
  assert verdicts.auroc_standard_error(0.5, 300, 200) == pytest.approx(
      math.sqrt(501 / (12 * 300 * 200)))
