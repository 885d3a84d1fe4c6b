"""preprocessing_fn on small tensors, and the spec-derived schema."""

import numpy as np
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
import pandas as pd

from clinical_dp.spec import parse_spec
from components.spec_schema_gen import schema_from_spec
from trainers.preprocessing import LABEL_KEY, preprocessing_fn

SPEC = parse_spec("""
name: tiny
id_column: pid
label_column: died
site_column: site
static:
  - {name: age, type: numeric, min: 20, max: 100}
  - {name: sex, type: categorical, values: [F, M]}
  - {name: stage, type: categorical, values: [1, 2, 3]}
series:
  - {name: sbp, min: 60, max: 260, columns: [sbp_0, sbp_1]}
  - {name: meds, min: 0, max: 6, integer: true, columns: [meds_0, meds_1]}
""")


def _column(values, dtype):
  return tf.constant(np.array(values).reshape(-1, 1), dtype=dtype)


def test_preprocessing_scales_by_spec_bounds_and_encodes_the_vocabulary():
  inputs = {
      "pid": _column([b"a", b"b", b"c"], tf.string),
      "site": _column([b"s1", b"s1", b"s2"], tf.string),
      "died": _column([0, 1, 1], tf.int64),
      "age": _column([20.0, 60.0, 100.0], tf.float32),
      "sex": _column([b"M", b"F", b"M"], tf.string),
      "stage": _column([3, 1, 2], tf.int64),
      "sbp_0": _column([60.0, 160.0, 300.0], tf.float32),
      "sbp_1": _column([260.0, 110.0, 40.0], tf.float32),
      "meds_0": _column([0, 3, 6], tf.int64),
      "meds_1": _column([6, 0, 3], tf.int64),
  }
  out = preprocessing_fn(inputs, {"spec": SPEC.to_dict()})
  np.testing.assert_allclose(out["age_xf"], [0.0, 0.5, 1.0])
  np.testing.assert_array_equal(out["sex_xf"], [[0, 1], [1, 0], [0, 1]])
  np.testing.assert_array_equal(out["stage_xf"], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
  # Series become (patients x visits); values beyond the bounds are clipped, not rescaled.
  np.testing.assert_allclose(out["sbp_xf"], [[0.0, 1.0], [0.5, 0.25], [1.0, 0.0]])
  np.testing.assert_allclose(out["meds_xf"], [[0.0, 1.0], [0.5, 0.0], [1.0, 0.5]])
  np.testing.assert_array_equal(out[LABEL_KEY], [0, 1, 1])
  np.testing.assert_array_equal(out["pid"], [b"a", b"b", b"c"])


def test_scaling_does_not_depend_on_the_batch():
  """No analyzer: a patient's encoding is the same whoever else is in the data."""
  def age_of_first(ages):
    inputs = {"pid": _column([b"x"] * len(ages), tf.string),
              "site": _column([b"s"] * len(ages), tf.string),
              "died": _column([0] * len(ages), tf.int64),
              "age": _column(ages, tf.float32), "sex": _column([b"F"] * len(ages), tf.string),
              "stage": _column([1] * len(ages), tf.int64)}
    for column in ("sbp_0", "sbp_1"):
      inputs[column] = _column([120.0] * len(ages), tf.float32)
    for column in ("meds_0", "meds_1"):
      inputs[column] = _column([1] * len(ages), tf.int64)
    return float(preprocessing_fn(inputs, {"spec": SPEC.to_dict()})["age_xf"][0])
  assert age_of_first([50.0, 60.0]) == age_of_first([50.0, 99.0, 21.0])


def test_schema_carries_types_bounds_and_vocabularies():
  schema = schema_from_spec(SPEC)
  features = {f.name: f for f in schema.feature}
  assert features["age"].type == schema_pb2.FLOAT
  assert (features["age"].float_domain.min, features["age"].float_domain.max) == (20, 100)
  assert list(features["sex"].string_domain.value) == ["F", "M"]
  assert features["stage"].type == schema_pb2.INT
  assert features["meds_1"].type == schema_pb2.INT
  assert features["meds_1"].int_domain.max == 6
  assert features["died"].int_domain.max == 1
  assert all(f.presence.min_fraction == 1.0 for f in schema.feature)


def test_schema_detects_out_of_range_and_unknown_values():
  """Positive control for the pipeline's validation: the schema catches what it should."""
  good = pd.DataFrame({"pid": ["a", "b"], "site": ["s", "s"], "died": [0, 1],
                       "age": [30.0, 70.0], "sex": ["F", "M"], "stage": [1, 3],
                       "sbp_0": [120.0, 130.0], "sbp_1": [125.0, 118.0],
                       "meds_0": [1, 2], "meds_1": [2, 2]})
  schema = schema_from_spec(SPEC)
  clean = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(good), schema)
  assert not clean.anomaly_info
  bad = good.copy()
  bad.loc[0, "age"] = 140.0
  bad.loc[1, "sex"] = "X"
  anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(bad), schema)
  assert set(anomalies.anomaly_info) == {"age", "sex"}


