"""The model and its update steps in plain TensorFlow, free of TFF.

As in TFF's simple_fedavg, everything a site or the server computes lives here as
ordinary TF functions on a list of weight tensors; federated/process.py only wires
them into TFF computations. The DP-SGD step is written out (per-patient clipping,
Gaussian noise) because TF Privacy's Keras optimizers break inside TFF client
updates (tensorflow-federated issue 1381).

Privacy unit: the patient. A step samples patients (Poisson, rate q), sums the
gradients of each sampled patient's rows, clips that per-patient sum to norm `clip`
and adds N(0, (noise_stddev)^2) to the total: the sampled Gaussian mechanism on
patients, exactly, even when a patient has several rows.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np
import tensorflow as tf

Weights = List[tf.Tensor]


def initial_weights(num_features: int, model: str, hidden_units: int, seed: int
                    ) -> List[np.ndarray]:
  """Glorot-uniform kernels and zero biases; a logistic model has no hidden layer."""
  rng = np.random.default_rng(seed)
  sizes = [num_features, hidden_units, 1] if model == "mlp" else [num_features, 1]
  weights = []
  for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    weights += [rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32),
                np.zeros(fan_out, np.float32)]
  return weights


def logits(weights: Sequence[tf.Tensor], x: tf.Tensor) -> tf.Tensor:
  """[rows] logits; ReLU between layers."""
  h = x
  layers = len(weights) // 2
  for i in range(layers):
    h = tf.matmul(h, weights[2 * i]) + weights[2 * i + 1]
    if i < layers - 1:
      h = tf.nn.relu(h)
  return tf.reshape(h, [-1])


def losses(weights: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits(weights, x))


def sample_patients(patient: tf.Tensor, num_patients: tf.Tensor, q: tf.Tensor,
                    seed: tf.Tensor) -> tf.Tensor:
  """Row indices of the patients drawn, each patient independently with probability q."""
  chosen = tf.random.stateless_uniform(tf.reshape(num_patients, [1]), seed) < q
  return tf.reshape(tf.where(tf.gather(chosen, patient)), [-1])


def per_patient_clipped_sum(weights: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor,
                            patient: tf.Tensor, clip: float) -> Weights:
  """Sum over patients of each patient's gradient (over all its rows), clipped to `clip`."""
  weights = list(weights)

  def example_gradient(args):
    xi, yi = args
    with tf.GradientTape() as tape:
      tape.watch(weights)
      loss = tf.reduce_sum(losses(weights, xi[None, :], yi[None]))
    return tape.gradient(loss, weights)

  per_example = tf.vectorized_map(example_gradient, (x, y))
  # Rows of one patient are summed before clipping: the patient is the unit.
  compact, index = tf.unique(patient)
  count = tf.shape(compact)[0]
  per_patient = [tf.math.unsorted_segment_sum(g, index, count) for g in per_example]
  squared = tf.add_n([tf.reduce_sum(tf.reshape(g, [count, -1]) ** 2, axis=1)
                      for g in per_patient])
  scale = tf.minimum(1.0, clip / tf.maximum(tf.sqrt(squared), 1e-12))
  return [tf.tensordot(scale, g, axes=1) for g in per_patient]


def noisy_clipped_sum(weights: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor,
                      patient: tf.Tensor, num_patients: tf.Tensor, q: tf.Tensor, clip: float,
                      noise_stddev: tf.Tensor, seed: tf.Tensor) -> Weights:
  """One DP-SGD gradient sum: Poisson-sampled patients, clipped, plus Gaussian noise.

  With noise_stddev = sigma * clip this is central DP-SGD's numerator; a Dopamine
  site passes sigma * clip / sqrt(K), so that the K shares add up to the central scale.
  """
  rows = sample_patients(patient, num_patients, q, seed)
  sums = per_patient_clipped_sum(weights, tf.gather(x, rows), tf.gather(y, rows),
                                 tf.gather(patient, rows), clip)
  return add_gaussian_noise(sums, noise_stddev, seed + 1)


def add_gaussian_noise(tensors: Sequence[tf.Tensor], stddev: tf.Tensor,
                       seed: tf.Tensor) -> Weights:
  """Each tensor plus N(0, stddev^2) noise, drawn statelessly: a function of `seed` only.

  Stateless, so a rerun with the same seeds adds the same noise, inside TFF or not.
  """
  noise_seeds = tf.random.experimental.stateless_split(seed, num=len(tensors))
  stddev = tf.cast(stddev, tf.float32)
  return [t + stddev * tf.random.stateless_normal(tf.shape(t), noise_seeds[i])
          for i, t in enumerate(tensors)]


def mean_gradient(weights: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor) -> Weights:
  """Non-private gradient of the mean loss; zero on an empty batch."""
  weights = list(weights)
  with tf.GradientTape() as tape:
    tape.watch(weights)
    loss = tf.reduce_sum(losses(weights, x, y)) / tf.maximum(tf.cast(tf.shape(x)[0], tf.float32),
                                                             1.0)
  return tape.gradient(loss, weights)


