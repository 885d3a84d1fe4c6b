"""The model and its update steps in plain TensorFlow, free of TFF.

As in TFF's simple_fedavg, everything a site or the server computes lives here as
ordinary TF functions on a list of weight tensors; federated/iterative_process.py only wires
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
  return tf.reshape(tf.where(tf.gather(_chosen(num_patients, q, seed), patient)), [-1])


def _chosen(num_patients: tf.Tensor, q: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """[num_patients] bool: which patients the Poisson draw of `seed` takes."""
  return tf.random.stateless_uniform(tf.reshape(num_patients, [1]), seed) < q


@tf.function(autograph=False, input_signature=[
    tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32),
    tf.TensorSpec([None, 2], tf.int64)])
def _drawn_by_any(patient, num_patients, q, seeds):
  """Rows whose patient at least one of the draws of `seeds` takes (one call per site)."""
  chosen = tf.map_fn(lambda seed: _chosen(num_patients, q, seed), seeds,
                     fn_output_signature=tf.bool)
  return tf.reshape(tf.where(tf.gather(tf.reduce_any(chosen, axis=0), patient)), [-1])


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


def local_sampling_rate(batch_size: int, num_patients) -> tf.Tensor:
  """q of a site's local step: its expected batch over its patients (at most 1)."""
  return expected_batch(batch_size, num_patients) / tf.maximum(
      tf.cast(num_patients, tf.float32), 1.0)


def local_step_seeds(seed: tf.Tensor, steps: int) -> tf.Tensor:
  """The seeds of a round's local steps, one per step, from the round's seed."""
  return tf.random.experimental.stateless_split(seed, num=steps)


