"""The DP statistics a spec is written from (trainers/dp_spec_statistics.py): their L2
sensitivity enumerated over neighbouring tables, an empirical audit with a positive control
(the same release with half its noise must fail it), what the estimates say on skewed and
0 / 1 columns, and the record that reaches the spec and the release."""

import numpy as np
import pandas as pd
import pytest

from clinical_dp import privacy_audit, sensitivity
from clinical_dp.spec import SpecError, parse_spec, with_privacy_record
from components.release import compose_released, spec_record
from trainers import dp_spec_statistics as dss

DELTA = 1e-6


def _table():
  """Six patients, the last (f) with two rows whose values are not whole and share a bin
  per column, so that f moves every released vector; a static lab, a three-visit series
  with holes and a categorical column with a value only one patient has."""
  return pd.DataFrame({
      "id": ["a", "b", "c", "d", "e", "f", "f"],
      "lab": ["0.7", "1.3", "", "2.5", "0.7", "40.5", "40.5"],
      "hr_1": ["80", "95", "70", "", "80", "125.5", "125.5"],
      "hr_2": ["82", "", "71", "", "81", "126.5", "126.5"],
      "hr_3": ["", "", "69", "", "79", "127.5", "127.5"],
      "grade": ["low", "low", "high", "high", "rare", "low", "low"]})


NUMERIC = {"lab": ["lab"], "hr": ["hr_1", "hr_2", "hr_3"]}
RANGES = {"lab": (["lab"], 0.0, 60.0), "hr": (["hr_1", "hr_2", "hr_3"], 0.0, 300.0)}


def _distance(first, second):
  """L2 distance between two releases' count vectors, a category one lacks counting 0."""
  total = 0.0
  for name in first:
    a, b = first[name], second[name]
    if isinstance(a, pd.Series):
      a, b = a.align(b, fill_value=0.0)
    total += float(np.sum((np.asarray(a) - np.asarray(b)) ** 2))
  return total ** 0.5


def _neighbours(frame):
  """Every table with one patient (all of their rows) removed."""
  for patient in frame["id"].unique():
    yield patient, frame[frame["id"] != patient]


@pytest.mark.parametrize("counts, released", [
    (lambda f: dss.draft_counts(f, NUMERIC, ["grade"]), len(NUMERIC) + 1),
    (lambda f: dss.check_counts(f, RANGES, 10), dss.CHECK_VECTORS * len(RANGES)),
])
def test_sensitivity_is_the_largest_move_of_one_patient(counts, released):
  """From first principles: every neighbour's counts are within k sqrt(m) of the table's,
  and a patient with two identical rows (f) moves them exactly that far."""
  frame = _table()
  k = dss.rows_per_patient(frame, "id")
  assert k == 2
  bound = sensitivity.histograms(released, k)
  moves = {patient: _distance(counts(frame), counts(neighbour))
           for patient, neighbour in _neighbours(frame)}
  assert max(moves.values()) <= bound + 1e-9, moves
  assert moves["f"] == pytest.approx(bound), moves  # tight: every vector moved by k


def test_one_row_per_patient_gives_sqrt_m():
  frame = _table().drop_duplicates("id")
  assert dss.rows_per_patient(frame, "id") == 1
  moves = [_distance(dss.draft_counts(frame, NUMERIC, ["grade"]),
                     dss.draft_counts(neighbour, NUMERIC, ["grade"]))
           for _, neighbour in _neighbours(frame)]
  assert max(moves) == pytest.approx(sensitivity.histograms(3))  # patient f: all observed


def _audit_scores(release, table, neighbour, runs, seed):
  """The Neyman-Pearson statistic of the draft release over the numeric columns: the
  noisy counts projected on the direction the patient moves them."""
  inside = np.concatenate([c.to_numpy() for c in dss.draft_counts(table, NUMERIC, []).values()])
  outside = np.concatenate([c.to_numpy() for c in
                            dss.draft_counts(neighbour, NUMERIC, []).values()])
  direction = (inside - outside) / np.linalg.norm(inside - outside)
  rng = np.random.default_rng(seed)
  def scores(counts):
    noisy = counts + rng.normal(0.0, release.noise, size=(runs, counts.size))
    return (noisy - outside) @ direction
  return scores(inside), scores(outside)


def test_draft_release_passes_its_audit_and_half_the_noise_fails_it():
  """Empirical audit (clinical_dp/privacy_audit.py) of the draft's Gaussian release at the
  patient that moves it furthest; the positive control halves the noise and must be caught,
  so the audit can fail."""
  table = _table().drop_duplicates("id")
  neighbour = table[table["id"] != "f"]
  config = dss.DpSpecConfig(epsilon=1.0, delta=DELTA)
  release = dss.GaussianRelease(config, len(NUMERIC), 1, 0, "audit", [])
  halved = dss.GaussianRelease(config, len(NUMERIC), 1, 0, "audit", [])
  halved.noise /= 2
  result = privacy_audit.audit_mechanism(
      "spec draft --dp-bounds", "two columns", config.epsilon, DELTA,
      _audit_scores(release, table, neighbour, 20000, seed=0),
      _audit_scores(halved, table, neighbour, 20000, seed=1))
  summary = result.to_dict()
  assert result.sound, summary
  assert result.has_power, summary
  assert result.catches_halved_noise, summary


