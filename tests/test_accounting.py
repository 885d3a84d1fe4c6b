"""Privacy accounting against an independent computation and direct dp-accounting calls."""

import json
import math

import dp_accounting
import numpy as np
import pytest
from scipy.special import gammaln, logsumexp

from trainers.accounting import (BudgetExceededError, PrivacyPlan, check_budget,
                                 compute_epsilon, noise_for_target_epsilon)
from tests.conftest import run_cli

PAPER = dict(num_examples=6000, batch_size=1, noise_multiplier=1.0, epochs=500, delta=1e-5)


def _independent_rdp_epsilon(q, sigma, steps, delta, improved_conversion):
  """Sampled-Gaussian RDP at integer orders by the binomial expansion (Mironov et al. 2019),
  written here from the formula, not from any library."""
  best = math.inf
  for alpha in range(2, 257):
    k = np.arange(alpha + 1)
    log_terms = (gammaln(alpha + 1) - gammaln(k + 1) - gammaln(alpha - k + 1)
                 + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma ** 2))
    rdp = steps * logsumexp(log_terms) / (alpha - 1)
    if improved_conversion:  # Canonne, Kamath, Steinke 2020 / Balle et al. 2020
      epsilon = rdp + math.log1p(-1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
    else:  # Mironov 2017
      epsilon = rdp + math.log(1 / delta) / (alpha - 1)
    best = min(best, epsilon)
  return best


def test_sprint_gan_paper_setting_matches_an_independent_computation():
  record = compute_epsilon(PrivacyPlan(**PAPER))
  assert record.steps == 3_000_000 and record.sampling_probability == pytest.approx(1 / 6000)
  independent = _independent_rdp_epsilon(1 / 6000, 1.0, 3_000_000, 1e-5, improved_conversion=True)
  assert record.epsilon == pytest.approx(independent, rel=0.02)
  # The classic conversion used by older TF Privacy reports gives docs/design.md's "about 1.9".
  classic = _independent_rdp_epsilon(1 / 6000, 1.0, 3_000_000, 1e-5, improved_conversion=False)
  assert 1.8 < classic < 2.0
  assert record.epsilon < classic


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_matches_direct_dp_accounting_calls(accountant):
  plan = PrivacyPlan(num_examples=5000, batch_size=64, noise_multiplier=1.1, epochs=10,
                     delta=1e-5, accountant=accountant)
  event = dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(64 / 5000, dp_accounting.GaussianDpEvent(1.1)),
      plan.steps)
  direct = (dp_accounting.rdp.RdpAccountant() if accountant == "rdp"
            else dp_accounting.pld.PLDAccountant())
  direct.compose(event)
  assert compute_epsilon(plan).epsilon == pytest.approx(direct.get_epsilon(1e-5), rel=0.01)


def test_released_label_count_composes_with_training_for_the_patient():
  """The GAN's noisy label count is one more Gaussian release; a patient with k rows moves
  the count by k, so its noise counts as sigma / k."""
  plan = PrivacyPlan(num_examples=5000, batch_size=64, noise_multiplier=1.1, epochs=10,
                     delta=1e-5, sampling="poisson", max_rows_per_patient=2,
                     label_count_noise_multiplier=20.0)
  patient_rate = 1 - (1 - 64 / 5000) ** 2
  training = dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(patient_rate, dp_accounting.GaussianDpEvent(1.1 / 2)),
      plan.steps)
  direct = dp_accounting.rdp.RdpAccountant()
  direct.compose(dp_accounting.ComposedDpEvent([training, dp_accounting.GaussianDpEvent(10.0)]))
  record = compute_epsilon(plan)
  assert record.epsilon == pytest.approx(direct.get_epsilon(1e-5), rel=0.01)
  without_count = compute_epsilon(PrivacyPlan(**{**plan.__dict__,
                                                 "label_count_noise_multiplier": 0.0}))
  assert record.epsilon > without_count.epsilon


def test_delta_must_be_below_one_over_n():
  with pytest.raises(BudgetExceededError, match="not below 1/N"):
    check_budget(PrivacyPlan(num_examples=1000, batch_size=10, noise_multiplier=1.0, epochs=1,
                             delta=1e-3), target_epsilon=10.0)


