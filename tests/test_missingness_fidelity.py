"""Missingness fidelity (components/evaluation/missingness.py) on hand-made tables whose
answers are computed by hand, and the fidelity measures on tables with holes."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clinical_dp.spec import spec_from_dict
from clinical_dp.report_format import json_safe
from components.evaluation import fidelity, missingness, plots, report_html, utility


def _spec(static=(), series=()):
  raw = {"name": "holes", "label_column": "y", "missing": "model", "static": list(static),
         "series": list(series)}
  return spec_from_dict(raw)


def _numeric(*names):
  return [{"name": n, "type": "numeric", "min": 0, "max": 100} for n in names]


SERIES = [{"name": "sbp", "min": 80, "max": 200, "columns": ["sbp1", "sbp2", "sbp3"]},
          {"name": "hr", "min": 30, "max": 200, "columns": ["hr1", "hr2", "hr3"]}]
NAN = np.nan


def _json(result):
  return json.loads(json.dumps(result, allow_nan=False))


def test_identical_tables_give_zero_errors_and_valid_json():
  spec = _spec(static=_numeric("age") + [{"name": "sex", "type": "categorical",
                                          "values": ["F", "M"]}], series=SERIES)
  table = pd.DataFrame({
      "y": [0, 1, 0, 1],
      "age": pd.Series([50, None, 60, 70], dtype="Int64"),
      "sex": ["F", None, "M", ""],  # a blank category is a hole too
      "sbp1": [120, 130, NAN, 110], "sbp2": [121, NAN, NAN, 111], "sbp3": [NAN] * 4,
      "hr1": [70, 80, NAN, 60], "hr2": [71, NAN, NAN, 61], "hr3": [NAN, NAN, NAN, 62]})
  result = _json(missingness.missingness_fidelity(table, table.copy(), spec))
  assert result["columns"]["age"]["real"] == 0.25 and result["columns"]["sex"]["real"] == 0.5
  assert result["max_rate_error"] == 0.0
  assert result["co_missingness_error"] == 0.0 and result["co_missingness_columns"] == []
  assert result["pattern_tvd"] == 0.0
  assert result["max_dropout_curve_error"] == 0.0
  assert result["dropout_curve"]["overall"]["real"] == [0.75, 0.5, 0.25]


def test_tables_without_any_hole_give_zeros_and_no_series_means_no_series_parts():
  spec = _spec(static=_numeric("a", "b"))
  table = pd.DataFrame({"y": [0, 1, 0, 1], "a": [1.0, 2, 3, 4], "b": [4.0, 3, 2, 1]})
  result = _json(missingness.missingness_fidelity(table, table, spec))
  assert result["max_rate_error"] == 0.0 and result["co_missingness_error"] == 0.0
  assert result["pattern_tvd"] == 0.0
  assert all(c["difference"] == 0.0 for c in result["columns"].values())
  assert "dropout_curve" not in result and "monotonicity_violations" not in result
  assert plots.dropout_curves(result, "y") is None
  full = _spec(static=_numeric("a"), series=SERIES)
  table = pd.DataFrame({"y": [0, 1], "a": [1.0, 2], **{c: [100.0, 110] for s in SERIES
                                                       for c in s["columns"]}})
  result = _json(missingness.missingness_fidelity(table, table, full))
  assert result["max_dropout_curve_error"] == 0.0
  assert result["monotonicity_violations"]["real"] == {"rows": 0, "share": 0.0}


def test_a_changed_missing_rate_gives_exactly_that_rate_error():
  spec = _spec(static=_numeric("a", "b"))
  labels = [0, 1] * 5
  real = pd.DataFrame({"y": labels, "a": [NAN, NAN] + [1.0] * 8, "b": 2.0})
  synthetic = pd.DataFrame({"y": labels, "a": [NAN] * 5 + [1.0] * 5, "b": 2.0})
  result = missingness.missingness_fidelity(real, synthetic, spec)
  a = result["columns"]["a"]
  assert (a["real"], a["synthetic"]) == (0.2, 0.5)
  assert a["difference"] == pytest.approx(0.3)
  assert result["max_rate_error"] == pytest.approx(0.3)
  # Class 0 holds rows 0, 2, 4, ...: real holes 1 of 5, synthetic 3 of 5.
  assert a["by_class"]["0"]["difference"] == pytest.approx(0.4)
  assert a["by_class"]["1"]["difference"] == pytest.approx(0.2)
  assert result["columns"]["b"]["difference"] == 0.0


def test_an_intermittent_hole_is_a_monotonicity_violation_and_dropout_is_not():
  spec = _spec(series=SERIES)
  real = pd.DataFrame({
      "y": [0, 1, 0, 1],
      # row 0: sbp has a hole at visit 2 and a value at visit 3 (intermittent)
      "sbp1": [120, 120, NAN, 120], "sbp2": [NAN, 121, NAN, 121], "sbp3": [122, NAN, NAN, 122],
      # row 1: hr drops out before sbp does (monotone per series); row 2: only hr observed
      "hr1": [70, 70, 71, NAN], "hr2": [71, NAN, 72, 71], "hr3": [72, NAN, 73, 72]})
  monotone = real.assign(sbp2=[121, 121, NAN, 121], hr1=[70, 70, 71, 70])
  result = missingness.missingness_fidelity(real, monotone, spec)["monotonicity_violations"]
  # row 3: hr missing at visit 1, observed at 2 and 3: a second violating row
  assert result["real"] == {"rows": 2, "share": 0.5}
  assert result["synthetic"] == {"rows": 0, "share": 0.0}


def test_dropout_curve_equals_the_hand_computed_one():
  spec = _spec(series=SERIES)
  # Last visit with any series observed: 3, 2 (only hr at visit 2), 1, none.
  real = pd.DataFrame({
      "y": [0, 0, 1, 1],
      "sbp1": [120, 120, 120, NAN], "sbp2": [121, NAN, NAN, NAN], "sbp3": [122, NAN, NAN, NAN],
      "hr1": [70, 70, NAN, NAN], "hr2": [71, 71, NAN, NAN], "hr3": [NAN, NAN, NAN, NAN]})
  synthetic = real.assign(**{c: 100.0 for s in SERIES for c in s["columns"]})
  result = missingness.missingness_fidelity(real, synthetic, spec)
  curve = result["dropout_curve"]
  assert curve["visits"] == [1, 2, 3]
  assert curve["overall"]["real"] == [0.75, 0.5, 0.25]
  assert curve["by_class"]["0"]["real"] == [1.0, 1.0, 0.5]
  assert curve["by_class"]["1"]["real"] == [0.5, 0.0, 0.0]
  assert curve["overall"]["synthetic"] == [1.0, 1.0, 1.0]
  assert curve["overall"]["max_error"] == 0.75
  assert curve["by_class"]["1"]["max_error"] == 1.0
  assert result["max_dropout_curve_error"] == 1.0
  png = plots.dropout_curves(result, "y")
  assert png.startswith(b"\x89PNG")


def test_pattern_tvd_equals_the_hand_computed_value():
  spec = _spec(static=_numeric("a", "b"))
  # Patterns (a, b missing): real 00, 00, 10, 11; synthetic 00, 10, 10, 01.
  real = pd.DataFrame({"y": [0, 1, 0, 1], "a": [1, 1, NAN, NAN], "b": [1, 1, 1, NAN]})
  synthetic = pd.DataFrame({"y": [0, 1, 0, 1], "a": [1, NAN, NAN, 1], "b": [1, 1, 1, NAN]})
  result = missingness.missingness_fidelity(real, synthetic, spec)
  # 0.5 * (|.5 - .25| + |.25 - .5| + |.25 - 0| + |0 - .25|)
  assert result["pattern_tvd"] == pytest.approx(0.5)
  assert result["patterns"] == {"real": 3, "synthetic": 3}
  assert missingness.missingness_fidelity(real, real, spec)["pattern_tvd"] == 0.0


def test_co_missingness_error_on_a_hand_made_case():
  spec = _spec(static=_numeric("a", "b", "c"))
  hole = lambda flags: [NAN if f else 1.0 for f in flags]
  # Real: a and b missing together (correlation 1); c never missing (constant: taken as 0).
  real = pd.DataFrame({"y": [0, 1, 0, 1], "a": hole([1, 1, 0, 0]), "b": hole([1, 1, 0, 0]),
                       "c": hole([0, 0, 0, 0])})
  # Synthetic: corr(a, b) = 1/sqrt(3), corr(a, c) = -1/sqrt(3), corr(b, c) = -1/3.
  synthetic = pd.DataFrame({"y": [0, 1, 0, 1], "a": hole([1, 1, 0, 0]),
                            "b": hole([1, 0, 0, 0]), "c": hole([0, 0, 0, 1])})
  correlation = missingness.indicator_correlation(missingness.missing_mask(real, list("abc")))
  np.testing.assert_allclose(correlation, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
  result = missingness.missingness_fidelity(real, synthetic, spec)
  # c is never missing in real rows: left out (CO_MISSINGNESS_MIN_RATE), its rate is
  # compared on its own; a and b correlate 1 in real, 1/sqrt(3) in synthetic rows.
  assert result["co_missingness_error"] == pytest.approx(1 - 1 / math.sqrt(3))
  assert result["co_missingness_columns"] == ["a", "b"]
  assert result["columns"]["c"]["difference"] == pytest.approx(0.25)


def test_fidelity_measures_skip_missing_cells():
  rng = np.random.default_rng(0)
  n = 200
  base = rng.normal(size=n)
  spec = _spec(static=_numeric("a", "b", "c") + [{"name": "sex", "type": "categorical",
                                                  "values": ["F", "M"]}])
  real = pd.DataFrame({"y": np.tile([0, 1], n // 2),
                       "a": pd.Series(np.round(50 + 10 * base)).astype("Int64"),
                       "b": 50 + 5 * base + rng.normal(size=n), "c": 50 - 3 * base,
                       "sex": rng.choice(["F", "M"], n).astype(object)})
  real.loc[:19, "a"] = pd.NA
  real.loc[10:29, "b"] = NAN
  real.loc[:9, "sex"] = None
  synthetic = real.copy()
  synthetic["a"] = synthetic["a"].astype(float)
  synthetic.loc[:9, "sex"] = NAN  # a generated table's empty category
  result = fidelity.fidelity_report(real, synthetic, spec)
  assert result["marginals"]["a"]["ks"] == 0.0
  assert result["marginals"]["sex"]["total_variation"] == 0.0
  assert result["correlation_spearman"] == pytest.approx(1.0)
  assert result["correlation"]["real_matrix"][1][0] == pytest.approx(
      real[["a", "b"]].astype(float).corr().iloc[1, 0], abs=1e-4)
  shifted = synthetic.assign(b=synthetic["b"] + 1)
  expected = stats.ks_2samp(real["b"].dropna(), shifted["b"].dropna()).statistic
  assert fidelity.fidelity_report(real, shifted, spec)["marginals"]["b"]["ks"] == pytest.approx(
      expected)
  _json(json_safe(result))


def test_complete_case_keeps_only_rows_without_holes_and_the_report_shows_it():
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 1, size=(60, 2))
  y = (x[:, 0] > 0.5).astype(int)
  complete = np.arange(60) % 3 != 0
  config = utility.UtilityConfig(bootstrap_samples=20, forest_trees=10)
  case = utility.complete_case(x, y, complete, x, y, config)
  assert (case["rows_kept"], case["rows_all"]) == (40, 60)
  assert case["models"]["lr"]["train_patients"] == 40
  use = {"real": utility.utility_table({"real": (x, y)}, x, y, config)["real"],
         "complete_case_real": case, "missing_value_rule": missingness.MODEL_ENCODING_RULE}
  page = report_html._complete_case(use)  # pylint: disable=protected-access
  assert "complete-case real (TRTR)" in page and "40 of 60" in page
  assert "carried forward from its last observed visit" in page
  assert report_html._complete_case({"real": use["real"]}) == ""  # pylint: disable=protected-access


def test_missingness_section_is_rendered_only_when_present():
  spec = _spec(static=_numeric("a"), series=SERIES)
  real = pd.DataFrame({"y": [0, 1], "a": [NAN, 1.0],
                       **{c: [100.0, NAN] for s in SERIES for c in s["columns"]}})
  holes = _json(missingness.missingness_fidelity(real, real.fillna(1.0), spec))
  page = report_html._missingness_section(  # pylint: disable=protected-access
      {"missingness": holes}, {"dropout": plots.dropout_curves(holes, "y")})
  assert "Missing values" in page and "data:image/png" in page and "class 1" in page
  assert "nan" not in re.sub(r'src="data:[^"]*"', "", page).lower()
  assert report_html._missingness_section({}, {}) == ""  # pylint: disable=protected-access