def expected_batch(batch_size: int, num_patients) -> tf.Tensor:
  """Patients a Poisson-sampled step draws on average, q * n = min(batch_size, n): the
  denominator of a DP-SGD step. Dividing by batch_size alone would shrink every step on
  fewer than batch_size patients (a small site, a small trial) by n / batch_size.

  n is public here as it is in q, which the accountant already uses."""
  return tf.minimum(float(batch_size), tf.maximum(tf.cast(num_patients, tf.float32), 1.0))


def local_train(weights: Sequence[tf.Tensor], x: tf.Tensor, y: tf.Tensor, patient: tf.Tensor,
                num_patients: tf.Tensor, seed: tf.Tensor, steps: int, batch_size: int,
                learning_rate: float, dp: bool, clip: float = 1.0,
                noise_multiplier: float = 0.0) -> Weights:
  """`steps` SGD steps on one site's data from `weights`; returns the new weights.

  Each step samples patients with rate q = batch_size / num_patients (at most 1). With
  `dp`, the step is DP-SGD: clipped per-patient sum plus N(0, (noise_multiplier * clip)^2),
  divided by the expected batch (`expected_batch`, public, not the drawn count).
  """
  expected = expected_batch(batch_size, num_patients)
  q = expected / tf.maximum(tf.cast(num_patients, tf.float32), 1.0)
  weights = [tf.identity(w) for w in weights]
  step_seeds = tf.random.experimental.stateless_split(seed, num=steps)
  for step in range(steps):  # a few steps: unrolled, so each keeps its own shapes
    if dp:
      sums = noisy_clipped_sum(weights, x, y, patient, num_patients, q, clip,
                               tf.constant(noise_multiplier * clip, tf.float32),
                               step_seeds[step])
      gradient = [s / expected for s in sums]
    else:
      rows = sample_patients(patient, num_patients, q, step_seeds[step])
      gradient = mean_gradient(weights, tf.gather(x, rows), tf.gather(y, rows))
    weights = [w - learning_rate * g for w, g in zip(weights, gradient)]
  return weights


def server_momentum_step(weights: Sequence[tf.Tensor], momentum: Sequence[tf.Tensor],
                         direction: Sequence[tf.Tensor], learning_rate: float, beta: float):
  """Heavy-ball step along `direction` (a model delta, or minus a gradient)."""
  momentum = [beta * m + d for m, d in zip(momentum, direction)]
  weights = [w + learning_rate * m for w, m in zip(weights, momentum)]
  return weights, momentum


def predict(weights: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
  """Probabilities in NumPy, for evaluation outside TFF."""
  h = x
  layers = len(weights) // 2
  for i in range(layers):
    h = h @ weights[2 * i] + weights[2 * i + 1]
    if i < layers - 1:
      h = np.maximum(h, 0.0)
  return 0.5 * (1.0 + np.tanh(0.5 * h.reshape(-1)))  # the sigmoid, without overflow


class ExportedModel(tf.Module):
  """The released classifier, with two signatures:

  `serving_default` / `predict_features`: the scaled feature matrix (federated/data.py
    `encode`), [batch, features] float32 -> probability;
  `predict_raw`: one [batch] tensor per raw clinical column (numbers in clinical units,
    categories as strings), scaled inside by the spec's bounds and values, as `encode`.
  """

  def __init__(self, weights: Sequence[np.ndarray], feature_names: Sequence[str], spec=None):
    super().__init__()
    self.weights = [tf.Variable(w, trainable=False) for w in weights]
    # A variable, so the names travel with the SavedModel.
    self.feature_names = tf.Variable(list(feature_names), trainable=False)
    self.predict_features = tf.function(
        self._predict,
        input_signature=[tf.TensorSpec([None, len(feature_names)], tf.float32, "features")])
    self._spec = spec
    if spec is not None:
      signature = {}
      for feature in spec.static:
        signature[feature.name] = tf.TensorSpec(
            [None], tf.string if feature.is_categorical else tf.float32, feature.name)
      for series in spec.series:
        for column in series.columns:
          signature[column] = tf.TensorSpec([None], tf.float32, column)
      self.predict_raw = tf.function(self._predict_raw, input_signature=[signature])

  def _predict(self, features):
    return {"probability": tf.sigmoid(logits(self.weights, features))}

  def _predict_raw(self, columns):
    def scale(values, low, high):
      return tf.clip_by_value((values - low) / (high - low), 0.0, 1.0)[:, None]
    parts = []
    for feature in self._spec.static:
      values = columns[feature.name]
      if feature.is_categorical:
        parts.append(tf.cast(tf.equal(values[:, None], tf.constant(list(feature.values))[None]),
                             tf.float32))
      else:
        parts.append(scale(values, feature.min, feature.max))
    for series in self._spec.series:
      parts += [scale(columns[c], series.min, series.max) for c in series.columns]
    return self._predict(tf.concat(parts, axis=1))


def export(weights: Sequence[np.ndarray], feature_names: Sequence[str], path: str,
           spec=None) -> None:
  module = ExportedModel(weights, feature_names, spec)
  signatures = {"serving_default": module.predict_features,
                "predict_features": module.predict_features}
  if spec is not None:
    signatures["predict_raw"] = module.predict_raw
  tf.saved_model.save(module, path, signatures=signatures)