def test_known_value_rdp_and_pld_agree_roughly():
  """TF Privacy's MNIST tutorial setting (it reports 3.01 with the older RDP conversion);
  PLD is tighter than RDP but of the same size."""
  plan = PrivacyPlan(num_examples=60000, batch_size=256, noise_multiplier=1.1, epochs=60,
                     delta=1e-5)
  rdp_eps = compute_epsilon(plan).epsilon
  pld_eps = compute_epsilon(PrivacyPlan(**{**plan.__dict__, "accountant": "pld"})).epsilon
  assert 2.0 < pld_eps <= rdp_eps < 3.01


def test_more_noise_less_epsilon_more_epochs_more_epsilon():
  base = compute_epsilon(PrivacyPlan(**PAPER)).epsilon
  assert compute_epsilon(PrivacyPlan(**{**PAPER, "noise_multiplier": 1.5})).epsilon < base
  assert compute_epsilon(PrivacyPlan(**{**PAPER, "epochs": 1000})).epsilon > base


def test_microbatching_and_patients_with_several_rows_cost_privacy():
  plan = dict(num_examples=5000, batch_size=50, noise_multiplier=1.0, epochs=5, delta=1e-5)
  per_example = compute_epsilon(PrivacyPlan(**plan))
  microbatched = compute_epsilon(PrivacyPlan(**plan, examples_per_microbatch=10))
  per_patient = compute_epsilon(PrivacyPlan(**plan, max_rows_per_patient=2))
  assert microbatched.effective_noise_multiplier == 0.5
  assert microbatched.epsilon > 2 * per_example.epsilon
  assert per_patient.unit == "patient" and per_patient.epsilon > per_example.epsilon


def test_fixed_size_sampling_uses_replace_one_rdp():
  plan = PrivacyPlan(**{**PAPER, "epochs": 5, "batch_size": 60, "sampling": "fixed"})
  record = compute_epsilon(plan)
  assert record.sampling == "fixed" and math.isfinite(record.epsilon)
  with pytest.raises(ValueError, match="fixed-size sampling is accounted with rdp only"):
    PrivacyPlan(**{**PAPER, "sampling": "fixed", "accountant": "pld"})
  with pytest.raises(ValueError, match="one row per patient only"):
    PrivacyPlan(**{**PAPER, "sampling": "fixed", "max_rows_per_patient": 3})


def test_budget_refusal_names_the_settings_to_change():
  with pytest.raises(BudgetExceededError) as error:
    check_budget(PrivacyPlan(**PAPER), target_epsilon=1.0)
  message = str(error.value)
  assert "over the budget of 1" in message
  assert "raise noise_multiplier to" in message and "lower epochs to" in message
  assert check_budget(PrivacyPlan(**PAPER), target_epsilon=2.0).epsilon < 2.0


def test_solved_noise_meets_the_target_tightly():
  plan = PrivacyPlan(num_examples=6000, batch_size=64, noise_multiplier=0.0, epochs=50,
                     delta=1e-5)
  sigma = noise_for_target_epsilon(plan, 3.0)
  assert compute_epsilon(PrivacyPlan(**{**plan.__dict__, "noise_multiplier": sigma})).epsilon <= 3.0
  assert compute_epsilon(PrivacyPlan(**{**plan.__dict__,
                                        "noise_multiplier": sigma - 0.01})).epsilon > 3.0


def test_privacy_command_prints_json():
  result = run_cli("privacy", "--num-examples", 6000, "--batch-size", 1, "--noise-multiplier", 1,
                   "--epochs", 500, "--delta", 1e-5)
  assert result.returncode == 0, result.stderr
  record = json.loads(result.stdout)
  assert record["accountant"] == "rdp" and record["steps"] == 3_000_000
  assert record["delta"] == 1e-5 and 1.5 < record["epsilon"] < 1.7


def test_privacy_command_refuses_a_plan_over_budget():
  result = run_cli("privacy", "--num-examples", 6000, "--batch-size", 1, "--noise-multiplier", 1,
                   "--epochs", 500, "--delta", 1e-5, "--target-epsilon", 1)
  assert result.returncode == 2
  assert "raise noise_multiplier" in result.stderr
