"""dp_fedavg checks that need TFF's execution context; run as a child by test_dp_fedavg.py.

Prints one JSON line: reruns of dp_fedavg with one seed and with another, and the
seeded aggregator against TFF's own DifferentiallyPrivateFactory with the noise off.
"""

import dataclasses
import json

import numpy as np
import tensorflow_federated as tff

from federated import algorithms, dp_mean, iterative_process
from federated.child_session import kill_own_workers
from federated.config import FederatedConfig
from federated.site_data import SPLITS, FederatedData, SiteData

NUM_FEATURES = 6
CLIENTS = 3


def _federation(clients: int = CLIENTS) -> FederatedData:
  rng = np.random.default_rng(4)
  sites = tuple(f"site{k}" for k in range(clients))
  splits = {}
  for split in SPLITS:
    splits[split] = {}
    for k, site in enumerate(sites):
      rows = 40 + 10 * k
      x = rng.random((rows, NUM_FEATURES)).astype(np.float32)
      y = (x[:, 0] + 0.3 * rng.random(rows) > 0.6).astype(np.float32)
      splits[split][site] = SiteData(x, y, np.arange(rows, dtype=np.int32) // 2, rows // 2)
  return FederatedData(sites, splits, tuple(f"f{i}" for i in range(NUM_FEATURES)), "synthetic",
                       "synthetic")


def _flat(weights):
  return np.concatenate([np.ravel(w) for w in weights])


def rerun_check():
  """Fixed clipping (epsilon 5) and adaptive (epsilon 2000: little noise), twice each;
  adaptive once more with another seed."""
  data = _federation()
  out = {}
  for clipping, epsilon in (("fixed", 5.0), ("adaptive", 2000.0)):
    config = FederatedConfig.fast(algorithm="dp_fedavg", rounds=3, target_epsilon=epsilon,
                                  eval_every=3, seed=5)
    runs = [algorithms.run("dp_fedavg", data, config, lambda line: None) for _ in range(2)]
    assert runs[0].details["clipping"] == clipping, runs[0].details
    first, again = (_flat(r.weights) for r in runs)
    out[clipping] = {"rerun_max_difference": float(np.max(np.abs(first - again))),
                     "rerun_same_auroc": runs[0].auroc_per_round == runs[1].auroc_per_round,
                     "same_privacy": runs[0].privacy == runs[1].privacy}
  other = algorithms.run("dp_fedavg", data, dataclasses.replace(config, seed=6),
                         lambda line: None)
  out["other_seed_max_difference"] = float(np.max(np.abs(first - _flat(other.weights))))
  return out


def _updates(rng, rounds):
  """Per round, CLIENTS updates of norms around the clip: some clipped, some not."""
  return [[[(rng.normal(0, s, (3, 2))).astype(np.float32), rng.normal(0, s, 4).astype(
      np.float32)] for s in (0.05, 0.2, 0.6)] for _ in range(rounds)]


def _run(aggregator, value_type, rounds_of_updates, aggregator_clip=None):
  aggregation = aggregator.create(value_type)
  state = aggregation.initialize()
  results, clips = [], []
  for updates in rounds_of_updates:
    output = aggregation.next(state, updates)
    state = output.state
    results.append(_flat(output.result))
    # TFF's fixed clipping measures no clip: it stays the initial one.
    measured = output.measurements.get("dp_query_metrics", output.measurements)
    clips.append(float(measured.get("clip", aggregator_clip)))
  return np.array(results), np.array(clips)


def parity_check():
  """Noise off: the seeded aggregator releases exactly what TFF's does, round by round."""
  value_type = tff.to_type([tff.TensorType(np.float32, [3, 2]), tff.TensorType(np.float32, [4])])
  rounds = _updates(np.random.default_rng(2), 4)
  key = np.array([1, 0], np.int64)
  clip = 0.3
  tff_dp = tff.aggregators.DifferentiallyPrivateFactory
  pairs = {
      "fixed": (tff_dp.gaussian_fixed(0.0, CLIENTS, clip),
                iterative_process.SeededDPMeanFactory(dp_mean.Mechanism(CLIENTS, clip, 0.0), key)),
      # dp_aggregator picks adaptive clipping for small noise, 0 included.
      "adaptive": (tff_dp.gaussian_adaptive(0.0, CLIENTS, initial_l2_norm_clip=clip),
                   iterative_process.dp_aggregator(0.0, CLIENTS, clip, key)[0])}
  out = {}
  for clipping, (theirs, ours) in pairs.items():
    expected, expected_clips = _run(theirs, value_type, rounds, clip)
    got, got_clips = _run(ours, value_type, rounds)
    out[clipping] = {"max_error": float(np.max(np.abs(got - expected))),
                     "clip_max_error": float(np.max(np.abs(got_clips - expected_clips))),
                     "clip_moved": float(np.ptp(expected_clips))}
  return out


def noise_check():
  """Noise on, through TFF: zero updates, so the release is the noise itself."""
  value_type = tff.to_type([tff.TensorType(np.float32, [500])])
  zeros = [[[np.zeros(500, np.float32)] for _ in range(CLIENTS)] for _ in range(8)]
  mechanism = dp_mean.Mechanism(CLIENTS, 0.5, 1.5)
  def seeded(key):
    return iterative_process.SeededDPMeanFactory(mechanism, np.array([key, 0]))
  runs = {key: _run(seeded(key), value_type, zeros)[0] for key in (7, 8)}
  again = _run(seeded(7), value_type, zeros)[0]
  return {"std": float(runs[7].std()), "expected_std": 1.5 * 0.5 / CLIENTS,
          "rounds_differ": bool(np.all(np.abs(runs[7][0] - runs[7][1]) > 0)),
          "same_key_identical": bool(np.array_equal(runs[7], again)),
          "other_key_differs": bool(not np.allclose(runs[7], runs[8]))}


if __name__ == "__main__":
  iterative_process.use_test_context()
  checks = {"noise": noise_check(), "parity": parity_check(), "rerun": rerun_check()}
  print(json.dumps(checks), flush=True)
  kill_own_workers()  # as federated.simulate does; the test fails on any leftover
