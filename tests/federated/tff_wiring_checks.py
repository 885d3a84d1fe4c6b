"""Checks that need TFF's execution context; run as a child by test_tff_wiring.py.

Prints one JSON line: the secure sum against the plain sum, and one Dopamine round
through TFF against the same round computed directly in TF.
"""

import json

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from federated import model_steps as model_lib
from federated import iterative_process
from federated.child_session import kill_own_workers
from federated.site_data import SiteData


def secure_sum_check():
  iterative_process.use_test_context()
  value_type = tff.to_type([tff.TensorType(np.float32, [4]), tff.TensorType(np.float32, [2])])
  aggregation = iterative_process.secure_sum_aggregator(100.0).create(value_type)
  rng = np.random.default_rng(0)
  values = [[rng.normal(0, 10, 4).astype(np.float32), rng.normal(0, 10, 2).astype(np.float32)]
            for _ in range(5)]
  output = aggregation.next(aggregation.initialize(), values)
  got = np.concatenate([np.ravel(v) for v in output.result])
  plain = np.concatenate([np.sum([v[i] for v in values], axis=0) for i in range(2)])
  return float(np.max(np.abs(got - plain)))


def dopamine_round_check():
  rng = np.random.default_rng(1)
  sites = []
  for rows in (30, 12, 20):
    x = rng.random((rows, 6)).astype(np.float32)
    sites.append(SiteData(x, (rng.random(rows) < 0.3).astype(np.float32),
                          np.arange(rows, dtype=np.int32) // 2, rows // 2))
  initial = model_lib.initial_weights(6, "mlp", 3, 0)
  q, clip, share, lr, batch = 0.5, 1.0, 0.7, 0.3, 16
  built = iterative_process.build_process(initial, 6,
                                          iterative_process.dopamine_step(q, clip, share),
                                          iterative_process.secure_sum_aggregator(1000.0), lr, 0.9,
                                          direction_scale=-1.0 / batch)
  seeds = [np.array([3, k], np.int64) for k in range(3)]
  clients = [iterative_process.client_value(s) for s in sites]
  state, _ = built.next(built.initialize(), clients, seeds)
  got = np.concatenate([np.ravel(w) for w in iterative_process.weights_of(state)])
  weights = [tf.constant(w) for w in initial]
  total = None
  for site, seed in zip(sites, seeds):
    sums = model_lib.noisy_clipped_sum(weights, tf.constant(site.x), tf.constant(site.y),
                                       tf.constant(site.patient), tf.constant(site.num_patients),
                                       tf.constant(q), clip, tf.constant(share),
                                       tf.constant(seed))
    total = sums if total is None else [a + b for a, b in zip(total, sums)]
  expected = np.concatenate([np.ravel(w.numpy() - lr * t.numpy() / batch)
                             for w, t in zip(weights, total)])
  moved = float(np.max(np.abs(expected - np.concatenate([np.ravel(w) for w in initial]))))
  return float(np.max(np.abs(got - expected))), moved


if __name__ == "__main__":
  secure_error = secure_sum_check()
  dopamine_error, moved = dopamine_round_check()
  print(json.dumps({"secure_sum_max_error": secure_error, "dopamine_max_error": dopamine_error,
                    "dopamine_moved": moved}), flush=True)
  kill_own_workers()  # as federated.simulate does; the test fails on any leftover
