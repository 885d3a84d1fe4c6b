"""federated/accounting.py against direct dp-accounting calls."""

import dp_accounting
import pytest
from dp_accounting import rdp

from federated.accounting import RDP_ORDERS, Ledger, epsilon_of, solve_noise

DELTA = 1e-5


def _direct(event) -> float:
  accountant = rdp.RdpAccountant(list(RDP_ORDERS))
  accountant.compose(event)
  return accountant.get_epsilon(DELTA)


def _sampled(q, z, n):
  return dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), n)


def test_sampled_gaussian_steps_match_dp_accounting():
  assert epsilon_of({(0.05, 1.1): 300}, DELTA) == pytest.approx(_direct(_sampled(0.05, 1.1, 300)),
                                                                rel=1e-9)


def test_mixed_steps_and_unsampled_rounds_match_a_composed_event():
  events = {(0.05, 1.1): 100, (0.05, 0.8): 20, (1.0, 15.0): 7}
  direct = _direct(dp_accounting.ComposedDpEvent([
      _sampled(0.05, 1.1, 100), _sampled(0.05, 0.8, 20),
      dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(15.0), 7)]))
  assert epsilon_of(events, DELTA) == pytest.approx(direct, rel=1e-9)


def test_ledger_reports_the_worst_site_and_only_what_was_recorded():
  ledger = Ledger(DELTA, "patient", ("a", "b"))
  ledger.record({"a": (0.1, 1.0), "b": (0.02, 1.0)}, 50)
  ledger.record({"a": (0.1, 1.0)}, 10)  # b dropped out of this round
  assert ledger.steps() == {"a": 60, "b": 50}
  assert ledger.epsilon() == pytest.approx(_direct(_sampled(0.1, 1.0, 60)), rel=1e-9)
  before = ledger.epsilon()
  after = ledger.epsilon_after({"a": (0.1, 1.0)}, 5)
  assert after > before and ledger.epsilon() == before  # a prospective look changes nothing
  assert Ledger(DELTA, "patient", ("a",)).epsilon() == 0.0


def test_solved_noise_is_the_smallest_within_budget():
  plan = lambda z: epsilon_of({(0.07, z): 150}, DELTA)
  z = solve_noise(plan, 3.0)
  assert plan(z) <= 3.0 < plan(z * 0.99)
  client_level = lambda z: epsilon_of({(1.0, z): 150}, DELTA)
  z = solve_noise(client_level, 3.0)
  assert client_level(z) <= 3.0 < client_level(z * 0.99)
  assert z > 10  # a site-level guarantee over 150 unsampled rounds needs heavy noise