MISSING_SPEC = parse_spec("""
name: holes
label_column: died
missing: model
static:
  - {name: age, type: numeric, min: 20, max: 100}
  - {name: stage, type: categorical, values: [1, 2, 3]}
series:
  - {name: sbp, min: 60, max: 260, columns: [sbp_0, sbp_1, sbp_2]}
  - {name: meds, min: 0, max: 6, integer: true, columns: [meds_0, meds_1, meds_2]}
""")


def _sparse(values, dtype):
  """A nullable column as Transform reads it from tf.Examples: None cells absent."""
  present = [i for i, v in enumerate(values) if v is not None]
  return tf.SparseTensor([[i, 0] for i in present] or np.zeros((0, 2), np.int64),
                         tf.constant([values[i] for i in present], dtype), [len(values), 1])


def test_holes_are_imputed_by_public_rules_and_marked():
  """Rows: complete; age and stage missing, sbp missing before its first visit; dropout
  after the first visit; no visit observed; an intermittent hole (carried forward)."""
  rows = {
      "died": [0, 1, 0, 1, 0],
      "age": [60.0, None, 100.0, 20.0, 60.0],
      "stage": [1, None, 3, 2, 2],
      "sbp_0": [160.0, None, 60.0, None, 110.0], "sbp_1": [260.0, 160.0, None, None, None],
      "sbp_2": [60.0, 60.0, None, None, 160.0],
      "meds_0": [0, 3, 6, None, 6], "meds_1": [3, 3, None, None, None],
      "meds_2": [6, 6, None, None, 0],
  }
  kinds = {"died": tf.int64, "stage": tf.int64, "meds_0": tf.int64, "meds_1": tf.int64,
           "meds_2": tf.int64}
  inputs = {name: (_column(values, kinds[name]) if name == "died"
                   else _sparse(values, kinds.get(name, tf.float32)))
            for name, values in rows.items()}
  out = {k: v.numpy() for k, v in preprocessing_fn(
      inputs, {"spec": MISSING_SPEC.to_dict()}).items()}
  np.testing.assert_allclose(out["age_xf"], [0.5, 0.0, 1.0, 0.0, 0.5])
  np.testing.assert_allclose(out["age__missing_xf"][:, 1], [0, 1, 0, 0, 0])
  np.testing.assert_allclose(out["stage_xf"][1], [0, 0, 0])
  np.testing.assert_allclose(out["stage__missing_xf"][:, 1], [0, 1, 0, 0, 0])
  np.testing.assert_allclose(out["sbp_xf"], [[0.5, 1.0, 0.0], [0.5, 0.5, 0.0],
                                             [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                                             [0.25, 0.25, 0.5]])
  np.testing.assert_allclose(out["meds_xf"][1], [0.5, 0.5, 1.0])
  # visits up to the last observed one: 3, 3, 1, 0, 3
  np.testing.assert_allclose(out["visits__observed_xf"].argmax(axis=1), [3, 3, 1, 0, 3])
  # outside TFX a hole is NaN in a dense column: the same encoding
  from trainers import features
  table = pd.DataFrame(rows).astype({"stage": "Int64", "meds_0": "Int64", "meds_1": "Int64",
                                     "meds_2": "Int64"})
  inputs, _ = features.encode_table(table, MISSING_SPEC)
  flat = features.flatten_inputs(inputs)
  layout = features.PatientLayout.from_spec(MISSING_SPEC)
  np.testing.assert_allclose(flat[:, layout.block_offsets()["age"]], out["age_xf"])
  # the encoding agrees with its own indicators: masking changes nothing
  np.testing.assert_allclose(features.apply_missingness(flat, layout).numpy(), flat)
  # and decoding it back gives the holes where the table had them (after dropout only:
  # the intermittent and leading holes are imputed, not modeled)
  decoded = features.table_from_flat(flat, np.asarray(rows["died"]), MISSING_SPEC)
  assert decoded["age"].isna().tolist() == [False, True, False, False, False]
  assert decoded["stage"].isna().tolist() == [False, True, False, False, False]
  assert decoded["sbp_1"].isna().tolist() == [False, False, True, True, False]
  assert str(decoded["meds_1"].dtype) == "Int64"


def test_nullable_columns_are_optional_in_the_schema_only_when_the_spec_says_so():
  nullable = {f.name: f for f in schema_from_spec(MISSING_SPEC).feature}
  assert nullable["age"].presence.min_fraction == 0.0
  assert nullable["died"].presence.min_fraction == 1.0  # a label cannot be imputed
  required = {f.name: f for f in schema_from_spec(SPEC).feature}
  assert required["age"].presence.min_fraction == 1.0