def _skewed(patients=3000, seed=0):
  rng = np.random.default_rng(seed)
  return pd.DataFrame({
      "id": [f"P{i}" for i in range(patients)],
      "marker": np.round(np.exp(rng.normal(0.0, 0.7, patients)), 2).astype(str),
      "flag": (rng.random(patients) < 0.3).astype(int).astype(str),
      "count": rng.poisson(3, patients).astype(str),
      "grade": rng.choice(["mild", "moderate", "severe"], patients, p=[0.5, 0.4, 0.1])})


def test_draft_bounds_hold_a_skewed_column_and_common_categories():
  frame = _skewed()
  marker = frame["marker"].astype(float)
  estimates = dss.draft_estimates(frame, {"marker": ["marker"]}, ["grade"],
                                  dss.DpSpecConfig(epsilon=1.0, seed=0), "id")
  low, high = estimates.bounds["marker"]
  assert low == 0.0 and marker.max() <= high <= 100, (low, high)
  assert estimates.categories["grade"] == ["mild", "moderate", "severe"]
  record = estimates.record
  assert (record["epsilon"], record["delta"], record["relation"]) == (1.0, DELTA,
                                                                      sensitivity.RELATION)
  assert record["l2_sensitivity"] == pytest.approx(2 ** 0.5)


def test_a_category_one_patient_has_is_not_released():
  """Partition selection: a value of one patient passes the threshold with probability
  below delta; in 300 releases at epsilon 1 it never does, while common values always do."""
  frame = _skewed(patients=500)
  frame.loc[0, "grade"] = "only-me"
  released = [dss.draft_estimates(frame, {}, ["grade"], dss.DpSpecConfig(1.0, seed=s), "id")
              .categories["grade"] for s in range(300)]
  assert not any("only-me" in values for values in released)
  assert all({"mild", "moderate"} <= set(values) for values in released)


def test_check_finds_a_wide_range_a_zero_one_column_and_whole_numbers():
  frame = _skewed()
  ranges = {"marker": (["marker"], 0.0, 500.0), "flag": (["flag"], 0.0, 5.0),
            "count": (["count"], 0.0, 30.0)}
  uses, record = dss.column_use(frame, ranges, dss.DpSpecConfig(epsilon=1.0, seed=0), "id")
  by_name = {use.name: use for use in uses}
  assert by_name["marker"].range_share < 0.1 and not by_name["marker"].looks_whole
  assert by_name["flag"].looks_binary
  assert by_name["count"].looks_whole and not by_name["count"].looks_binary
  warnings = dss.check_warnings(uses, {"count": False})
  assert any(w.startswith("marker: most of its values lie in") for w in warnings), warnings
  assert any(w.startswith("flag: its values look like 0 and 1") for w in warnings), warnings
  assert any(w.startswith("count: its values look whole") for w in warnings), warnings
  quiet = dss.check_warnings(uses, {"count": True})  # declared integer: nothing to say
  assert not any(w.startswith("count:") for w in quiet), quiet
  assert record["released_vectors"] == dss.CHECK_VECTORS * 3


def test_check_says_when_the_table_is_too_small_for_its_epsilon():
  uses, _ = dss.column_use(_skewed(patients=40), {"count": (["count"], 0.0, 30.0)},
                           dss.DpSpecConfig(epsilon=0.5, seed=0), "id")
  assert uses[0].looks_whole is None
  assert "too few values" in dss.check_warnings(uses, {})[0]


SPEC = """name: t
label_column: died
static:
- {name: marker, type: numeric, min: 0, max: 50}  # a comment the user wrote
"""


def test_records_append_to_the_spec_and_add_up_in_the_release():
  first = {"epsilon": 0.5, "delta": 1e-6, "unit": "patient", "relation": sensitivity.RELATION,
           "accountant": "rdp", "purpose": "spec draft --dp-bounds"}
  second = dict(first, epsilon=0.25, purpose="spec check")
  text = with_privacy_record(with_privacy_record(SPEC, first), second)
  assert "# a comment the user wrote" in text
  spec = parse_spec(text, "t.yaml")
  assert [r["purpose"] for r in spec.privacy_spent] == ["spec draft --dp-bounds", "spec check"]
  assert parse_spec(spec.to_yaml()).privacy_spent == spec.privacy_spent
  record = spec_record(spec.privacy_spent)
  assert (record["epsilon"], record["delta"]) == (0.75, 2e-6)
  together = compose_released({"generator": dict(first, epsilon=1.0), "spec": record})
  assert together["epsilon"] == pytest.approx(1.75)
  with pytest.raises(SpecError, match="not the spec's last key"):
    with_privacy_record(text + "missing: drop\n", first)
  with pytest.raises(SpecError, match=r"privacy_spent\[0\] lacks \['relation'\]"):
    parse_spec(SPEC + "privacy_spent:\n- {epsilon: 1, delta: 0, unit: patient, "
               "accountant: rdp, purpose: x}\n")


def test_config_refuses_a_useless_epsilon():
  for epsilon in (0.0, -1.0, float("inf")):
    with pytest.raises(ValueError, match="epsilon must be a positive number"):
      dss.DpSpecConfig(epsilon=epsilon)


def test_the_grid_is_public_sorted_and_symmetric():
  assert np.all(np.diff(dss.GRID) > 0)
  np.testing.assert_array_equal(dss.GRID, -dss.GRID[::-1])
  assert 0.0 in dss.GRID and dss.GRID[-1] == 5e8
