"""The exported federated model: raw clinical columns in, the same features and
probability out as federated/site_data.py `encode` gives, holes included."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from clinical_dp.simulators import simulate
from federated import site_data as data_lib
from federated import model_steps as model_lib


def _raw_columns(frame, spec):
  """The table as `predict_raw` takes it: numbers as float32 with NaN for a hole
  (integer columns too), categories as strings with "" for a hole."""
  columns = {}
  for feature in spec.static:
    values = frame[feature.name]
    if feature.is_categorical:
      columns[feature.name] = tf.constant(values.where(values.notna(), "").astype(str).tolist())
    else:
      columns[feature.name] = tf.constant(values.astype("float64").to_numpy(np.float32))
  for column in [c for series in spec.series for c in series.columns]:
    columns[column] = tf.constant(frame[column].astype("float64").to_numpy(np.float32))
  return columns


def _with_holes(frame, spec, seed):
  """Every feature cell emptied with probability 0.3 as the validated table holds it
  (float NaN, Int64 <NA>, None in a category), plus a patient with no visit observed
  and one with every static value missing; the series cases the fill rule tells
  apart are checked present, so the table cannot lose them silently."""
  rng = np.random.default_rng(seed)
  frame = frame.copy()
  for column in spec.feature_columns:
    holes = rng.random(len(frame)) < 0.3
    holes[0] = column in [f.name for f in spec.static]
    holes[1] = column not in [f.name for f in spec.static]
    if frame[column].dtype == object:
      frame[column] = frame[column].astype(object).where(~holes, None)
    else:
      frame[column] = frame[column].astype("Float64" if frame[column].dtype.kind == "f"
                                           else "Int64").mask(holes)
  if spec.series:
    present = np.stack([frame[list(s.columns)].notna().to_numpy() for s in spec.series]).any(0)
    seen = np.cumsum(present, axis=1)
    assert (~present[:, 0] & present.any(1)).any(), "no hole before a first observed visit"
    assert (~present & (seen > 0) & (seen < seen[:, -1:])).any(), "no hole between visits"
    assert (~present[:, -1] & present.any(1)).any(), "no hole after the last observed visit"
  return frame


def _exported(frame, spec, tmp_path):
  """A saved and reloaded model with non-zero biases, so that a wrong encoding cannot
  hide behind zeros; and the probabilities `predict` gives on `encode`'s features."""
  names = data_lib.feature_names(spec)
  weights = model_lib.initial_weights(len(names), "mlp", 4, seed=1)
  weights[1] += 0.3
  model_lib.export(weights, names, str(tmp_path / "model"), spec)
  loaded = tf.saved_model.load(str(tmp_path / "model"))
  assert [n.decode() for n in loaded.feature_names.numpy()] == list(names)
  return loaded, model_lib.predict(weights, data_lib.encode(frame, spec))


@pytest.mark.parametrize("kind", ["icu", "sprint"])
def test_raw_signature_encodes_like_the_training_encoding(kind, tmp_path):
  """icu (static only) and sprint (series with dropout), each with holes of every kind:
  the saved graph's features equal `encode`'s bit for bit, and the probabilities agree."""
  frame, spec = simulate(kind, patients=60, sites=2, seed=2)
  assert spec.models_missing
  frame = _with_holes(frame, spec, seed=3)
  encoded = data_lib.encode(frame, spec)
  loaded, expected = _exported(frame, spec, tmp_path)
  columns = _raw_columns(frame, spec)
  np.testing.assert_array_equal(loaded.encode_raw(columns).numpy(), encoded)
  raw = loaded.signatures["predict_raw"](**columns)["probability"].numpy()
  scaled = loaded.signatures["serving_default"](features=tf.constant(encoded))["probability"]
  np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scaled.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_hole_is_nan_in_a_number_and_empty_in_a_category(tmp_path):
  """The signature's hole convention read directly: the indicators say missing, the
  number is 0 and the one-hot all zeros; an unknown category is no hole."""
  frame, spec = simulate("icu", patients=20, sites=2, seed=2)
  frame = frame.iloc[:2].copy()
  frame["age"] = pd.array([None, 50], dtype="Int64")
  frame["sex"] = pd.Series([None, "X"], dtype=object, index=frame.index)
  loaded, _ = _exported(frame, spec, tmp_path)
  features = pd.DataFrame(loaded.encode_raw(_raw_columns(frame, spec)).numpy(),
                          columns=data_lib.feature_names(spec))
  assert features["age"].tolist()[0] == 0.0 and features["age missing"].tolist() == [1.0, 0.0]
  assert features[["sex=F", "sex=M"]].to_numpy().tolist() == [[0.0, 0.0], [0.0, 0.0]]
  assert features["sex missing"].tolist() == [1.0, 0.0]


def test_a_spec_whose_features_differ_from_the_weights_is_refused():
  """The names built beside the serving graph's columns are checked against the
  trained feature names, so a drift of either layout fails at export."""
  _, spec = simulate("sprint", patients=20, sites=2, seed=2)
  names = data_lib.feature_names(spec)
  weights = model_lib.initial_weights(len(names) - 1, "logistic", 0, seed=1)
  with pytest.raises(ValueError, match="trained on"):
    model_lib.ExportedModel(weights, names[:-1], spec)
