"""Checks that need TFF's execution context; run as a child by test_tff_wiring.py.

Prints one JSON line: the secure sum against the plain sum, one Dopamine round
through TFF against the same round computed directly in TF, and every federated
algorithm given only the rows each round draws against the same run on whole tables.
"""

import json

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from federated import algorithms
from federated import model_steps as model_lib
from federated import iterative_process
from federated.child_session import kill_own_workers
from federated.config import FederatedConfig
from federated.site_data import SPLITS, FederatedData, SiteData


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


def drawn_rows_check():
  """{algorithm: (largest weight difference between a run given only each round's drawn
  rows (as federated.algorithms runs) and one given every site's whole table, share of the
  sites' rows passed to the rounds)}, three rounds on three sites of two rows per patient."""
  rng = np.random.default_rng(2)

  def site(rows):
    x = rng.random((rows, 6)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.random(rows) > 0.6).astype(np.float32)
    return SiteData(x, y, np.arange(rows, dtype=np.int32) // 2, rows // 2)

  sizes = {"a": 400, "b": 240, "c": 90}
  data = FederatedData(tuple(sizes), {split: {name: site(rows) for name, rows in sizes.items()}
                                      for split in SPLITS},
                       tuple(f"f{i}" for i in range(6)), "drawn rows check", "check")
  config = FederatedConfig(rounds=3, seed=5, site_batch_size=16, batch_size=64)
  original = iterative_process.client_value
  passed = []

  def counted(site_data, rows=None):
    value = original(site_data, rows)
    passed.append((len(value["y"]), site_data.rows))
    return value

  found = {}
  try:
    for algorithm in ("fedavg", "local_dp", "dp_fedavg", "dopamine", "cyclical"):
      passed.clear()
      iterative_process.client_value = counted
      drawn = algorithms.run(algorithm, data, config, log=lambda _: None)
      share = sum(p for p, _ in passed) / sum(w for _, w in passed)
      iterative_process.client_value = lambda site_data, rows=None: original(site_data)
      whole = algorithms.run(algorithm, data, config, log=lambda _: None)
      found[algorithm] = (max(float(np.max(np.abs(a - b)))
                              for a, b in zip(drawn.weights, whole.weights)), share)
  finally:
    iterative_process.client_value = original
  return found


def cycle_check():
  """(largest weight difference between one `build_cycle` call over four sites and one
  `process.next` call per site in the same order, how far the weights moved, the same
  difference with the visiting order reversed in the cycle only)."""
  rng = np.random.default_rng(3)
  sites = []
  for rows in (40, 7, 26, 0):  # an empty site (every patient missed by the draws) too
    x = rng.random((rows, 6)).astype(np.float32)
    sites.append(SiteData(x, (x[:, 0] > 0.5).astype(np.float32),
                          np.arange(rows, dtype=np.int32) // 2, max(1, (rows + 1) // 2)))
  initial = model_lib.initial_weights(6, "mlp", 3, 0)
  client = iterative_process.local_training_step(3, 8, 0.5, dp=True, clip=1.0,
                                                 noise_multiplier=0.8)
  built = iterative_process.build_process(initial, 6, client,
                                          iterative_process.mean_aggregator(False), 1.0, 0.0)
  cycle = iterative_process.build_cycle(built, initial, 6, client)
  values = [iterative_process.client_value(s) for s in sites]
  seeds = [np.array([7, k], np.int64) for k in range(len(sites))]
  iterative_process.use_test_context()
  state = built.initialize()
  for value, seed in zip(values, seeds):
    state, _ = built.next(state, [value], [seed])
  per_site = _flat(iterative_process.weights_of(state))

  def one_call(order):
    out = cycle(built.initialize(), iterative_process.cycle_value(
        [values[k] for k in order], [seeds[k] for k in order]))
    return _flat(iterative_process.weights_of(out))

  forward = one_call(range(len(sites)))
  backward = one_call(list(reversed(range(len(sites)))))
  return (float(np.max(np.abs(forward - per_site))),
          float(np.max(np.abs(per_site - _flat(initial)))),
          float(np.max(np.abs(backward - per_site))))


def _flat(weights):
  return np.concatenate([np.ravel(w) for w in weights])


if __name__ == "__main__":
  secure_error = secure_sum_check()
  dopamine_error, moved = dopamine_round_check()
  print(json.dumps({"secure_sum_max_error": secure_error, "dopamine_max_error": dopamine_error,
                    "dopamine_moved": moved, "drawn_rows": drawn_rows_check(),
                    "cycle": cycle_check()}), flush=True)
  kill_own_workers()  # as federated.simulate does; the test fails on any leftover
