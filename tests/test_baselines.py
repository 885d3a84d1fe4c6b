"""The report's DP baselines (copula, independent marginals), its trajectory-error and
saturation measures, and the verdict on whether the released table beats the baselines;
on hand-made data, without a pipeline run."""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest

from clinical_dp.names import binary_label_spec
from clinical_dp.spec import DatasetSpec, SeriesFeature, StaticFeature
from clinical_dp.validation import validate_table
from components import evaluation_report
from clinical_dp.report_format import json_safe
from components.evaluation import baselines, fidelity, plots, report_html, utility, verdicts
from tests import odd_tables
from trainers import accounting
from trainers.features import PatientLayout

FAST_UTILITY = utility.UtilityConfig(bootstrap_samples=20, forest_trees=10, shuffle_repeats=3)
SCALES = (0.1, 0.3, 0.6, 1.0, 2.0)  # noise around one factor: correlations of every strength


def _correlated(n, seed):
  """Five numeric columns on [0, 1] around one factor, and a label that follows it."""
  rng = np.random.default_rng(seed)
  factor = rng.normal(size=(n, 1))
  flat = 0.5 + 0.1 * (factor + rng.normal(size=(n, len(SCALES))) * np.array(SCALES))
  labels = (factor[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
  layout = PatientLayout(num_visits=0, num_series=0,
                         numeric_static=tuple(f"x{i}" for i in range(len(SCALES))),
                         categorical_static=())
  return np.clip(flat, 0, 1), labels, layout


# Privacy.

@pytest.mark.parametrize("rows_per_patient", [1, 3])
def test_each_baseline_spends_the_budget_once_per_statistic_for_the_patient(rows_per_patient):
  copula, copula_privacy = baselines.noise_for_budget(
      baselines.BASELINES["copula"], 1.0, 1e-5, rows_per_patient, 500)
  marginals, marginals_privacy = baselines.noise_for_budget(
      baselines.BASELINES["marginals"], 1.0, 1e-5, rows_per_patient, 500)
  assert copula_privacy["statistics"] == ["marginals", "correlation"] and len(copula) == 2
  assert marginals_privacy["statistics"] == ["marginals"] and len(marginals) == 1
  for noise, privacy in ((copula, copula_privacy), (marginals, marginals_privacy)):
    assert list(privacy["released_noise_multipliers"]) == list(noise)
    assert 0.98 < privacy["epsilon"] <= 1.0 and privacy["delta"] == 1e-5
    assert privacy["max_rows_per_patient"] == rows_per_patient
    assert privacy["unit"].startswith("patient" if rows_per_patient > 1 else "example")
    # Recomputed independently: both statistics are charged, each with the group bound.
    again = accounting.compute_epsilon(accounting.PrivacyPlan(
        num_examples=500, batch_size=500, noise_multiplier=0.0, epochs=0, delta=1e-5,
        max_rows_per_patient=rows_per_patient, released_noise_multipliers=tuple(noise)))
    assert again.epsilon == pytest.approx(privacy["epsilon"])
  # Either of the copula's statistics alone would spend about half the budget.
  alone = accounting.compute_epsilon(accounting.PrivacyPlan(
      num_examples=500, batch_size=500, noise_multiplier=0.0, epochs=0, delta=1e-5,
      max_rows_per_patient=rows_per_patient, released_noise_multipliers=copula[:1]))
  assert alone.epsilon < 0.7
  one_mechanism = accounting.gaussian_noise_for_epsilon(1.0, 1e-5)
  assert marginals[0] == pytest.approx(one_mechanism * rows_per_patient, rel=1e-4)


# What the baselines keep and lose.

def test_the_copula_keeps_a_strong_correlation_that_independent_marginals_lose():
  flat, labels, layout = _correlated(3000, seed=0)
  real = pd.DataFrame(flat)
  fitted = {name: baselines.fit_and_sample(name, flat, labels, layout, 1.0, 1e-5, 1, 3000,
                                           seed=1) for name in baselines.BASELINES}
  for name, baseline in fitted.items():
    assert baseline.flat.shape == flat.shape and set(np.unique(baseline.labels)) <= {0, 1}
    assert 0.35 < baseline.labels.mean() < 0.65  # the label rate survives either way
  copula, marginals = fitted["copula"], fitted["marginals"]
  assert np.corrcoef(copula.flat[:, 0], copula.flat[:, 1])[0, 1] > 0.8
  assert abs(np.corrcoef(marginals.flat[:, 0], marginals.flat[:, 1])[0, 1]) < 0.1
  # The label is a code too: the copula keeps its dependence on the factor, marginals not.
  # (weaker than the real 0.7 or so: a binary code's normal score is a coarse one)
  assert np.corrcoef(copula.flat[:, 0], copula.labels)[0, 1] > 0.35
  assert abs(np.corrcoef(marginals.flat[:, 0], marginals.labels)[0, 1]) < 0.1
  # The report's measure tells them apart: the positive control that it can fail.
  assert fidelity.correlation_agreement(real, pd.DataFrame(copula.flat))["spearman"] > 0.9
  assert fidelity.correlation_agreement(real, pd.DataFrame(marginals.flat))["spearman"] < 0.6
  again = baselines.fit_and_sample("copula", flat, labels, layout, 1.0, 1e-5, 1, 3000, seed=1)
  np.testing.assert_array_equal(again.flat, copula.flat)  # seeded


# Fidelity: trajectory error and saturation.

def _series_spec():
  return DatasetSpec(name="t", label_column="y",
                     static=(StaticFeature("age", "numeric", min=18, max=100),
                             StaticFeature("sex", "categorical", values=("F", "M"))),
                     series=(SeriesFeature("sbp", 60, 260, ("sbp_1", "sbp_2", "sbp_3")),))


def test_trajectory_error_per_series_and_class_in_clinical_units():
  real = pd.DataFrame({"y": [0, 0, 0, 1, 1], "age": [40, 50, 60, 70, 80], "sex": list("FMFMF"),
                       "sbp_1": [100, 110, 120, 150, 160], "sbp_2": [90, 95, 200, 140, 130],
                       "sbp_3": [100, 100, 100, 120, 120]})
  synthetic = real.assign(sbp_1=real["sbp_1"] + 3, sbp_3=[100, 100, 100, 60, 60])
  error = fidelity.fidelity_report(real, synthetic, _series_spec())["trajectory_error"]
  assert error["sbp"]["by_class"]["0"] == {"per_visit": [3.0, 0.0, 0.0], "max": 3.0}
  assert error["sbp"]["by_class"]["1"] == {"per_visit": [3.0, 0.0, 60.0], "max": 60.0}
  assert error["sbp"]["max"] == 60.0
  # A class the synthetic table lacks is n/a with the reason; the other is still measured.
  only_zero = synthetic[synthetic["y"] == 0]
  error = fidelity.fidelity_report(real, only_zero, _series_spec())["trajectory_error"]
  assert error["sbp"]["by_class"]["1"]["max"] is None
  assert "no synthetic patients of class 1" in error["sbp"]["by_class"]["1"]["reason"]
  assert error["sbp"]["max"] == 3.0
  no_series = DatasetSpec(name="t", label_column="y", static=_series_spec().static)
  assert fidelity.fidelity_report(real, synthetic, no_series)["trajectory_error"] == {}


def test_saturation_counts_values_at_a_public_bound_synthetic_and_real():
  real = pd.DataFrame({"y": [0, 1, 0, 1], "age": [18, 50, 60, 70], "sex": list("FMFM"),
                       "sbp_1": [100, 110, 120, 150], "sbp_2": [90, 95, 200, 140],
                       "sbp_3": [100, 100, 100, 120]})
  # A generator squashed into its range: sbp_2 at the min or max (to within 1e-6 of the range).
  synthetic = real.assign(sbp_2=[60.0, 260.0, 260.0 - 1e-5, 150.0], age=[18.0, 99.9, 50, 60])
  result = fidelity.fidelity_report(real, synthetic, _series_spec())["saturation"]
  assert result["columns"]["sbp_2"] == {"synthetic": 0.75, "real": 0.0}
  assert result["columns"]["age"] == {"synthetic": 0.25, "real": 0.25}
  assert result["columns"]["sbp_1"] == {"synthetic": 0.0, "real": 0.0}
  assert result["max_synthetic"] == 0.75 and result["max_synthetic_column"] == "sbp_2"
  assert result["max_real"] == 0.25 and result["max_real_column"] == "age"
  categorical = DatasetSpec(name="t", label_column="y", static=_series_spec().static[1:])
  none = fidelity.fidelity_report(real, synthetic, categorical)["saturation"]
  assert none["max_synthetic"] is None and none["reason"] == "no numeric columns"


# The verdict.

def _scored(ratio, rho, ks):
  return {"utility": {"synthetic_relative_to_real": {m: ratio for m in utility.MODELS}},
          "fidelity": {"correlation_spearman": rho, "median_ks": ks}}


def test_baseline_verdict_needs_every_measure_and_names_the_ones_behind():
  released = _scored(0.95, 0.9, 0.05)
  weak = {"marginals": {"name": "DP independent marginals", **_scored(0.5, 0.1, 0.04)}}
  verdict = verdicts.baseline_verdict(released["utility"], released["fidelity"], weak)
  assert verdict["status"] == "behind a baseline"
  assert verdict["comparisons"]["marginals"]["behind"] == ["median_ks"]  # lower KS is better
  assert "marginals on 1 of 6 measures (median KS), ahead on 5." in verdict["text"]
  strong = {"copula": {"name": "DP Gaussian copula", **_scored(0.9, 0.8, 0.06)},
            "marginals": {"name": "DP independent marginals", **_scored(0.5, 0.1, 0.3)}}
  verdict = verdicts.baseline_verdict(released["utility"], released["fidelity"], strong)
  assert verdict["status"] == "beats baselines"
  assert all(c["beats"] for c in verdict["comparisons"].values())
  # n/a measures are left out, not counted as a win or a loss.
  partial = _scored(0.95, None, 0.05)
  verdict = verdicts.baseline_verdict(partial["utility"], partial["fidelity"], strong)
  assert verdict["status"] == "beats baselines"
  assert verdict["comparisons"]["copula"]["not_measured"] == ["correlation_spearman"]
  nothing = _scored(None, None, None)
  verdict = verdicts.baseline_verdict(nothing["utility"], nothing["fidelity"], strong)
  assert verdict["status"] == "unknown" and "no measure could be compared" in verdict["text"]
  assert verdicts.baseline_verdict(released["utility"], released["fidelity"], {})["status"] \
      == "unknown"


def _with_draws(scored, draws):
  scored["utility"]["synthetic"] = {m: {"auroc_bootstrap": list(draws)} for m in utility.MODELS}
  return scored


def test_an_auroc_ratio_inside_its_paired_bootstrap_interval_is_level():
  rng = np.random.default_rng(0)
  theirs = 0.8 + 0.03 * rng.standard_normal(200)
  released = _with_draws(_scored(0.95, 0.9, 0.05), theirs + 0.01 * rng.standard_normal(200))
  baseline = {"copula": {"name": "DP Gaussian copula",
                         **_with_draws(_scored(0.94, 0.8, 0.06), theirs)}}
  verdict = verdicts.baseline_verdict(released["utility"], released["fidelity"], baseline)
  # The points say 0.95 > 0.94, but the paired draws cannot tell the two apart.
  copula = verdict["comparisons"]["copula"]
  assert copula["level"] == [f"{m}_relative_auroc" for m in utility.MODELS]
  assert copula["ahead"] == ["correlation_spearman", "median_ks"]
  assert verdict["status"] == "beats baselines" and copula["outcome"] == "beats"
  assert "beats the DP Gaussian copula on 2 of 6 measures; level on 4 (LR AUROC" in \
      verdict["text"]
  # The same points with draws that separate: a win (and a loss the other way round).
  apart = _with_draws(_scored(0.95, 0.9, 0.05), theirs + 0.02)
  assert verdicts.baseline_verdict(apart["utility"], apart["fidelity"], baseline)[
      "comparisons"]["copula"]["ahead"][:4] == copula["level"]
  below = _with_draws(_scored(0.93, 0.9, 0.05), theirs - 0.02)
  verdict = verdicts.baseline_verdict(below["utility"], below["fidelity"], baseline)
  assert verdict["status"] == "behind a baseline"
  assert verdict["comparisons"]["copula"]["behind"] == copula["level"]
  # Level on every measure compared is neither a win nor a loss.
  only_auroc = _with_draws(_scored(0.95, None, None), theirs + 0.01 * rng.standard_normal(200))
  verdict = verdicts.baseline_verdict(only_auroc["utility"], only_auroc["fidelity"], baseline)
  assert verdict["status"] == "level with a baseline"
  card = report_html._baseline_card(verdict)  # pylint: disable=protected-access
  assert 'class="card level"' in card and '<div class="big">level</div>' in card


def test_models_scored_on_one_test_split_get_paired_bootstrap_draws():
  rng = np.random.default_rng(1)
  x = rng.random((400, 3))
  y = (x[:, 0] + 0.3 * rng.standard_normal(400) > 0.5).astype(int)
  x_test, y_test = x[300:], y[300:]
  config = utility.UtilityConfig(bootstrap_samples=100, forest_trees=10)
  informative = utility.train_and_test("lr", x[:300], y[:300], x_test, y_test, config)
  noise_only = utility.train_and_test("lr", x[:300, 1:], y[:300], x_test[:, 1:], y_test,
                                      config)
  draws = informative["auroc_bootstrap"]
  assert len(draws) == len(noise_only["auroc_bootstrap"]) > 90
  assert utility.paired_difference_interval(draws, draws) == [0.0, 0.0]
  # Positive control: a model that sees the signal is told apart from one that does not.
  low, _ = utility.paired_difference_interval(draws, noise_only["auroc_bootstrap"])
  assert low > 0.1
  assert utility.paired_difference_interval(draws, draws[1:]) is None  # not paired


# The report's code path on odd tables.

@pytest.mark.parametrize("name", ["static_only", "series_only", "categorical_only",
                                  "constant_columns", "repeated_ids", "series_two_visits"])
def test_baselines_are_scored_like_the_released_table_on_odd_tables(name, tmp_path):
  # pylint: disable=protected-access
  frame, user_spec = odd_tables.odd_table(name, patients=60, seed=4)
  table = validate_table(odd_tables.write_table(str(tmp_path), frame, user_spec)[0],
                         user_spec).table
  spec = binary_label_spec(user_spec)
  train, test = table.iloc[:45], table.iloc[45:]
  x, _, y = evaluation_report.encode(train, spec)
  x_test, _, y_test = evaluation_report.encode(test, spec)
  real = utility.utility_table({"real": (x, y)}, x_test, y_test, FAST_UTILITY)["real"]
  def score(synthetic, xs, ys):
    return evaluation_report.score_table(synthetic, xs, ys, train, x_test, y_test, real,
                                         user_spec, FAST_UTILITY)
  record = {"epsilon": 0.97, "target_epsilon": 1.0, "delta": 1e-5}
  lines = []
  compared = evaluation_report.fit_baselines(train, x, y, spec, record, 30, 0, score,
                                             lines.append)
  assert lines == ["  EvaluationReport: DP baselines (copula, independent marginals) at "
                   "epsilon 1, 30 patients each"]
  released = score(train, x, y)  # any table: the keys must be the released table's
  for key, baseline in compared.items():
    assert baseline["released"] is False
    assert set(baseline["utility"]) == set(released["utility"])
    assert set(baseline["fidelity"]) == set(released["fidelity"])
    assert baseline["utility"]["synthetic"]["lr"]["train_patients"] == 30
    assert baseline["privacy"]["epsilon"] <= 1.0
    assert baseline["privacy"]["max_rows_per_patient"] == (3 if name == "repeated_ids" else 1)
  result = {"dataset": name, "data_note": "note", "utility": released["utility"],
            "fidelity": released["fidelity"], "baselines": compared,
            "headline": {"baselines": verdicts.baseline_verdict(
                released["utility"], released["fidelity"], compared)}}
  loaded = json.loads(json.dumps(json_safe(result), allow_nan=False))
  assert loaded["baselines"]["copula"]["privacy"]["statistics"] == ["marginals", "correlation"]
  released["utility"]["dp_models"] = {}
  page = "\n".join([report_html._utility_section(result, {}),  # pylint: disable=protected-access
                    report_html._fidelity_section(result, {}),  # pylint: disable=protected-access
                    report_html._baseline_card(result["headline"]["baselines"])])
  assert page.count("(not released)") >= 4 and "Does it beat simple DP baselines?" in page
  assert "nan" not in re.sub(r'src="data:[^"]*"', "", page).lower()
  assert plots.utility_bars(released["utility"], compared)[:4] == b"\x89PNG"


# The released generator against the floor.

def test_the_dp_generator_beats_independent_marginals_on_a_small_table(tmp_path):
  """Issue 13: at epsilon 1 on about 1000 simulated training patients, the DP AC-GAN (statistics, DP
  steps, export and sampling as in the pipeline) keeps the correlation structure and the
  label's signal that independent DP marginals lose. Its per-column distributions are
  not closer: the floor spends the whole budget on pooled marginals, the generator under
  half of it on marginals per label class, whose two noises add in the table (measured
  median KS 0.117 against 0.093 here), so the test bounds the gap instead."""
  import dataclasses  # pylint: disable=import-outside-toplevel
  from clinical_dp.simulators import simulate, write_simulated  # pylint: disable=import-outside-toplevel
  from trainers import features, gan, gan_export, gan_trainer  # pylint: disable=import-outside-toplevel
  from trainers.dp_training import PrivacyBudget  # pylint: disable=import-outside-toplevel
  frame, spec = simulate("sprint", patients=1500, seed=12)
  table = validate_table(write_simulated(str(tmp_path), frame, spec)[0], spec).table
  spec = binary_label_spec(spec)
  cut = int(0.8 * len(table))  # every patient (dropouts kept): 1200 train, 300 test
  train = table.iloc[:cut].reset_index(drop=True)
  inputs, labels = features.encode_table(train, spec)
  config = dataclasses.replace(gan.GanConfig(), epochs=3)  # the DP steps run; a few suffice
  trained = gan_trainer.train_gan(inputs, labels, spec, config, PrivacyBudget(1.0, 1e-5),
                                  seed=0, log=lambda _: None)
  assert trained.record.epsilon <= 1.0
  export = gan_export.export_generator(trained.generator, spec, trained.config.latent_dim,
                                       str(tmp_path / "generator"))
  synthetic = gan_export.generate_table(export, spec, len(train), trained.positive_rate)
  floor = baselines.fit_and_sample("marginals", features.flatten_inputs(inputs),
                                   labels.reshape(-1), PatientLayout.from_spec(spec), 1.0, 1e-5,
                                   1, len(train), seed=0)
  independent = features.table_from_flat(floor.flat, floor.labels, spec)
  ours = fidelity.fidelity_report(train, synthetic, spec)
  theirs = fidelity.fidelity_report(train, independent, spec)
  assert theirs["correlation_spearman"] < 0.5 < ours["correlation_spearman"]
  assert ours["median_ks"] <= theirs["median_ks"] + 0.05, (ours["median_ks"], theirs["median_ks"])
  test = table.iloc[cut:].reset_index(drop=True)
  x_test, _, y_test = evaluation_report.encode(test, spec)
  scores = {}
  for name, rows in (("real", train), ("generator", synthetic), ("floor", independent)):
    x, _, y = evaluation_report.encode(rows, spec)
    scores[name] = utility.utility_table({name: (x, y)}, x_test, y_test,
                                         FAST_UTILITY)[name]["lr"]["auroc"]
  # A fit to labels drawn independently of the features points anywhere (its AUROC is
  # chance, but one draw can land far from 0.5); the generator's carries the signal
  # (measured: real 0.928, generator 0.835, floor 0.461, with every patient kept; on the
  # complete patients alone, before issue 24, the generator reached 0.9).
  assert scores["generator"] > max(0.85 * scores["real"], scores["floor"] + 0.1), scores


def test_the_report_says_what_it_sub_sampled_and_how_big():
  config = evaluation_report.ReportConfig()
  small = evaluation_report.sub_samples(config, 5000, 5000, 1000, 600, 600)
  assert "utility model" not in small["note"] and "shadow" not in small["note"]
  assert small["utility_models"]["rows_fitted"] == {"real training": 5000, "synthetic": 5000}
  assert small["shadow_models"]["rows"] == 2500
  large = evaluation_report.sub_samples(config, 79984, 79984, 1000, 10103, 1000)
  cap = config.utility.max_training_rows
  assert large["utility_models"]["rows_fitted"] == {"real training": cap, "synthetic": cap}
  assert f"at most {cap} rows" in large["note"] and f"{cap} of 79984 real" in large["note"]
  assert f"trains on {config.audit.max_shadow_rows} synthetic patients" in large["note"]
  assert "1000 of 79984 training and 1000 of 10103 eval-split" in large["note"]
  assert "Fidelity and missingness" not in large["note"]  # below the fidelity cap
  assert large["baselines"] == {"patients": 79984, "released_patients": 79984}
  json.dumps(large)  # report.json holds it as it is
  fidelity_cap = config.utility.max_fidelity_rows
  million = evaluation_report.sub_samples(config, 801166, 801166, 1000, 99000, 1000)
  assert million["fidelity"]["rows_measured"] == {"real training": fidelity_cap,
                                                   "synthetic": fidelity_cap}
  assert f"{fidelity_cap} of 801166 real training rows" in million["note"]
  assert million["baselines"]["patients"] == fidelity_cap
  assert f"Each DP baseline samples {fidelity_cap} patients" in million["note"]


def test_fidelity_measures_a_seeded_subsample_the_same_real_rows_for_every_table(tmp_path):
  config = dataclasses.replace(FAST_UTILITY, max_fidelity_rows=40, fidelity_bootstrap_samples=5)
  kept = utility.fidelity_subsample(100, config)
  assert len(kept) == 40 and np.all(np.diff(kept) > 0)
  assert np.array_equal(kept, utility.fidelity_subsample(100, config))  # seeded
  assert not np.array_equal(kept[:20], utility.seeded_subsample(100, 20, [0, 100]))
  assert utility.fidelity_subsample(40, config) is None
  assert utility.fidelity_subsample(10**6, dataclasses.replace(config, max_fidelity_rows=None)
                                    ) is None
  # The baselines sample as many patients as the largest sub-sample, never more than the
  # released table; with either cap off, as many as the released table.
  assert utility.baseline_patients(dataclasses.replace(config, max_training_rows=30), 100) == 40
  assert utility.baseline_patients(dataclasses.replace(config, max_training_rows=60), 100) == 60
  assert utility.baseline_patients(config, 25) == 25
  assert utility.baseline_patients(dataclasses.replace(config, max_training_rows=None), 100) \
      == 100
  # score_table measures fidelity on the sub-samples: 40 real and 40 synthetic rows, the
  # real ones the same for any table of 100 rows.
  frame, user_spec = odd_tables.odd_table("static_only", patients=100, seed=4)
  frame = validate_table(odd_tables.write_table(str(tmp_path), frame, user_spec)[0],
                         user_spec).table
  spec = binary_label_spec(user_spec)
  x, _, y = evaluation_report.encode(frame, spec)
  real = utility.utility_table({"real": (x, y)}, x, y, config)["real"]
  scored = evaluation_report.score_table(frame, x, y, frame, x, y, real, user_spec, config)
  assert scored["fidelity"]["bootstrap"]["rows"] == {"real": 40, "synthetic": 40}
  # the same 40 rows of the same table on both sides: every marginal agrees exactly
  assert scored["fidelity"]["median_ks"] == 0.0
  whole = evaluation_report.score_table(frame, x, y, frame, x, y, real, user_spec,
                                        dataclasses.replace(config, max_fidelity_rows=None))
  assert whole["fidelity"]["bootstrap"]["rows"] == {"real": 100, "synthetic": 100}
