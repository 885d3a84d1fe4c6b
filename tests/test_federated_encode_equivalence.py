"""federated/site_data.py's NumPy `encode` against the pipeline's own transform_features.

The federated runtime cannot import TensorFlow Transform, so it re-implements the
pipeline's encoding; a federated model and a pipeline model of the same table must
see the same numbers (holes included), or their scores compare different inputs.
Each federated column is matched by name to its column of trainers/features.py's flat
layout (series visit by visit, numeric static, then one-hot blocks) and must be equal
bit for bit.
"""

import numpy as np
import pandas as pd
import pytest

from clinical_dp.spec import DROPOUT_KEY, spec_from_dict
from clinical_dp.validation import validate_table
from federated import site_data as data_lib
from trainers.features import PatientLayout, encode_table, flatten_inputs
from trainers.preprocessing import missing_key

VISITS = 4


def _spec(missing):
  return spec_from_dict({
      "name": "holes", "id_column": "pid", "label_column": "died", "site_column": "site",
      "missing": missing,
      "static": [{"name": "age", "type": "numeric", "min": 18, "max": 90, "integer": True},
                 {"name": "bmi", "type": "numeric", "min": 12.5, "max": 60},
                 {"name": "sex", "type": "categorical", "values": ["F", "M"]},
                 {"name": "stage", "type": "categorical", "values": ["I", "II", "III"]}],
      "series": [{"name": "hr", "min": 30, "max": 200, "integer": True,
                  "columns": [f"hr_{v}" for v in range(VISITS)]},
                 {"name": "lac", "min": 0.3, "max": 15.0,
                  "columns": [f"lac_{v}" for v in range(VISITS)]}]})


def _complete_table():
  return pd.DataFrame({
      "pid": ["p0", "p1", "p2", "p3", "p4", "p5"],
      "site": ["a", "a", "a", "b", "b", "b"],
      "died": np.array([0, 1, 0, 1, 0, 1], np.int64),
      "age": np.array([18, 44, 67, 90, 53, 71], np.int64),
      "bmi": [12.5, 23.7, 31.1, 60.0, 70.0, 19.9],  # 70 is out of bounds: clipped
      "sex": ["F", "M", "M", "F", "M", "F"],
      "stage": ["I", "III", "II", "II", "I", "III"],
      **{f"hr_{v}": np.array([60 + 7 * v, 88, 120 - v, 30, 200, 95 + v], np.int64)
         for v in range(VISITS)},
      **{f"lac_{v}": [0.3 + v, 1.7, 15.0, 2.2 * (v + 1), 0.9, 4.4 - v] for v in range(VISITS)},
  })


def _table_with_holes():
  """Every kind of hole the validated table can hold: float NaN, Int64 <NA>, a None
  category; series holes before the first, between and after the last observed visit,
  one series observed later than the other, and a patient with no visit at all."""
  table = _complete_table()
  table["age"] = pd.array([18, None, 67, 90, None, 71], dtype="Int64")
  table["bmi"] = [np.nan, 23.7, 31.1, np.nan, 70.0, 19.9]
  table["sex"] = pd.Series(["F", None, "M", "F", np.nan, "F"], dtype=object)
  table["stage"] = pd.Series([None, "III", "II", None, "I", "III"], dtype=object)
  hr = np.array(table[[f"hr_{v}" for v in range(VISITS)]], np.float64)
  lac = np.array(table[[f"lac_{v}" for v in range(VISITS)]], np.float64)
  hr[0, [0, 2, 3]] = np.nan    # leading, intermittent and trailing holes
  lac[0, [1, 3]] = np.nan
  hr[1, 2:] = np.nan           # monotone dropout after visit 2
  lac[1, 2:] = np.nan
  hr[2, :] = np.nan            # one series never observed, the other is
  lac[3, 3] = np.nan           # the dropout code counts any series' last visit
  hr[4, :] = np.nan            # no visit observed at all
  lac[4, :] = np.nan
  for v in range(VISITS):
    table[f"hr_{v}"] = pd.array([None if np.isnan(x) else int(x) for x in hr[:, v]],
                                dtype="Int64")
    table[f"lac_{v}"] = lac[:, v]
  return table


