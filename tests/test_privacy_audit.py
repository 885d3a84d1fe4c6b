"""The empirical privacy audit (clinical_dp/privacy_audit.py, benchmarks/privacy_audit.py):
its estimators, then the audit of each DP mechanism of the pipeline runtime at a small
setting, as the implementation's positive control: the lower bound stays within the
stated epsilon, reaches half of it, and exceeds it when the noise is halved on purpose.
The federated mechanisms' audit is in tests/federated/test_privacy_audit.py."""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from benchmarks import privacy_audit as audit
from clinical_dp import privacy_audit
from trainers.dp_training import PrivacyBudget
from trainers.gan import GanConfig

DELTA = 1e-5


# --- the estimators -------------------------------------------------------------------

def test_gdp_curve_and_its_inverse():
  for mu in (0.1, 0.5, 1.0, 3.0):
    epsilon = privacy_audit.gdp_epsilon(mu, DELTA)
    assert privacy_audit.gdp_delta(epsilon, mu) == pytest.approx(DELTA, rel=1e-6)
    assert privacy_audit.gdp_mu(epsilon, DELTA) == pytest.approx(mu, rel=1e-6)
  # The Gaussian mechanism: sensitivity 1, noise 1 is 1-GDP; at delta 1e-5 epsilon 4.38.
  assert privacy_audit.gdp_epsilon(1.0, DELTA) == pytest.approx(4.377, abs=1e-3)
  assert privacy_audit.gdp_epsilon(0.0, DELTA) == 0.0


def test_gdp_fit_recovers_mu_of_gaussian_scores():
  rng = np.random.default_rng(0)
  for mu in (0.3, 1.0, 2.0):
    # Any location and scale: only the standardized difference matters.
    result = privacy_audit.gdp_audit(5 + 3 * rng.normal(mu, 1, 20000),
                                     5 + 3 * rng.normal(0, 1, 20000), DELTA)
    details = dict(result.details)
    assert details["mu"] == pytest.approx(mu, abs=0.05)
    assert details["mu_lower"] < mu < details["mu_upper"]
    assert result.lower < privacy_audit.gdp_epsilon(mu, DELTA) < result.upper
    assert result.method == privacy_audit.GDP and result.runs == 40000


def test_gdp_interval_covers_mu_at_its_confidence_also_for_skewed_scores():
  rng = np.random.default_rng(1)
  trials, mu = 400, 0.5
  gaussian = skewed = 0
  for _ in range(trials):
    d = dict(privacy_audit.gdp_audit(rng.normal(mu, 1, 500), rng.normal(0, 1, 500),
                                     DELTA).details)
    gaussian += d["mu_lower"] < mu < d["mu_upper"]
    # Exponential scores (skewness 2): the standardized difference is still mu.
    d = dict(privacy_audit.gdp_audit(mu + rng.exponential(1, 500), rng.exponential(1, 500),
                                     DELTA).details)
    skewed += d["mu_lower"] < mu < d["mu_upper"]
  # 95% intervals; 400 trials leave a standard error of 0.011 on the coverage.
  assert 0.92 <= gaussian / trials <= 0.98
  assert 0.92 <= skewed / trials <= 0.98


def _randomized_response(epsilon, n, rng):
  """Scores of pure epsilon-DP randomized response: the released bit, true with
  probability e^eps / (1 + e^eps)."""
  keep = math.exp(epsilon) / (1 + math.exp(epsilon))
  return (rng.random(n) < keep).astype(float), (rng.random(n) >= keep).astype(float)


def test_distribution_free_bound_never_exceeds_the_epsilon_of_randomized_response():
  rng = np.random.default_rng(2)
  epsilon, trials = 1.0, 300
  above = sum(privacy_audit.threshold_audit(*_randomized_response(epsilon, 1000, rng), DELTA)
              .lower > epsilon for _ in range(trials))
  # At most 5% by construction; randomized response is the tightest case there is.
  assert above <= stats.binom.ppf(0.999, trials, 0.05), above


def test_distribution_free_bound_reaches_the_epsilon_of_randomized_response():
  rng = np.random.default_rng(3)
  held_out = privacy_audit.threshold_audit(*_randomized_response(1.0, 100000, rng), DELTA)
  assert 0.9 <= held_out.lower <= 1.0, held_out
  grid = privacy_audit.threshold_audit(*_randomized_response(1.0, 100000, rng), DELTA,
                                       thresholds=[0.5])
  assert 0.9 <= grid.lower <= 1.0, grid
  assert privacy_audit.threshold_audit(*_randomized_response(0.0, 100000, rng),
                                       DELTA).lower <= 0.05


