"""The exported federated model: raw clinical columns in, the same probability out."""

import numpy as np
import tensorflow as tf

from clinical_dp.simulators import simulate
from federated import data as data_lib
from federated import model as model_lib


def test_raw_signature_scales_like_the_training_encoding(tmp_path):
  frame, spec = simulate("icu", patients=60, sites=2, seed=2)
  names = data_lib.feature_names(spec)
  weights = model_lib.initial_weights(len(names), "mlp", 4, seed=1)
  weights[1] += 0.3  # non-zero biases, so a wrong encoding cannot hide behind zeros
  model_lib.export(weights, names, str(tmp_path / "model"), spec)
  loaded = tf.saved_model.load(str(tmp_path / "model"))
  expected = model_lib.predict(weights, data_lib.encode(frame, spec))
  columns = {}
  for feature in spec.static:
    values = frame[feature.name]
    columns[feature.name] = tf.constant(values.astype(str).tolist()) if feature.is_categorical \
        else tf.constant(values.to_numpy(np.float32))
  raw = loaded.signatures["predict_raw"](**columns)["probability"].numpy()
  scaled = loaded.signatures["serving_default"](
      features=tf.constant(data_lib.encode(frame, spec)))["probability"].numpy()
  np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-6)
  assert [n.decode() for n in loaded.feature_names.numpy()] == list(names)
