"""The empirical privacy audit of the federated DP mechanisms at small settings
(benchmarks/privacy_audit_federated.py runs them at the demo's): dp_fedavg's server
aggregate and Dopamine's sum of the sites' noisy clipped sums. The lower bound stays
within the stated epsilon, reaches half of it, and exceeds it when the noise is halved
on purpose. Plain TensorFlow (federated/dp_mean.py, federated/model_steps.py): no TFF
computation runs, so no worker is started."""

import math

from benchmarks import privacy_audit_federated as audit
from clinical_dp import privacy_audit
from federated.accounting import epsilon_of, solve_noise

DELTA = 1e-5


def _check(result: privacy_audit.MechanismAudit):
  summary = result.to_dict()
  assert result.sound, summary
  assert result.has_power, summary
  assert result.catches_halved_noise, summary


def test_dp_fedavg_aggregate_passes_its_audit_for_a_site_and_for_a_patient():
  # A Gaussian mechanism per round: the summed release is a matched filter, the fit exact.
  rounds, clip = 10, 0.2
  z = solve_noise(lambda s: epsilon_of({(1.0, s / 2): rounds}, DELTA), 4.0)
  mechanism = audit.FedAvgMechanism(sites_per_round=5, rounds=rounds, update_clip=clip,
                                    noise_multiplier=z, delta=DELTA)
  assert mechanism.patient_epsilon <= 4.0 < mechanism.patient_epsilon + 0.01
  site, patient = audit.audit_fedavg(mechanism, 1000, seed=0)
  halved_site, halved_patient = audit.audit_fedavg(mechanism, 1000, seed=1, noise_scale=0.5)
  _check(privacy_audit.audit_mechanism("dp_fedavg site", mechanism.setting,
                                       mechanism.site_epsilon, DELTA, site, halved_site))
  _check(privacy_audit.audit_mechanism("dp_fedavg patient", mechanism.setting,
                                       mechanism.patient_epsilon, DELTA, patient,
                                       halved_patient))


def test_dopamine_step_passes_its_audit():
  # Poisson sampling at q = 0.25 over 40 rounds: the summed log-likelihood ratio is
  # close to Gaussian; 4 sites, each adding sigma C / 2 of the noise.
  rounds, q = 40, 0.25
  sigma = solve_noise(lambda s: epsilon_of({(q, s): rounds}, DELTA), 4.0)
  mechanism = audit.DopamineMechanism(sites=4, rounds=rounds, sampling_probability=q,
                                      clip=2.0, noise_multiplier=sigma, delta=DELTA)
  assert math.isclose(mechanism.stated_epsilon, 4.0, abs_tol=0.01)
  _check(privacy_audit.audit_mechanism(
      "dopamine", mechanism.setting, mechanism.stated_epsilon, DELTA,
      audit.audit_dopamine(mechanism, 1000, seed=0),
      audit.audit_dopamine(mechanism, 1000, seed=1, noise_scale=0.5)))