def drawn_rows(patient: np.ndarray, num_patients: int, q, seeds) -> np.ndarray:
  """Rows, in row order, of the patients that at least one of the Poisson draws
  `sample_patients(patient, num_patients, q, seed)` takes, over `seeds`.

  A round's client computation touches no other row: given only these rows (their
  `patient` indices and `num_patients` unchanged), every draw inside it takes the same
  patients' rows in the same order, so the round computes exactly what it would on the
  site's whole table. The simulation hands each round only these rows instead of every
  site's table, which TFF serializes into every call (at 200 sites of 5000 patients a
  round took 1.1 s in one process and 3 s on two workers); a real site would draw the
  same patients from its own."""
  seeds = np.asarray([np.asarray(seed) for seed in seeds], np.int64).reshape(-1, 2)
  return _drawn_by_any(tf.constant(patient, tf.int32), tf.constant(num_patients, tf.int32),
                       tf.cast(q, tf.float32), tf.constant(seeds)).numpy()


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
  q = local_sampling_rate(batch_size, num_patients)
  weights = [tf.identity(w) for w in weights]
  seeds = local_step_seeds(seed, steps)
  for step in range(steps):  # a few steps: unrolled, so each keeps its own shapes
    if dp:
      sums = noisy_clipped_sum(weights, x, y, patient, num_patients, q, clip,
                               tf.constant(noise_multiplier * clip, tf.float32),
                               seeds[step])
      gradient = [s / expected for s in sums]
    else:
      rows = sample_patients(patient, num_patients, q, seeds[step])
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

  `serving_default` / `predict_features`: the scaled feature matrix (federated/site_data.py
    `encode`), [batch, features] float32 -> probability;
  `predict_raw`: one [batch] tensor per raw clinical column (numbers in clinical units
    as float32, categories as strings), encoded inside by `encode_raw`, which is
    federated/site_data.py `encode` written in TensorFlow step for step, holes included.

  A hole is sent as the pipeline's classifier sends it to its `predict_features`
  signature: NaN in a number, "" in a category. Unlike there, every number here is a
  float32 input, integer columns too, so an integer column's hole is float NaN as well
  (integers up to 2^24 are exact in float32, far beyond any clinical bound). The same
  convention holds for a spec without `missing: model`: a hole is encoded as `encode`
  encodes it, though such a model never saw one in training.
  """

  def __init__(self, weights: Sequence[np.ndarray], feature_names: Sequence[str], spec=None):
    super().__init__()
    self.weights = [tf.Variable(w, trainable=False) for w in weights]
    # A variable, so the names travel with the SavedModel.
    self.feature_names = tf.Variable(list(feature_names), trainable=False)
    self.predict_features = tf.function(
        self._predict,
        input_signature=[tf.TensorSpec([None, len(feature_names)], tf.float32, "features")])
    self._names = list(feature_names)
    self._spec = spec
    if spec is not None:
      signature = {}
      for feature in spec.static:
        signature[feature.name] = tf.TensorSpec(
            [None], tf.string if feature.is_categorical else tf.float32, feature.name)
      for series in spec.series:
        for column in series.columns:
          signature[column] = tf.TensorSpec([None], tf.float32, column)
      # Saved with the model (not a serving signature), so a test can hold the saved
      # graph's features to `encode`'s bit for bit rather than through a probability.
      # No autograph: the loops run over the spec at trace time, and the name check's
      # ValueError reaches the caller as it is.
      self.encode_raw = tf.function(self._encode_raw, input_signature=[signature],
                                    autograph=False)
      self.predict_raw = tf.function(lambda columns: self._predict(self.encode_raw(columns)),
                                     input_signature=[signature], autograph=False)
      # Traced now, so a spec whose features differ from `feature_names` (the weights'
      # layout) fails at construction, not when the model is first served.
      self.encode_raw.get_concrete_function()

  def _predict(self, features):
    return {"probability": tf.sigmoid(logits(self.weights, features))}

  def _encode_raw(self, columns):
    """federated/site_data.py `encode`, line for line, on raw [batch] columns.

    Each column is built beside its name, and the names must equal `feature_names`
    (federated/site_data.py `feature_names`, which the weights were trained on): the width
    and order of `encode` are then checked by construction, and the values by
    tests/federated/test_export.py, which feeds one table with holes through both."""
    spec = self._spec
    named = []
    for feature in spec.static:
      values = columns[feature.name]
      if feature.is_categorical:
        present = tf.not_equal(values, "")
        named += [(f"{feature.name}={value}", _as_float(tf.equal(values, value) & present))
                  for value in feature.values]
      else:
        present = tf.logical_not(tf.math.is_nan(values))
        named.append((feature.name,
                      tf.where(present, _scale(values, feature.min, feature.max), 0.0)))
      if spec.models_missing:
        named.append((f"{feature.name} missing", _as_float(tf.logical_not(present))))
    observed = []
    for series in spec.series:
      cells = tf.stack([columns[c] for c in series.columns], axis=1)
      present = tf.logical_not(tf.math.is_nan(cells))
      filled = _fill_series(_scale(cells, series.min, series.max), present)
      named += [(column, filled[:, v]) for v, column in enumerate(series.columns)]
      observed.append(present)
    if spec.models_missing and spec.series:
      # the visits up to the last one where any series is observed, as one ordinal code
      visits = tf.range(1, spec.num_visits + 1)
      any_observed = tf.reduce_any(tf.stack(observed), axis=0)
      count = tf.reduce_max(tf.where(any_observed, visits[None], 0), axis=1)
      code = tf.one_hot(count, spec.num_visits + 1, dtype=tf.float32)
      named += [(f"visits observed={k}", code[:, k]) for k in range(spec.num_visits + 1)]
    names = [name for name, _ in named]
    if names != self._names:
      raise ValueError(f"the spec's raw columns encode to features {names}, but the model "
                       f"was trained on {self._names} (federated/site_data.py feature_names)")
    return tf.stack([column for _, column in named], axis=1)


def _as_float(mask: tf.Tensor) -> tf.Tensor:
  return tf.cast(mask, tf.float32)


def _scale(values: tf.Tensor, low: float, high: float) -> tf.Tensor:
  """federated/site_data.py `_scale` in float32 with the same constants (the bound and the
  width each rounded once to float32), so both give the same bits; a hole stays NaN
  for the caller to replace.

  divide_no_nan, not `/`: in a traced graph Grappler's constant folding turns a
  division by a constant into a multiplication by its rounded reciprocal, one ulp off
  the division on a quarter of the values; it leaves DivNoNan alone, and the width is
  never 0 (the spec requires min < max)."""
  scaled = tf.math.divide_no_nan(values - np.float32(low), np.float32(high - low))
  return tf.clip_by_value(scaled, 0.0, 1.0)


def _fill_series(values: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
  """federated/site_data.py `_fill_series`: (rows, visits) with holes -> each hole the last
  observed value before it, else the first one after it, else 0. Its cumulative max
  and min over visits are masked reductions here (TF has no cumulative max), over a
  [visits, visits] mask: the visit counts of a spec are small."""
  num_visits = values.shape[1]
  visits = tf.range(num_visits)
  up_to = visits[None, :] <= visits[:, None]  # [v, u]: u <= v
  last = tf.reduce_max(tf.where(up_to[None] & present[:, None, :], visits, -1), axis=2)
  first = tf.reduce_min(tf.where(tf.transpose(up_to)[None] & present[:, None, :], visits,
                                 num_visits), axis=2)
  first = tf.where(first < num_visits, first, -1)
  source = tf.where(last >= 0, last, first)
  filled = tf.gather(values, tf.maximum(source, 0), axis=1, batch_dims=1)
  return tf.where(source >= 0, filled, 0.0)


def export(weights: Sequence[np.ndarray], feature_names: Sequence[str], path: str,
           spec=None) -> None:
  module = ExportedModel(weights, feature_names, spec)
  signatures = {"serving_default": module.predict_features,
                "predict_features": module.predict_features}
  if spec is not None:
    signatures["predict_raw"] = module.predict_raw
  tf.saved_model.save(module, path, signatures=signatures)
