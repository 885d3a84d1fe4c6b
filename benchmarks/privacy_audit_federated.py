"""Empirical privacy audit of the federated DP mechanisms, in the federated runtime
(benchmarks/privacy_audit.py runs it as a child and merges its audits).

  .venv-federated/bin/python benchmarks/privacy_audit_federated.py [--out FILE]
      [--seed 0] [--scale 1] [--no-table]

Settings: federated/config.py's defaults on the demo's federation (the default table's
5235 training patients at 20 clinics, every clinic in every round); noise solved as
federated/algorithms.py solves it. Each mechanism runs as built and with its noise
halved (a planted bug; the stated epsilon stays the accountant's), and
clinical_dp/privacy_audit.py reads the scores. Many runs per call: canary r owns
weight r, and as many weights carry no canary (the runs without it).

- dp_fedavg's server aggregate, `federated.dp_mean.noisy_mean` (fixed clipping, as the
  demo's noise is above TFF's adaptive limit), one release per round. Two canaries:
  a site whose update of norm 2 S (clipped to S by `dp_mean.clip_update`) is there or
  not (a site added or removed; stated: the ledger's site-level epsilon), and a
  patient who flips a site's clipped update from +S to -S (the 2 S per patient of
  clinical_dp/sensitivity.py; stated: the patient-level epsilon). Score: the release
  summed over the rounds, the log-likelihood ratio of a Gaussian mechanism.
- Dopamine's step: the sum over the sites of `federated.model_steps.noisy_clipped_sum`, each
  site adding its share sigma C / sqrt(K) of the noise (what the secure sum adds up),
  one per round. Canary patient r is a row of the logistic model's input 100 e_r at
  zero weights, so its gradient is 50 e_r (plus the bias's), clipped to C; each site
  draws its patients with the Poisson rate q of the demo's expected batch. Score: the
  log-likelihood ratio of the Poisson-subsampled Gaussian summed over the rounds.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from clinical_dp import privacy_audit, sensitivity  # noqa: E402
from federated import dp_mean, model_steps as model_lib  # noqa: E402
from federated.accounting import epsilon_of, solve_noise  # noqa: E402
from federated.config import FederatedConfig  # noqa: E402

# The default table's training split (5235 patients) and its clinics
# (`clinical-dp simulate --kind sprint`: 20 sites).
DEMO_TRAINING_PATIENTS, DEMO_SITES = 5235, 20
# Canaries (runs per world) at --scale 1: at the demo's mu (0.67 for dp_fedavg's patient,
# 0.65 for Dopamine) the fit's lower bound then clears half the stated epsilon by more
# than three standard errors. Dopamine's runs cost more (a site's step per round each).
FEDAVG_CANARIES, DOPAMINE_CANARIES = 2000, 1000


def say(line: str) -> None:
  print(f"[privacy audit] {line}", flush=True)


@dataclasses.dataclass(frozen=True)
class FedAvgMechanism:
  """dp_fedavg's aggregate: each round the sum of the sites' updates clipped to S plus
  N(0, (z S)^2), over the planned sites per round."""
  sites_per_round: int
  rounds: int
  update_clip: float
  noise_multiplier: float  # z
  delta: float

  @property
  def site_epsilon(self) -> float:
    """A whole site added or removed moves the sum by S: multiplier z per round."""
    return epsilon_of({(1.0, self.noise_multiplier): self.rounds}, self.delta)

  @property
  def patient_epsilon(self) -> float:
    """One patient moves its site's clipped update by 2 S: multiplier z / 2."""
    per_patient = self.update_clip / sensitivity.site_update(self.update_clip, True)
    return epsilon_of({(1.0, self.noise_multiplier * per_patient): self.rounds}, self.delta)

  @property
  def setting(self) -> str:
    return (f"{self.sites_per_round} sites per round, {self.rounds} rounds, clip "
            f"{self.update_clip:g}, z {self.noise_multiplier:.2f}")


def demo_fedavg(config: FederatedConfig = FederatedConfig(), sites: int = DEMO_SITES
                ) -> FedAvgMechanism:
  """The demo's dp_fedavg: noise solved for the patient-level budget (as
  federated/algorithms.py does)."""
  per_patient = config.update_clip / sensitivity.site_update(config.update_clip, True)
  z = solve_noise(lambda s: epsilon_of({(1.0, s * per_patient): config.rounds}, config.delta),
                  config.target_epsilon)
  return FedAvgMechanism(config.clients_per_round or sites, config.rounds, config.update_clip,
                         z, config.delta)


