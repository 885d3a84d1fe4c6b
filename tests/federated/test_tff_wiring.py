"""TFF wiring: secure sum equals the plain sum; a Dopamine round equals its TF definition;
rounds given only the rows they draw compute what they would on whole site tables;
cyclical's one call per cycle computes what one round per site does."""

import json
import os

from tests.federated.conftest import run_child

CHECKS = os.path.join(os.path.dirname(__file__), "tff_wiring_checks.py")


def test_secure_sum_and_dopamine_round_in_tff():
  completed = run_child([CHECKS])
  assert completed.returncode == 0, completed.output
  result = json.loads([l for l in completed.tail if l.startswith("{")][-1])
  # 32-bit quantization over [-100, 100] costs at most a few 1e-6 per client.
  assert result["secure_sum_max_error"] < 1e-4
  assert result["dopamine_moved"] > 1e-3  # the round did something to compare
  assert result["dopamine_max_error"] < 1e-4
  # Each algorithm given only its rounds' drawn rows ends where it does on whole tables,
  # bit for bit, while passing a fraction of the rows (Dopamine's pooled rate draws few).
  for algorithm, (difference, share) in result["drawn_rows"].items():
    assert difference == 0.0, (algorithm, difference)
    assert share < 0.75, (algorithm, share)
  # Cyclical's one call per cycle computes what one TFF round per site does, bit for
  # bit; visiting the same sites in another order ends elsewhere (the check can fail).
  difference, moved, reordered = result["cycle"]
  assert moved > 1e-3 and difference == 0.0, result["cycle"]
  assert reordered > 1e-4, result["cycle"]
