"""Evaluation metrics on hand-made data whose answers are known."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from clinical_dp.spec import DatasetSpec, SeriesFeature, StaticFeature
from components.evaluation import (attacks, disclosure, fidelity, report_html, step_clock,
                                   utility, verdicts)

FAST = utility.UtilityConfig(bootstrap_samples=100, forest_trees=30)


def _separable(n, rng, noise=0.0):
  x = rng.uniform(0, 1, size=(n, 3))
  y = (x[:, 0] + noise * rng.normal(size=n) > 0.5).astype(int)
  return x, y


def test_auroc_and_bootstrap_interval_on_known_scores():
  y = np.array([0, 0, 1, 1])
  assert utility.auroc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
  assert utility.auroc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
  assert utility.auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 400)
  scores = y + rng.normal(0, 1.0, 400)
  low, high = utility.bootstrap_interval(y, scores, utility.auroc, FAST)
  assert low < utility.auroc(y, scores) < high and high - low < 0.15


@pytest.mark.parametrize("model", utility.MODELS)
def test_every_model_learns_a_separable_rule_and_fails_on_shuffled_labels(model):
  rng = np.random.default_rng(1)
  x, y = _separable(600, rng)
  x_test, y_test = _separable(300, rng)
  learned = utility.train_and_test(model, x, y, x_test, y_test, FAST)
  assert learned["auroc"] > 0.95 and learned["accuracy"] > 0.9
  assert learned["auroc_ci"][0] <= learned["auroc"] <= learned["auroc_ci"][1]
  # One permutation can land far from 0.5 (a noise fit still has a direction); many cannot.
  shuffled = [utility.train_and_test(model, x, rng.permutation(y), x_test, y_test, FAST)["auroc"]
              for _ in range(20)]
  assert abs(np.mean(shuffled) - 0.5) < 0.1


def test_shuffled_label_control_scores_at_chance_and_single_class_data_is_reported():
  rng = np.random.default_rng(2)
  x, y = _separable(800, rng)
  x_test, y_test = _separable(400, rng)
  control = utility.shuffled_label_control(x, y, x_test, y_test, FAST)
  assert abs(control["auroc"] - 0.5) < 0.1, control
  assert control["permutations"] == 20 and control["auroc_ci"][0] < 0.5 < control["auroc_ci"][1]
  only_one = utility.train_and_test("lr", x, np.ones_like(y), x_test, y_test, FAST)
  assert "only label [1]" in only_one["error"]
  table = utility.utility_table({"real": (x, y), "synthetic": (x, np.ones_like(y))},
                                x_test, y_test, FAST)
  assert utility.relative_to_real(table, "synthetic") == {m: None for m in utility.MODELS}


def test_relative_to_real_is_the_auroc_ratio():
  table = {"real": {m: {"auroc": 0.9} for m in utility.MODELS},
           "synthetic": {m: {"auroc": 0.81} for m in utility.MODELS}}
  assert utility.relative_to_real(table, "synthetic")["lr"] == pytest.approx(0.9)


def test_marginal_distances_on_known_distributions():
  values = np.linspace(0, 10, 1001)
  same = fidelity.numeric_marginal(values, values, 0, 100)
  assert same == {"ks": 0.0, "wasserstein": 0.0}
  shifted = fidelity.numeric_marginal(values, values + 10, 0, 100)
  assert shifted["wasserstein"] == pytest.approx(0.1)
  assert shifted["ks"] == pytest.approx(1.0, abs=0.01)
  assert fidelity.total_variation(list("aabb"), list("aabb"), "ab") == 0.0
  assert fidelity.total_variation(list("aabb"), list("aaab"), "ab") == pytest.approx(0.25)
  assert fidelity.total_variation(list("aa"), list("bb"), "ab") == 1.0


def test_correlation_agreement_is_one_for_the_same_structure_and_low_for_another():
  rng = np.random.default_rng(3)
  base = rng.normal(size=(2000, 1))
  real = pd.DataFrame(np.hstack([base + rng.normal(0, s, (2000, 1)) for s in (0.2, 0.5, 1, 2)]),
                      columns=list("abcd"))
  resampled = pd.DataFrame(np.hstack([base + rng.normal(0, s, (2000, 1))
                                      for s in (0.2, 0.5, 1, 2)]), columns=list("abcd"))
  assert fidelity.correlation_agreement(real, resampled)["spearman"] == pytest.approx(1.0)
  reversed_noise = pd.DataFrame(np.hstack([base + rng.normal(0, s, (2000, 1))
                                           for s in (2, 1, 0.5, 0.2)]), columns=list("abcd"))
  assert fidelity.correlation_agreement(real, reversed_noise)["spearman"] < 0
  constant = real.assign(d=1.0)
  result = fidelity.correlation_agreement(constant, resampled)
  assert result["left_out_constant"] == ["d"]


def _trajectory_spec():
  return DatasetSpec(name="t", label_column="y",
                     static=(StaticFeature("sex", "categorical", values=("F", "M")),),
                     series=(SeriesFeature("sbp", 60, 260, ("sbp_1", "sbp_2")),))


def test_median_trajectories_per_class():
  table = pd.DataFrame({"y": [0, 0, 0, 1, 1], "sex": list("FMFMF"),
                        "sbp_1": [100, 110, 120, 150, 160], "sbp_2": [90, 95, 200, 140, 130]})
  result = fidelity.median_trajectories(table, _trajectory_spec())
  assert result == {"sbp": {"0": [110.0, 95.0], "1": [155.0, 135.0]}}
  report = fidelity.fidelity_report(table, table, _trajectory_spec())
  assert report["marginals"]["sex"]["total_variation"] == 0.0
  assert report["label_rate"] == {"real": 0.4, "synthetic": 0.4}


def test_attack_metrics_on_separated_overlapping_and_known_scores():
  separated = attacks.attack_metrics(np.arange(100, 200), np.arange(0, 100))
  assert separated["auroc"] == 1.0 and separated["tpr_at_fpr"]["0.01"] == 1.0
  assert separated["advantage"] == 1.0
  rng = np.random.default_rng(4)
  same = attacks.attack_metrics(rng.normal(size=5000), rng.normal(size=5000))
  assert abs(same["auroc"] - 0.5) < 0.03 and same["tpr_at_fpr"]["0.01"] < 0.03
  # 100 non-members 0..99: the 1% threshold is 99, so members above it are flagged.
  assert attacks.tpr_at_fpr(np.array([50, 99.5, 120, 130]), np.arange(100.0), 0.01) == 0.75


def test_loss_and_lira_scores():
  p = np.array([0.9, 0.9, 0.2])
  y = np.array([1, 0, 0])
  np.testing.assert_allclose(attacks.loss_scores(p, y), np.log([0.9, 0.1, 0.8]))
  np.testing.assert_allclose(attacks.logit_confidence(p, y),
                             [np.log(9), -np.log(9), np.log(4)])
  shadows = np.array([[0.0, 1.0], [2.0, 3.0]])  # mean (1, 2), std (1, 1)
  np.testing.assert_allclose(attacks.offline_lira_scores(np.array([3.0, 2.0]), shadows),
                             [2 / 1.001, 0.0])


def test_distance_attack_finds_copied_members():
  rng = np.random.default_rng(5)
  members, non_members = rng.uniform(size=(200, 5)), rng.uniform(size=(200, 5))
  leaked = members + rng.normal(0, 0.001, members.shape)  # a "generator" that copies
  result = attacks.attack_metrics(attacks.distance_scores(members, leaked),
                                  attacks.distance_scores(non_members, leaked))
  assert result["auroc"] > 0.99
  fresh = rng.uniform(size=(200, 5))  # drawn like the patients, copying no one
  result = attacks.attack_metrics(attacks.distance_scores(members, fresh),
                                  attacks.distance_scores(non_members, fresh))
  assert abs(result["auroc"] - 0.5) < 0.1


def test_disclosure_flags_copies_and_passes_fresh_samples():
  rng = np.random.default_rng(6)
  train, holdout = rng.uniform(size=(1000, 4)), rng.uniform(size=(300, 4))
  fresh = disclosure.disclosure_report(train, holdout, rng.uniform(size=(300, 4)))
  assert 0.8 < fresh["dcr_ratio"] < 1.25 and 0.8 < fresh["nndr_ratio"] < 1.25
  copied = disclosure.disclosure_report(train, holdout, train[:300])
  assert copied["dcr_synthetic_median"] == 0.0 and copied["dcr_ratio"] == 0.0
  assert copied["share_closer_than_holdout_5th_percentile"] == 1.0
  frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
  synthetic = pd.DataFrame({"a": [1.00001, 2.5, 3.0], "b": ["x", "y", "q"]})
  assert disclosure.exact_copies(frame, synthetic, ["a", "b"]) == 1


def test_exact_copies_equal_a_cell_by_cell_comparison_with_holes():
  """The hashed pre-selection counts what comparing every row's cells as text counts:
  copies with empty cells, rounding to 4 decimals, whole numbers with holes, repeats."""
  rng = np.random.default_rng(7)
  def table(n):
    return pd.DataFrame({
        "lab": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 4, n) / 3),
        "visits": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 3, n)),
                           dtype="Int64"),
        "sex": np.where(rng.random(n) < 0.1, None, rng.choice(["F", "M"], n))})
  train, synthetic = table(400), table(300)
  synthetic.iloc[:40] = train.iloc[100:140].to_numpy()  # 40 copies, holes included
  synthetic.loc[40, "lab"] = train.loc[0, "lab"] + 1e-6 if pd.notna(train.loc[0, "lab"]) \
      else 0.5
  columns = ["lab", "visits", "sex"]
  def as_text(frame):
    return frame[columns].apply(
        lambda c: (c.astype(np.float64).round(4).astype(str)
                   if pd.api.types.is_numeric_dtype(c.dtype) else c.astype(str)))
  reference = len(as_text(synthetic).merge(as_text(train).drop_duplicates(), on=columns))
  assert reference >= 40
  assert disclosure.exact_copies(train, synthetic, columns) == reference
  # No row copies anyone, and whole numbers with holes typed as the real splits read them.
  fresh = synthetic.assign(sex="X", visits=synthetic["visits"].astype("float64"))
  assert disclosure.exact_copies(train, fresh, columns) == 0


def test_verdicts_need_a_working_positive_control():
  thresholds = verdicts.Thresholds()
  def attack(strongest, control):
    return {"membership_auroc": strongest, "positive_control_auroc": control}
  assert verdicts.attack_verdict(attack(0.51, 0.7), thresholds)["status"] == "pass"
  assert verdicts.attack_verdict(attack(0.51, 0.55), thresholds)["status"] == "inconclusive"
  assert verdicts.attack_verdict(attack(0.62, 0.7), thresholds)["status"] == "fail"
  utility_ok = {"synthetic_relative_to_real": {"lr": 0.98, "rf": 0.975}}
  assert verdicts.utility_verdict(utility_ok, thresholds)["status"] == "meets target"
  utility_low = {"synthetic_relative_to_real": {"lr": 0.98, "rf": 0.9}}
  verdict = verdicts.utility_verdict(utility_low, thresholds)
  assert verdict["status"] == "below target" and verdict["worst_relative_auroc"] == 0.9
  faithful = verdicts.fidelity_verdict({"correlation_spearman": 0.95, "median_ks": 0.05},
                                     thresholds)
  assert faithful["status"] == "meets target" and "0.05" in faithful["text"]
  assert verdicts.fidelity_verdict({"correlation_spearman": 0.7, "median_ks": 0.7},
                                 thresholds)["status"] == "below target"


def _correlated_table(rows, rng, mixing, shift=0.0, holes=0.1):
  """Six columns of correlated normals (with missing cells), rounded as lab values are."""
  values = rng.standard_normal((rows, 6)) @ mixing + shift
  values = np.round(values, 1)
  values[rng.random(values.shape) < holes] = np.nan
  return pd.DataFrame(values, columns=[f"c{j}" for j in range(6)])


MIXING = np.triu(np.full((6, 6), 0.6)) + np.eye(6)


def _bootstrap(real, synthetic, samples=40, max_rows=0, seed=3):
  columns = list(real.columns)
  full = {"median_ks": float(np.median([
              fidelity.numeric_marginal(real[c], synthetic[c], -10, 10)["ks"] for c in columns])),
          "correlation_spearman": fidelity.correlation_agreement(real, synthetic)["spearman"]}
  return full, fidelity.fidelity_bootstrap(real, synthetic, columns, columns, samples,
                                           max_rows, seed, full)


def test_fidelity_bootstrap_draws_are_the_report_measures_of_resampled_rows():
  rng = np.random.default_rng(0)
  real, synthetic = _correlated_table(300, rng, MIXING), _correlated_table(250, rng, MIXING)
  _, drawn = _bootstrap(real, synthetic, samples=4)
  real_rng, synthetic_rng = np.random.default_rng([3, 1]), np.random.default_rng([3, 2])
  for b in range(4):  # the same resamples drawn by hand, scored by the report's functions
    r = real.iloc[real_rng.integers(0, 300, 300)].reset_index(drop=True)
    s = synthetic.iloc[synthetic_rng.integers(0, 250, 250)].reset_index(drop=True)
    ks = np.median([fidelity.numeric_marginal(r[c], s[c], -10, 10)["ks"] for c in r])
    assert drawn["median_ks"][b] == pytest.approx(ks, abs=1e-6)
    assert drawn["correlation_spearman"][b] == pytest.approx(
        fidelity.correlation_agreement(r, s)["spearman"], abs=1e-6)
  assert drawn["rows_per_resample"] == {"real": 300, "synthetic": 250}
  low, high = drawn["median_ks_ci"]
  assert low <= np.median(drawn["median_ks"]) <= high


def test_fidelity_intervals_call_a_second_draw_level_and_a_worse_table_behind():
  rng = np.random.default_rng(1)
  real = _correlated_table(1500, rng, MIXING)
  ours, again = _correlated_table(1500, rng, MIXING), _correlated_table(1500, rng, MIXING)
  # A worse table: the same columns, half of the structure gone and shifted a little.
  worse = _correlated_table(1500, rng, np.eye(6) + np.diag(np.full(5, 0.6), 1), shift=0.15)
  scored = {}
  for name, table in (("ours", ours), ("again", again), ("worse", worse)):
    full, drawn = _bootstrap(real, table)
    scored[name] = {"utility": {"synthetic_relative_to_real": {}},
                    "fidelity": {**full, "bootstrap": drawn}}
  baselines = {name: {"name": name, **scored[name]} for name in ("again", "worse")}
  verdict = verdicts.baseline_verdict(scored["ours"]["utility"], scored["ours"]["fidelity"],
                                      baselines)["comparisons"]
  assert verdict["again"]["level"] == ["correlation_spearman", "median_ks"], verdict["again"]
  assert verdict["worse"]["ahead"] == ["correlation_spearman", "median_ks"], verdict["worse"]
  assert verdict["worse"]["difference_ci"]["correlation_spearman"][0] > 0
  assert verdict["worse"]["difference_ci"]["median_ks"][1] < 0
  # Unpaired (other real resamples for the second table) the same comparison is wider.
  _, unpaired = _bootstrap(real, again, seed=4)
  draws = lambda name: np.asarray(scored[name]["fidelity"]["bootstrap"]["median_ks"])
  assert np.std(draws("ours") - draws("again")) < np.std(
      draws("ours") - np.asarray(unpaired["median_ks"]))


def test_resampling_fewer_rows_keeps_the_spread_of_the_whole_tables():
  rng = np.random.default_rng(2)
  real, synthetic = _correlated_table(6000, rng, MIXING), _correlated_table(6000, rng, MIXING)
  full, whole = _bootstrap(real, synthetic, samples=60)
  _, capped = _bootstrap(real, synthetic, samples=60, max_rows=1500)
  assert capped["rows_per_resample"] == {"real": 1500, "synthetic": 1500}
  for measure in ("median_ks", "correlation_spearman"):
    assert np.mean(capped[measure]) == pytest.approx(full[measure], abs=1e-6)
    ratio = np.std(capped[measure]) / np.std(whole[measure])
    assert 0.6 < ratio < 1.6, (measure, ratio)
  # Without the rescaling the capped spread would be twice the whole tables'.
  assert np.std(capped["median_ks"]) < 0.75 * 2 * np.std(whole["median_ks"])
  # The report says what was resampled.
  note = report_html._bootstrap_note  # pylint: disable=protected-access
  assert "1500 rows of a table per resample at most" in note({"bootstrap": capped})
  assert "per resample at most" not in note({"bootstrap": whole})
  low, high = capped["median_ks_ci"]
  assert report_html._draws_ci({"bootstrap": capped}, "median_ks") == (  # pylint: disable=protected-access
      f" <small>({low:.3f}&ndash;{high:.3f})</small>")


def test_step_clock_says_each_step_with_its_subject_and_keeps_its_seconds():
  lines = []
  clock = step_clock.StepClock(lines.append)
  with clock.step("utility models, real training table"):
    pass
  with clock.about("released table"):
    with clock.step("fidelity"):
      pass
    with clock.step("fidelity"):  # the same name again adds up
      pass
  assert [line.rsplit(":", 1)[0] for line in lines] == [
      "  EvaluationReport: utility models, real training table",
      "  EvaluationReport: fidelity, released table",
      "  EvaluationReport: fidelity, released table"]
  assert all(line.endswith(" s") for line in lines)
  assert list(clock.seconds) == ["utility models, real training table",
                                 "fidelity, released table"]
  assert all(seconds >= 0 for seconds in clock.seconds.values())
  silent = step_clock.silent()
  with silent.step("anything"):
    pass
  assert list(silent.seconds) == ["anything"]


# Sub-samples of large tables (issue 26): seeded, capped, and small tables untouched.

def test_training_subsample_is_seeded_capped_and_absent_at_or_below_the_cap():
  config = utility.UtilityConfig(max_training_rows=50)
  kept = utility.training_subsample(200, config)
  assert len(kept) == 50 and len(np.unique(kept)) == 50
  assert np.all(np.diff(kept) > 0) and kept.min() >= 0 and kept.max() < 200
  assert np.array_equal(kept, utility.training_subsample(200, config))  # seeded
  other_seed = utility.training_subsample(200, utility.UtilityConfig(max_training_rows=50,
                                                                     seed=1))
  assert not np.array_equal(kept, other_seed)
  assert utility.training_subsample(50, config) is None
  assert utility.training_subsample(10**6, utility.UtilityConfig(max_training_rows=None)) is None


@pytest.mark.parametrize("model", utility.MODELS)
def test_a_model_above_the_cap_is_the_same_model_fitted_on_the_sub_sample(model):
  rng = np.random.default_rng(5)
  x, y = _separable(400, rng, noise=0.2)
  x_test, y_test = _separable(200, rng, noise=0.2)
  capped = utility.UtilityConfig(bootstrap_samples=30, forest_trees=10, max_training_rows=150)
  result = utility.train_and_test(model, x, y, x_test, y_test, capped)
  assert result["train_patients"] == 400 and result["fitted_on_rows"] == 150
  kept = utility.training_subsample(400, capped)
  uncapped = dataclasses.replace(capped, max_training_rows=None)
  direct = utility.train_and_test(model, x[kept], y[kept], x_test, y_test, uncapped)
  assert "fitted_on_rows" not in direct
  for key in ("auroc", "auroc_bootstrap", "accuracy"):
    assert result[key] == direct[key], key


def test_small_tables_score_as_before_the_cap_and_the_same_on_any_number_of_threads():
  rng = np.random.default_rng(6)
  x, y = _separable(300, rng, noise=0.3)
  xs, ys = _separable(300, rng, noise=0.4)
  x_test, y_test = _separable(150, rng, noise=0.3)
  sources = {"real": (x, y), "synthetic": (xs, ys)}
  small = utility.UtilityConfig(bootstrap_samples=30, forest_trees=20, shuffle_repeats=4)
  assert small.max_training_rows >= 300  # the default cap leaves this table whole
  before = dataclasses.replace(small, max_training_rows=None, parallel_jobs=1)
  assert (utility.utility_table(sources, x_test, y_test, small)
          == utility.utility_table(sources, x_test, y_test, before))
  assert (utility.shuffled_label_control(xs, ys, x_test, y_test, small)
          == utility.shuffled_label_control(xs, ys, x_test, y_test, before))
  # Above the cap too: the threads change nothing.
  capped = dataclasses.replace(small, max_training_rows=120)
  assert (utility.utility_table(sources, x_test, y_test, capped)
          == utility.utility_table(sources, x_test, y_test,
                                   dataclasses.replace(capped, parallel_jobs=1)))


def test_bootstrap_auroc_draws_equal_roc_auc_score_on_each_resample():
  """The one-sort weighted Mann-Whitney draws against sklearn on every resample, with many
  tied scores (a kNN's votes) and float labels."""
  rng = np.random.default_rng(8)
  y = (rng.random(500) < 0.3).astype(np.float64)
  config = utility.UtilityConfig(bootstrap_samples=60)
  resamples = utility.bootstrap_resamples(y, config)
  for scores in (rng.normal(size=500) + y, np.round(rng.random(500) * 4 + y) / 5):
    expected = [utility.auroc(y[i], scores[i]) for i in resamples]
    np.testing.assert_allclose(utility.auroc_draws(y, scores, resamples), expected,
                               rtol=0, atol=1e-12)