def audit_fedavg(mechanism: FedAvgMechanism, canaries: int, seed: int = 0,
                 noise_scale: float = 1.0) -> Tuple[privacy_audit.Scores, privacy_audit.Scores]:
  """(site scores, patient scores), each (with the canary, without).

  Weights in four blocks of `canaries`: a canary site's own weight (its update 2 S on
  it), a weight no site touches, a patient's site sending +2 S, one sending -2 S.
  """
  clip = mechanism.update_clip
  r = canaries
  dimension = 4 * r
  senders = np.concatenate([np.arange(r), 2 * r + np.arange(r), 3 * r + np.arange(r)])
  signs = np.concatenate([np.ones(2 * r), -np.ones(r)]).astype(np.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, dimension])], autograph=False)
  def clipped_total(updates):
    # Each site clips its own update, as the clients of federated/iterative_process.py do.
    return tf.reduce_sum(tf.vectorized_map(
        lambda u: dp_mean.clip_update([u], tf.constant(clip))[0][0], updates), axis=0)

  clipped_sum = tf.zeros([dimension])
  for start in range(0, len(senders), 250):
    part = slice(start, start + 250)
    clipped_sum += clipped_total(
        2 * clip * signs[part, None] * tf.one_hot(senders[part], dimension))
  built = dp_mean.Mechanism(mechanism.sites_per_round, clip,
                            mechanism.noise_multiplier * noise_scale)
  key = tf.constant([seed, 0], tf.int64)
  total = np.zeros(dimension)
  for round_index in range(1, mechanism.rounds + 1):
    mean, _ = dp_mean.noisy_mean(built, [clipped_sum], tf.constant(0.0), tf.constant(clip),
                                 dp_mean.release_seed(key, round_index))
    total += mean[0].numpy() * mechanism.sites_per_round / clip  # the sum, in clips
  blocks = total.reshape(4, r)
  return (blocks[0], blocks[1]), (blocks[2], blocks[3])


@dataclasses.dataclass(frozen=True)
class DopamineMechanism:
  """Dopamine's step: K sites each sum their Poisson-sampled patients' clipped
  gradients and add N(0, (sigma C)^2 / K); the secure sum adds the sites' sums."""
  sites: int
  rounds: int
  sampling_probability: float
  clip: float
  noise_multiplier: float  # sigma, of the sum over the sites
  delta: float

  @property
  def stated_epsilon(self) -> float:
    return epsilon_of({(self.sampling_probability, self.noise_multiplier): self.rounds},
                      self.delta)

  @property
  def setting(self) -> str:
    return (f"{self.sites} sites, {self.rounds} rounds, q {self.sampling_probability:.4f}, "
            f"clip {self.clip:g}, sigma {self.noise_multiplier:.3f}")


def demo_dopamine(config: FederatedConfig = FederatedConfig(),
                  num_patients: int = DEMO_TRAINING_PATIENTS, sites: int = DEMO_SITES
                  ) -> DopamineMechanism:
  """The demo's Dopamine: q = expected batch / N, noise solved as
  federated/algorithms.py solves it (no dropout)."""
  expected = float(model_lib.expected_batch(config.batch_size, num_patients))
  q = expected / num_patients
  per_round = config.clients_per_round or sites
  active = per_round * (1.0 - config.dropout_rate)
  sigma = solve_noise(lambda s: epsilon_of({(q, s * math.sqrt(active / per_round)):
                                            config.rounds}, config.delta),
                      config.target_epsilon)
  return DopamineMechanism(per_round, config.rounds, q, config.clip, sigma, config.delta)