def _pipeline_columns(spec):
  """Federated feature name -> its column in the pipeline's flat layout; and the
  pipeline's [observed] indicator columns, the complement of federated's "missing"."""
  layout = PatientLayout.from_spec(spec)
  offsets = layout.block_offsets()
  columns, observed = {}, {}
  for index, series in enumerate(spec.series):
    for visit, column in enumerate(series.columns):
      columns[column] = visit * layout.num_series + index
  for feature in spec.static:
    if feature.is_categorical:
      for j, value in enumerate(feature.values):
        columns[f"{feature.name}={value}"] = offsets[feature.name] + j
    else:
      columns[feature.name] = offsets[feature.name]
    if spec.models_missing:
      columns[f"{feature.name} missing"] = offsets[missing_key(feature.name)] + 1
      observed[f"{feature.name} missing"] = offsets[missing_key(feature.name)]
  if spec.models_missing:
    for k in range(spec.num_visits + 1):
      columns[f"visits observed={k}"] = offsets[DROPOUT_KEY] + k
  return columns, observed


def _assert_same_encoding(table, spec):
  federated = data_lib.encode(table, spec)
  pipeline = flatten_inputs(encode_table(table, spec)[0])
  names = data_lib.feature_names(spec)
  columns, observed = _pipeline_columns(spec)
  assert federated.shape == (len(table), len(names))
  assert sorted(names) == sorted(columns), "federated features without a pipeline key"
  # every pipeline column is accounted for, so neither side encodes something the other lacks
  assert sorted(list(columns.values()) + list(observed.values())) == list(
      range(pipeline.shape[1]))
  for i, name in enumerate(names):
    np.testing.assert_array_equal(federated[:, i], pipeline[:, columns[name]], err_msg=name)
    if name in observed:
      np.testing.assert_array_equal(1.0 - federated[:, i], pipeline[:, observed[name]],
                                    err_msg=name)


def _validated(table, spec, tmp_path):
  """The same table as loading sees it: written as a CSV and read back by validation
  (within the bounds, which validation enforces; clipping is checked on the raw table)."""
  path = tmp_path / "table.csv"
  table.assign(bmi=table["bmi"].clip(upper=60.0)).to_csv(path, index=False)
  report = validate_table(str(path), spec)
  assert report.ok, report.findings
  return report.table


@pytest.mark.parametrize("missing", ["model", "drop"])
@pytest.mark.parametrize("make_table", [_complete_table, _table_with_holes])
def test_federated_encode_equals_the_pipeline_transform(make_table, missing, tmp_path):
  spec = _spec(missing)
  _assert_same_encoding(make_table(), spec)
  _assert_same_encoding(_validated(make_table(), spec, tmp_path), spec)


def test_holes_are_encoded_by_the_public_rule():
  """Spot checks of the rule itself, so that both sides cannot agree on a wrong one
  (e.g. a mean fill, which would leak a statistic of the patients)."""
  spec = _spec("model")
  table = _table_with_holes()
  encoded = pd.DataFrame(data_lib.encode(table, spec), columns=data_lib.feature_names(spec))
  assert encoded["bmi"][0] == 0.0 and encoded["bmi missing"][0] == 1.0
  assert encoded["age"][1] == 0.0 and encoded["age missing"][1] == 1.0
  assert encoded[["sex=F", "sex=M"]].iloc[1].tolist() == [0.0, 0.0]
  assert encoded["sex missing"][1] == 1.0 and encoded["sex missing"][0] == 0.0
  hr = encoded[[f"hr_{v}" for v in range(VISITS)]].to_numpy()
  assert hr[0].tolist() == [hr[0, 1]] * VISITS      # backward, then forward from visit 1
  assert hr[1, 2] == hr[1, 3] == hr[1, 1]           # carried after dropout
  assert hr[2].tolist() == [0.0] * VISITS           # never observed
  dropout = encoded[[f"visits observed={k}" for k in range(VISITS + 1)]].to_numpy()
  assert dropout.argmax(axis=1).tolist() == [VISITS - 1, 2, VISITS, VISITS, 0, VISITS]
  assert (dropout.sum(axis=1) == 1).all()


def test_without_modeled_missing_values_the_features_are_unchanged():
  spec = _spec("drop")
  names = data_lib.feature_names(spec)
  assert not [n for n in names if "missing" in n or n.startswith("visits observed")]
  assert len(names) == 2 + 2 + 3 + 2 * VISITS
