"""Simulator determinism, shape, clinical plausibility and calibrated difficulty."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clinical_dp.simulators import KINDS, simulate, write_simulated
from clinical_dp.simulators.icu import SKEWED_LABS
from clinical_dp.simulators.sprint import VISITS
from clinical_dp.spec import load_spec
from clinical_dp.validation import validate_table
from tests.real_shaped import FOLLOW_UP, skewed_labs_with_dropout, write_table


@pytest.fixture(scope="module")
def sprint_default():
  return simulate("sprint")


@pytest.fixture(scope="module")
def icu_default():
  return simulate("icu")


@pytest.fixture(scope="module")
def labs_default():
  return simulate("labs")


def _observed_visits(frame, names, visits):
  """Which visits each patient has, per series; asserts the series agree on it."""
  masks = [frame[[f"{name}_{v}" for v in visits]].notna().to_numpy() for name in names]
  for mask in masks[1:]:
    np.testing.assert_array_equal(mask, masks[0])
  return masks[0]


def _assert_monotone_dropout(observed):
  assert observed[:, 0].all(), "the first visit is always observed"
  assert not (np.diff(observed.astype(int), axis=1) > 0).any(), "a visit observed after a hole"


@pytest.mark.parametrize("kind", ["sprint", "icu", "labs"])
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


@pytest.mark.parametrize("kind", KINDS)
def test_written_table_validates_against_its_spec_with_every_patient(tmp_path, kind, request):
  frame, spec = request.getfixturevalue(f"{kind}_default")
  paths = write_simulated(str(tmp_path), frame, spec)
  spec = load_spec(paths[1])
  assert spec.missing == "model"
  report = validate_table(paths[0], spec)
  assert report.ok, report.findings
  assert len(report.table) == len(frame), "missing: model keeps the patients with holes"
  assert report.rows_with_holes == frame[spec.feature_columns].isna().any(axis=1).sum() > 0


def test_sprint_dropout_is_monotone_and_informative(sprint_default):
  """Patients leave the trial for good, and not at random: the sicker and older leave."""
  frame, _ = sprint_default
  observed = _observed_visits(frame, ("sbp", "dbp", "meds"), VISITS)
  _assert_monotone_dropout(observed)
  dropout = ~observed.all(axis=1)
  assert 0.2 <= dropout.mean() <= 0.4, dropout.mean()  # 0.30 at seed 0
  assert frame.loc[dropout, "age"].mean() > frame.loc[~dropout, "age"].mean() + 1.5  # 2.9
  assert frame.loc[dropout, "sbp_rz"].mean() > frame.loc[~dropout, "sbp_rz"].mean() + 3  # 5.8
  assert frame["meds_27m"].dtype == "Int64" and frame["meds_27m"].isna().any()


def test_labs_creatinine_is_missing_mostly_in_the_young(labs_default):
  frame, spec = labs_default
  missing = frame["creatinine"].isna()
  assert 0.12 <= missing.mean() <= 0.22, missing.mean()  # 0.175 at seed 0
  assert frame.loc[missing, "age"].mean() < frame.loc[~missing, "age"].mean() - 2  # 5.3
  others = [c for c in spec.required_columns if c != "creatinine"]
  assert frame[others].notna().all().all()


def test_icu_labs_are_skewed_on_wide_bounds_with_a_few_holes(icu_default):
  frame, spec = icu_default
  bounds = {f.name: (f.min, f.max) for f in spec.static}
  for lab in SKEWED_LABS:
    lo, hi = bounds[lab]
    values = frame[lab].dropna()
    assert values.median() < lo + 0.2 * (hi - lo), lab  # 5-11% of the range
    assert values.mean() > values.median(), f"{lab} should be right-skewed"
  rates = frame.isna().mean()
  assert set(rates[rates > 0].index) <= set(SKEWED_LABS) and rates.max() <= 0.1, rates
  assert rates["lactate"] >= 0.02


def test_real_shaped_skewed_table_has_its_holes_and_validates(tmp_path):
  frame, spec = skewed_labs_with_dropout(patients=1500, seed=5)
  again, _ = skewed_labs_with_dropout(patients=1500, seed=5)
  pd.testing.assert_frame_equal(frame, again)
  observed = _observed_visits(frame, ("sbp", "meds"), FOLLOW_UP)
  _assert_monotone_dropout(observed)
  dropout = ~observed.all(axis=1)
  assert 0.2 <= dropout.mean() <= 0.4, dropout.mean()  # 0.30
  died = frame["outcome"] == "died"
  assert died[dropout].mean() > died[~dropout].mean() + 0.08  # 0.42 against 0.25
  assert 0.08 <= frame["bilirubin"].isna().mean() <= 0.2  # 0.14
  assert frame[["creatinine", "crp", "age", "stage"]].notna().all().all()
  for lab in ("creatinine", "bilirubin", "crp"):
    feature = next(f for f in spec.static if f.name == lab)
    assert frame[lab].quantile(0.95) < feature.min + 0.15 * (feature.max - feature.min), lab
  data, spec_path = write_table(str(tmp_path), frame, spec)
  report = validate_table(data, load_spec(spec_path))
  assert report.ok, report.findings
  assert len(report.table) == len(frame)


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
  """One-hot categories; an unmeasured lab is its median plus an indicator."""
  x = frame.drop(columns=["patient_id", "hospital", "hospital_death"])
  for lab in SKEWED_LABS:
    x[f"{lab}_missing"] = x[lab].isna().astype(float)
    x[lab] = x[lab].fillna(x[lab].median())
  return pd.get_dummies(x, columns=["sex", "admission_type"]).to_numpy(float)


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
      assert frame[feature.name].dropna().between(feature.min, feature.max).all(), feature.name


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
