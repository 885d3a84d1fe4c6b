"""The pure-TF DP steps: per-patient clipping, noise, Dopamine's shares, dp_fedavg's mean."""

import numpy as np
import pytest
import tensorflow as tf

from federated import dp_mean
from federated import model_steps as model_lib

NUM_FEATURES = 5


def _weights(seed=0):
  return [tf.constant(w) for w in model_lib.initial_weights(NUM_FEATURES, "mlp", 3, seed)]


def _data(rows=12, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.random((rows, NUM_FEATURES)).astype(np.float32)
  y = (rng.random(rows) < 0.4).astype(np.float32)
  patient = np.array([i // 2 for i in range(rows)], np.int32)  # two rows per patient
  return tf.constant(x), tf.constant(y), tf.constant(patient), rows // 2


def _flat(tensors):
  return np.concatenate([np.ravel(np.asarray(t)) for t in tensors])


def test_clipping_is_per_patient_over_all_its_rows():
  weights = _weights()
  x, y, patient, num_patients = _data()
  clip = 0.05
  got = _flat(model_lib.per_patient_clipped_sum(weights, x, y, patient, clip))
  expected = np.zeros_like(got)
  for p in range(num_patients):
    rows = np.flatnonzero(patient.numpy() == p)
    with tf.GradientTape() as tape:
      tape.watch(weights)
      loss = tf.reduce_sum(model_lib.losses(weights, tf.gather(x, rows), tf.gather(y, rows)))
    g = _flat(tape.gradient(loss, weights))
    expected += g * min(1.0, clip / np.linalg.norm(g))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
  # Without clipping it is the plain gradient of the summed loss.
  unclipped = _flat(model_lib.per_patient_clipped_sum(weights, x, y, patient, 1e9))
  with tf.GradientTape() as tape:
    tape.watch(weights)
    loss = tf.reduce_sum(model_lib.losses(weights, x, y))
  np.testing.assert_allclose(unclipped, _flat(tape.gradient(loss, weights)), rtol=1e-4,
                             atol=1e-7)


_WEIGHTS = _weights()
_X, _Y, _PATIENT, _NUM_PATIENTS = _data()


@tf.function  # traced once: eager vectorized_map would retrace on every call
def _noise_tensors(stddev, seed):
  args = (_WEIGHTS, _X, _Y, _PATIENT, tf.constant(_NUM_PATIENTS), tf.constant(1.0), 1.0)
  noisy = model_lib.noisy_clipped_sum(*args, stddev, seed)
  clean = model_lib.noisy_clipped_sum(*args, tf.constant(0.0), seed)
  return [a - b for a, b in zip(noisy, clean)]


def _noise_only(stddev, seed):
  """The noise a DP step adds: every patient sampled, clean sum subtracted."""
  return _flat(_noise_tensors(tf.constant(stddev, tf.float32), tf.constant(seed, tf.int64)))


def test_positive_control_dp_noise_is_applied_at_its_scale():
  assert np.all(_noise_only(0.0, [1, 2]) == 0)
  noise = np.concatenate([_noise_only(3.0, [1, s]) for s in range(40)])
  assert noise.std() == pytest.approx(3.0, rel=0.08)
  assert abs(noise.mean()) < 0.2


def test_dopamine_noise_shares_compose_to_the_central_scale():
  sigma, clip, sites = 1.3, 1.0, 8
  share = sigma * clip / np.sqrt(sites)
  totals = [sum(_noise_only(share, [r, k]) for k in range(sites)) for r in range(40)]
  total = np.concatenate(totals)
  assert total.std() == pytest.approx(sigma * clip, rel=0.08)
  # One site's share alone would be far too little noise for central DP-SGD.
  assert _noise_only(share, [0, 0]).std() < 0.6 * sigma * clip


def test_local_dp_training_moves_with_the_noise():
  weights = _weights()
  x, y, patient, num_patients = _data()
  common = dict(steps=3, batch_size=4, learning_rate=0.1, dp=True, clip=1.0)
  run = lambda sigma: _flat(model_lib.local_train(
      weights, x, y, patient, tf.constant(num_patients), tf.constant([5, 6], tf.int64),
      noise_multiplier=sigma, **common))
  start = _flat(weights)
  quiet, loud = np.linalg.norm(run(0.0) - start), np.linalg.norm(run(50.0) - start)
  assert loud > 10 * quiet


def test_a_site_smaller_than_the_batch_steps_by_its_mean_clipped_gradient():
  """q = 1 draws every patient, so the expected batch is the site, not batch_size: the
  update must not shrink by patients / batch_size (it did: 6 / 64 here)."""
  weights = _weights()
  x, y, patient, num_patients = _data()
  step = lambda batch_size: _flat(model_lib.local_train(
      weights, x, y, patient, tf.constant(num_patients), tf.constant([5, 6], tf.int64),
      steps=1, batch_size=batch_size, learning_rate=0.1, dp=True, clip=1e9,
      noise_multiplier=0.0))
  with tf.GradientTape() as tape:
    tape.watch(weights)
    loss = tf.reduce_sum(model_lib.losses(weights, x, y)) / num_patients
  expected = _flat(weights) - 0.1 * _flat(tape.gradient(loss, weights))
  np.testing.assert_allclose(step(64), expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(step(num_patients), expected, rtol=1e-5, atol=1e-7)
  assert float(model_lib.expected_batch(64, num_patients)) == num_patients
  assert float(model_lib.expected_batch(4, num_patients)) == 4


def _release(mechanism, release, within=0.0, key=(3, 0), shapes=((40, 20), (7,))):
  """dp_fedavg's release n of zero updates: the noise alone, and the next clip."""
  mean, next_clip = dp_mean.noisy_mean(
      mechanism, [tf.zeros(s) for s in shapes], tf.constant(within),
      tf.constant(mechanism.initial_clip),
      dp_mean.release_seed(tf.constant(key, tf.int64), tf.constant(release, tf.int64)))
  return _flat(mean), float(next_clip)


def test_dp_fedavg_noise_is_seeded_per_release_at_the_mechanisms_scale():
  fixed = dp_mean.Mechanism(clients_per_round=4, initial_clip=0.5, value_noise_multiplier=1.5)
  noise = np.concatenate([_release(fixed, n)[0] for n in range(10)])
  assert noise.std() == pytest.approx(1.5 * 0.5 / 4, rel=0.05)  # z x clip / K, per weight
  assert abs(noise.mean()) < 0.01
  assert np.array_equal(_release(fixed, 3)[0], _release(fixed, 3)[0])  # a rerun
  assert not np.allclose(_release(fixed, 3)[0], _release(fixed, 4)[0])  # the next round
  assert not np.allclose(_release(fixed, 3)[0], _release(fixed, 3, key=(4, 0))[0])  # --seed
  assert _release(fixed, 3)[1] == 0.5  # fixed clipping keeps its clip
  # Adaptive: a centred count of 0 is the target quantile, so the clip moves only by the
  # count noise: clip x exp(-lr x noise / K), with noise ~ N(0, clipped_count_stddev^2).
  adaptive = dp_mean.Mechanism(40, 0.5, 0.7, adaptive=True, clipped_count_stddev=2.0)
  count_noise = np.array([-np.log(_release(adaptive, n, shapes=((1,),))[1] / 0.5) / 0.2 * 40
                          for n in range(300)])
  assert count_noise.std() == pytest.approx(2.0, rel=0.12)
  value_noise = np.concatenate([_release(adaptive, n)[0] for n in range(5)])
  assert value_noise.std() == pytest.approx(0.7 * 0.5 / 40, rel=0.05)
