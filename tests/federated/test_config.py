"""FederatedConfig: pure Python, and its flags parse back to the same config."""

import subprocess
import sys

import pytest

from federated import simulate
from federated.config import FederatedConfig
from tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize("config", [FederatedConfig(), FederatedConfig.fast(),
                                    FederatedConfig(algorithm="dopamine", delta=1e-6,
                                                    dropout_rate=0.1, clients_per_round=5,
                                                    seed=7)])
def test_to_args_round_trips_through_the_cli(config):
  args = simulate._parser().parse_args(
      ["--data", "d.csv", "--spec", "s.yaml", "--output", "out", *config.to_args()])
  assert simulate._config(args) == config


def test_config_imports_no_tensorflow():
  # The pipeline runtime imports it to build the command line.
  probe = "import sys, federated.config; sys.exit('tensorflow' in sys.modules)"
  assert subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT,
                        timeout=60).returncode == 0


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="dropout_rate"):
    FederatedConfig(dropout_rate=1.0)
  with pytest.raises(ValueError, match="algorithm"):
    FederatedConfig(algorithm="fedprox")


def test_a_run_without_a_seed_draws_a_secret_one():
  assert FederatedConfig().seed is None and "--seed" not in FederatedConfig().to_args()
  assert FederatedConfig(seed=7).seeded().seed == 7
  drawn = {FederatedConfig().seeded().seed for _ in range(3)}
  assert len(drawn) == 3 and all(0 <= s < 2 ** 53 for s in drawn)