def audit_dopamine(mechanism: DopamineMechanism, canaries: int, seed: int = 0,
                   noise_scale: float = 1.0) -> privacy_audit.Scores:
  """(scores with the canary, without): weights 0..R-1 each hold a canary patient,
  weights R..2R-1 none; canaries are dealt to the sites in turn."""
  r, k = canaries, mechanism.sites
  features = 2 * r
  weights = [tf.zeros([features, 1]), tf.zeros([1])]
  share = mechanism.noise_multiplier * noise_scale * mechanism.clip / math.sqrt(k)

  sites = [np.arange(s, r, k, dtype=np.int32) for s in range(k)]

  # One trace for every site and round: tracing the per-example gradients (pfor) is
  # what costs, not running them.
  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([2], tf.int64)],
               autograph=False)
  def site_sum(rows, seed_pair):
    # A row 100 e_r at zero weights: logistic loss gradient 50 e_r (and 0.5 on the bias),
    # far above the clip, so the clipped gradient is C e_r to within 1e-4.
    x = 100.0 * tf.one_hot(rows, features)
    n = tf.shape(rows)[0]
    sums = model_lib.noisy_clipped_sum(
        weights, x, tf.zeros([n]), tf.range(n), n,
        tf.constant(mechanism.sampling_probability), mechanism.clip, tf.constant(share),
        seed_pair)
    return sums[0][:, 0]

  q, sigma = mechanism.sampling_probability, mechanism.noise_multiplier
  with_canary, without = np.zeros(r), np.zeros(r)
  for round_index in range(1, mechanism.rounds + 1):
    # The secure sum's result: every site's noisy clipped sum, added.
    released = sum(site_sum(tf.constant(rows), tf.constant([seed, round_index * 1000 + s],
                                                            tf.int64)).numpy()
                   for s, rows in enumerate(sites)) / mechanism.clip
    with_canary += privacy_audit.subsampled_gaussian_llr(released[:r], sigma, q)
    without += privacy_audit.subsampled_gaussian_llr(released[r:], sigma, q)
  return with_canary, without


def audit_all(scale: int = 1, seed: int = 0) -> List[privacy_audit.MechanismAudit]:
  audits = []
  canaries = FEDAVG_CANARIES * scale
  fedavg = demo_fedavg()
  started = time.time()
  say(f"dp_fedavg aggregate (federated.dp_mean.noisy_mean): {fedavg.setting}; {canaries} "
      f"canary sites and {canaries} canary patients, as many weights without; stated "
      f"epsilon {fedavg.site_epsilon:.3f} per site, {fedavg.patient_epsilon:.3f} per patient")
  site, patient = audit_fedavg(fedavg, canaries, seed)
  halved_site, halved_patient = audit_fedavg(fedavg, canaries, seed + 100, noise_scale=0.5)
  seconds = time.time() - started
  say(f"  as built and noise halved: {seconds:.0f} s")
  audits.append(privacy_audit.audit_mechanism(
      "dp_fedavg aggregate, one site added or removed", fedavg.setting, fedavg.site_epsilon,
      fedavg.delta, site, halved_site, seconds=seconds / 2))
  audits.append(privacy_audit.audit_mechanism(
      "dp_fedavg aggregate, one patient (site update flipped)", fedavg.setting,
      fedavg.patient_epsilon, fedavg.delta, patient, halved_patient, seconds=seconds / 2))
  dopamine = demo_dopamine()
  canaries = DOPAMINE_CANARIES * scale
  started = time.time()
  say(f"Dopamine step (federated.model_steps.noisy_clipped_sum over the sites): {dopamine.setting};"
      f" {canaries} canary patients and {canaries} weights without one, stated epsilon "
      f"{dopamine.stated_epsilon:.3f}")
  scores = audit_dopamine(dopamine, canaries, seed + 200)
  say(f"  as built: {time.time() - started:.0f} s")
  halved = audit_dopamine(dopamine, canaries, seed + 300, noise_scale=0.5)
  say(f"  noise halved: {time.time() - started:.0f} s")
  audits.append(privacy_audit.audit_mechanism(
      "Dopamine step (sites' noisy clipped sums)", dopamine.setting, dopamine.stated_epsilon,
      dopamine.delta, scores, halved, seconds=time.time() - started))
  return audits


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=None, help="write the audits as JSON here")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--scale", type=int, default=1, help="runs, as a multiple of the default")
  parser.add_argument("--no-table", action="store_true",
                      help="no table (the parent benchmark prints the merged one)")
  args = parser.parse_args(argv)
  audits = audit_all(args.scale, args.seed)
  if not args.no_table:
    print(privacy_audit.markdown_table(audits))
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump({"seed": args.seed, "scale": args.scale,
                 "audits": [a.to_dict() for a in audits]}, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
