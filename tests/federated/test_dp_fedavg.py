"""dp_fedavg through TFF: reruns reproduce, the mechanism is TFF's, the noise its scale."""

import json
import os

import pytest

from tests.federated.conftest import run_child

CHECKS = os.path.join(os.path.dirname(__file__), "dp_fedavg_checks.py")


def test_dp_fedavg_reruns_reproduce_with_tffs_mechanism_and_seeded_noise():
  completed = run_child([CHECKS])
  assert completed.returncode == 0, completed.output
  result = json.loads([l for l in completed.tail if l.startswith("{")][-1])
  for clipping in ("fixed", "adaptive"):
    rerun = result["rerun"][clipping]
    # Same --seed: the same weights, curve and ledger; another seed: other figures.
    assert rerun["rerun_max_difference"] == 0.0, (clipping, rerun)
    assert rerun["rerun_same_auroc"] and rerun["same_privacy"], (clipping, rerun)
    # Noise off, the seeded aggregator releases what TFF's DifferentiallyPrivateFactory
    # does, and adaptive clipping moves its clip as TFF's does.
    parity = result["parity"][clipping]
    assert parity["max_error"] < 1e-6 and parity["clip_max_error"] < 1e-6, (clipping, parity)
  assert result["rerun"]["other_seed_max_difference"] > 1e-4
  assert result["parity"]["adaptive"]["clip_moved"] > 1e-3
  noise = result["noise"]
  # 8 rounds x 500 weights of N(0, (z x clip / K)^2): the std is within a few percent.
  assert noise["std"] == pytest.approx(noise["expected_std"], rel=0.05)
  assert noise["rounds_differ"] and noise["same_key_identical"] and noise["other_key_differs"]
