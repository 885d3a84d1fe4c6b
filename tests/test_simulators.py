"""Simulator determinism, shape, clinical plausibility and calibrated difficulty."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clinical_dp.simulators import simulate, write_simulated
from clinical_dp.simulators.sprint import VISITS
from clinical_dp.validation import validate_table


@pytest.fixture(scope="module")
def sprint_default():
  return simulate("sprint")


@pytest.fixture(scope="module")
def icu_default():
  return simulate("icu")


@pytest.mark.parametrize("kind", ["sprint", "icu"])
def test_same_seed_same_table_other_seed_other_table(kind):
  first, _ = simulate(kind, patients=300, seed=3)
  again, _ = simulate(kind, patients=300, seed=3)
  other, _ = simulate(kind, patients=300, seed=4)
  pd.testing.assert_frame_equal(first, again)
  assert not first.equals(other)


@pytest.mark.parametrize("kind", ["sprint", "icu"])
def test_shape_follows_the_arguments(kind):
  frame, spec = simulate(kind, patients=500, sites=3, seed=1)
  assert len(frame) == 500
  assert frame[spec.site_column].nunique() == 3
  assert list(frame.columns) == spec.required_columns


def test_written_table_validates_against_its_spec(tmp_path, sprint_default):
  paths = write_simulated(str(tmp_path), *sprint_default)
  from clinical_dp.spec import load_spec
  report = validate_table(paths[0], load_spec(paths[1]))
  assert report.ok, report.findings


def test_sprint_shape_and_plausibility(sprint_default):
  frame, spec = sprint_default
  assert len(frame) == 9361
  assert 0.45 < frame["intensive"].mean() < 0.55
  complete = frame.dropna()
  assert 6200 <= len(complete) <= 6800, len(complete)  # SPRINT: 6502 of 9361
  meds = complete[[f"meds_{v}" for v in VISITS]].to_numpy(dtype=float)
  assert meds.min() >= 0 and meds.max() <= 6 and np.all(meds == np.round(meds))
  for series in spec.series:
    values = frame[list(series.columns)].astype(float).to_numpy()
    assert np.nanmin(values) >= series.min and np.nanmax(values) <= series.max
  sizes = frame["site"].value_counts()
  assert sizes.max() > 3 * sizes.min(), "clinics should be of uneven size"
  # The arms separate as titration says: lower SBP and more drug classes when intensive.
  by_arm = complete.groupby("intensive")[["sbp_12m", "meds_12m"]].mean()
  assert by_arm.loc[1, "sbp_12m"] < by_arm.loc[0, "sbp_12m"] - 10
  assert by_arm.loc[1, "meds_12m"] > by_arm.loc[0, "meds_12m"] + 1
  assert by_arm.loc[0, "sbp_12m"] < 140 and by_arm.loc[1, "sbp_12m"] < 125


def test_sprint_arm_is_predictable_about_as_on_real_sprint(sprint_default):
  """SPRINT_gan: LR on the 36 real values predicts the arm with accuracy 0.934."""
  frame, spec = sprint_default
  complete = frame.dropna()
  columns = [c for s in spec.series for c in s.columns]
  x, y = complete[columns].to_numpy(float), complete["intensive"].to_numpy()
  train, test = slice(0, 6000), slice(6000, None)  # SPRINT_gan: first 6000 train
  model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
  accuracy = model.fit(x[train], y[train]).score(x[test], y[test])
  assert 0.90 <= accuracy <= 0.96, accuracy


def _icu_features(frame):
  return pd.get_dummies(frame.drop(columns=["patient_id", "hospital", "hospital_death"]),
                        columns=["sex", "admission_type"]).to_numpy(float)


def test_icu_shape_and_plausibility(icu_default):
  frame, spec = icu_default
  assert frame["hospital"].nunique() == 8
  assert 0.08 <= frame["hospital_death"].mean() <= 0.15
  rates = frame.groupby("hospital")["hospital_death"].mean()
  assert rates.max() - rates.min() > 0.05, "mortality should vary by hospital"
  sizes = frame["hospital"].value_counts()
  assert sizes.max() > 3 * sizes.min()
  assert frame["patient_id"].duplicated().sum() > 0, "some patients have a second stay"
  for feature in spec.static:
    if not feature.is_categorical:
      assert frame[feature.name].between(feature.min, feature.max).all(), feature.name


def test_icu_difficulty_matches_published_models_and_sites_differ(icu_default):
  frame, _ = icu_default
  x, y = _icu_features(frame), frame["hospital_death"].to_numpy()
  site = frame["hospital"].to_numpy()
  test = np.random.default_rng(0).random(len(y)) < 0.3

  def fit(mask):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[mask], y[mask])

  pooled = fit(~test)
  pooled_auroc = roc_auc_score(y[test], pooled.predict_proba(x[test])[:, 1])
  assert 0.80 <= pooled_auroc <= 0.88, pooled_auroc
  gaps = []
  for hospital in np.unique(site):
    single = fit(~test & (site == hospital))
    others = test & (site != hospital)
    gaps.append(roc_auc_score(y[others], pooled.predict_proba(x[others])[:, 1])
                - roc_auc_score(y[others], single.predict_proba(x[others])[:, 1]))
  # A single hospital's model is clearly worse on the other hospitals than the pooled one.
  assert np.mean(gaps) >= 0.03, gaps
  assert min(gaps) > 0, gaps