def test_gdp_fit_is_no_guarantee_for_scores_far_from_gaussian():
  # Why both estimators are reported: on 0 / 1 scores the Gaussian fit reads
  # randomized response with epsilon 1 as mu about 1, epsilon about 4.5.
  scores = _randomized_response(1.0, 20000, np.random.default_rng(4))
  assert privacy_audit.gdp_audit(*scores, DELTA).lower > 4.0
  assert privacy_audit.threshold_audit(*scores, DELTA).lower <= 1.0


def test_subsampled_gaussian_llr_is_the_log_density_ratio():
  y, sigma = np.array([-2.0, 0.0, 0.7, 3.0]), 1.7
  for q in (0.3, 1.0):
    mixture = (1 - q) * stats.norm.pdf(y, 0, sigma) + q * stats.norm.pdf(y, 1, sigma)
    expected = np.log(mixture / stats.norm.pdf(y, 0, sigma))
    np.testing.assert_allclose(privacy_audit.subsampled_gaussian_llr(y, sigma, q), expected,
                               rtol=1e-10)


def test_audit_records_round_trip_through_json():
  rng = np.random.default_rng(5)
  scores = (rng.normal(1, 1, 200), rng.normal(0, 1, 200))
  halved = (rng.normal(2, 1, 200), rng.normal(0, 1, 200))
  record = privacy_audit.audit_mechanism("m", "s", 5.0, DELTA, scores, halved)
  again = privacy_audit.MechanismAudit.from_dict(record.to_dict())
  assert again.to_dict() == record.to_dict()
  assert "| m | s | 5.000 at delta 1e-05 |" in privacy_audit.markdown_table([record])


# --- the mechanisms, through the trainers' code -----------------------------------------

def _check(result: privacy_audit.MechanismAudit):
  summary = result.to_dict()
  assert result.sound, summary
  assert result.has_power, summary
  assert result.catches_halved_noise, summary


def test_classifier_dp_sgd_step_passes_its_audit():
  # The classifier's optimizer, every canary in every step (q = 1): the fit is exact there.
  mechanism = audit.step_mechanism("classifier step", audit.CLASSIFIER, num_examples=600,
                                   batch_size=600, steps=2, target_epsilon=4.0, delta=DELTA)
  _check(audit.audit_step(mechanism, audit.Runs(), seed=0, log=lambda line: None))


def test_tf_privacy_dp_adam_step_passes_its_audit():
  # TF Privacy's DP Adam (the GAN's tf_privacy and batch-1 Poisson path), as above.
  mechanism = audit.step_mechanism("TF Privacy step", audit.TF_PRIVACY, num_examples=600,
                                   batch_size=600, steps=2, target_epsilon=4.0, delta=DELTA)
  _check(audit.audit_step(mechanism, audit.Runs(), seed=0, log=lambda line: None))


def test_gan_dp_sgd_step_passes_its_audit():
  # The one-pass clipping and the query's noise, Poisson sampling at q = 0.1 over 100
  # steps: the log-likelihood ratio summed over them is close to Gaussian.
  mechanism = audit.step_mechanism("GAN step", audit.FAST, num_examples=2000, batch_size=200,
                                   steps=100, target_epsilon=2.0, delta=DELTA)
  _check(audit.audit_step(mechanism, audit.Runs(), seed=0, log=lambda line: None))


def test_gan_dp_statistics_pass_their_audit():
  demo = audit.demo_statistics_mechanism(5235, GanConfig(), PrivacyBudget(1.0, DELTA))
  # The demo's release with less noise (epsilon about 9), so that a hundred releases per
  # world measure it (each release takes tens of milliseconds).
  mechanism = dataclasses.replace(demo, noise=(0.8, 0.8), count_noise=4.0)
  result = privacy_audit.audit_mechanism(
      "statistics", mechanism.setting, mechanism.stated_epsilon, DELTA,
      audit.audit_statistics(mechanism, 100, seed=0),
      audit.audit_statistics(mechanism, 50, seed=1, noise_scale=0.5))
  _check(result)
