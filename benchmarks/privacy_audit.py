"""Empirical privacy audit of every DP mechanism at the demo's settings: the positive
control of the implementation (issue 23, point 5).

  .venv/bin/python benchmarks/privacy_audit.py [--out FILE] [--seed 0] [--scale 1]
      [--no-federated]

A white-box auditor who sees every noisy release plants a canary in half of many runs
and scores each run; clinical_dp/privacy_audit.py turns the scores into an empirical
epsilon with a 95% interval (the GDP fit of Nasr et al. 2023) and a distribution-free
bound (Clopper-Pearson). Each mechanism runs twice: as built, and with its noise halved
on purpose while the stated epsilon stays the accountant's, a planted bug. Targets: the
lower bound never exceeds the stated epsilon, reaches at least half of it (the audit has
power), and exceeds it with the noise halved (the audit catches the bug).

Mechanisms, each through the code path the trainers use, at the demo's settings (the
default table's 5235 training patients, epsilon 1 at delta 1e-5 per trainer, noise
solved by trainers/accounting.py for Poisson sampling):
- DP-SGD step of the classifier (`classifier.optimizer_for`: `dp_clipping`'s one-pass
  clipped sum and the optimizer's Gaussian sum query, read at `noised_mean`, what
  `minimize_examples` hands to Adam) and of the GAN's discriminator
  (`dp_clipping.clipped_gradient_sum` plus `gaussian_sum_query`'s noise from a seeded
  generator); tests/test_privacy_audit.py also audits TF Privacy's DP Adam
  (`dp_training.dp_adam`, the GAN's tf_privacy and batch-1 Poisson path). The model is
  one Dense kernel (d x o, no bias) and canary i an example whose input is 2 C e_a and
  whose loss is output j, so its gradient 2 C e_a e_j^T is clipped to C on one weight
  of its own: every weight is an independent run. A table holds a multiple of 5235
  canaries (one for the classifier; the GAN, whose steps state epsilon 0.2, five of
  4 x 5235), each drawn into each step by `dp_training.step_batch` at the demo's rate
  q = B / N, for the demo's number of steps; as many weights carry no canary (the runs
  without it). Score: the log-likelihood ratio of the Poisson-subsampled Gaussian
  summed over the steps, from the STATED sigma and q. Stated epsilon: the
  accountant's for those steps alone.
- DP statistics of the GAN (`dp_statistics.release`: per-class marginal histograms,
  sensitivity sqrt(m); per-class second moment of clipped score vectors; and the label
  count, `dp_training.dp_positive_rate`) on a small table, a canary patient of the
  other class with every value at the top of its public bounds added in half of the
  releases. The auditor reads each noisy statistic as release() hands it to its
  post-processing and scores the matched filter on the canary's contribution.
- Federated (in the federated runtime, benchmarks/privacy_audit_federated.py, run as a
  child and merged): dp_fedavg's server aggregate (`federated.dp_mean.noisy_mean`), a
  canary site or a canary patient's flip of its site's update; Dopamine's step (the sum
  over sites of `federated.model_steps.noisy_clipped_sum`, each with its share of the noise).

Prints progress lines, a Markdown table, and writes every figure as JSON (--out); exits
1 when a target is missed. About 8 minutes on 2 shared cores, most of it the DP
statistics' releases (dp_statistics.release takes some 35 ms, 80% of it in the bisection
of each noisy histogram's norm-sub), whose mu at the demo (0.225) needs thousands of runs
per world.
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from clinical_dp import privacy_audit, sensitivity  # noqa: E402
from federated.child_session import run_in_own_session  # noqa: E402
from trainers import (accounting, classifier, dp_clipping, dp_statistics,  # noqa: E402
                      dp_training)

# The default table's training split (`clinical-dp simulate --kind sprint`, default size:
# 6511 complete patients, hash split 8:1:1); the trainers' defaults and budgets are
# pipelines.config's.
DEMO_TRAINING_PATIENTS = 5235
TF_PRIVACY, FAST, CLASSIFIER = "tf_privacy", "fast", "classifier"
FEDERATED_PYTHON = os.path.join(PROJECT_ROOT, ".venv-federated", "bin", "python")
Log = Callable[[str], None]


def say(line: str) -> None:
  print(f"[privacy audit] {line}", flush=True)


def _training_defaults():
  """pipelines.config's TrainingConfig: the trainers' defaults and budgets (imported when
  needed: it pulls in TFX, some ten seconds)."""
  from pipelines.config import TrainingConfig  # pylint: disable=g-import-not-at-top
  return TrainingConfig()


# --- DP-SGD steps ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepMechanism:
  """A DP-SGD step mechanism as its accountant sees it (`plan`: steps only, Poisson
  sampling) and the code path whose noise is audited."""
  name: str
  path: str  # TF_PRIVACY, FAST or CLASSIFIER
  plan: accounting.PrivacyPlan
  l2_norm_clip: float

  @property
  def stated_epsilon(self) -> float:
    return accounting.compute_epsilon(self.plan).epsilon

  @property
  def setting(self) -> str:
    p = self.plan
    return (f"N {p.num_examples}, B {p.batch_size}, q {p.sampling_probability:.4f}, "
            f"{p.steps} steps, sigma {p.noise_multiplier:.3f}")


def demo_step_mechanisms(num_examples: int = DEMO_TRAINING_PATIENTS
                         ) -> Tuple[StepMechanism, StepMechanism]:
  """The classifier's and the GAN discriminator's DP-SGD steps at the demo's settings:
  each trainer's plan (dp_training.plan_for, Poisson sampling) with the noise solved for
  its whole budget, as the trainers solve it; the GAN's budget also pays for its DP
  statistics and label count, so its steps alone state less than the budget."""
  training = _training_defaults()
  mechanisms = []
  for name, path, config, budget in (
      ("classifier DP-SGD step (one-pass clipping, TF Privacy DP Adam)", CLASSIFIER,
       training.classifier,
       training.classifier_budget),
      ("GAN discriminator DP-SGD step (one-pass clipping)", FAST, training.gan,
       training.gan_budget)):
    config = dp_training.fit_to_data(config, num_examples, log=None)
    count_noise = getattr(config, "label_count_noise_multiplier", 0.0)
    plan = dataclasses.replace(dp_training.plan_for(
        num_examples, config, budget, label_count_noise_multiplier=count_noise),
        sampling="poisson")
    sigma = accounting.noise_for_target_epsilon(plan, budget.target_epsilon)
    steps_only = dataclasses.replace(plan, noise_multiplier=sigma,
                                     released_noise_multipliers=(),
                                     label_count_noise_multiplier=0.0)
    mechanisms.append(StepMechanism(name, path, steps_only, config.l2_norm_clip))
  return tuple(mechanisms)


def step_mechanism(name: str, path: str, num_examples: int, batch_size: int, steps: int,
                   target_epsilon: float, delta: float, l2_norm_clip: float = 1.0
                   ) -> StepMechanism:
  """A small DP-SGD setting for tests: noise solved for target_epsilon."""
  plan = accounting.PrivacyPlan(num_examples=num_examples, batch_size=batch_size,
                                noise_multiplier=0.0, epochs=steps * batch_size / num_examples,
                                delta=delta, sampling="poisson")
  if plan.steps != steps:
    raise ValueError(f"{steps} steps of batch {batch_size} on {num_examples} rows is not a "
                     "whole number of epochs the plan can express")
  sigma = accounting.noise_for_target_epsilon(plan, target_epsilon)
  return StepMechanism(name, path, dataclasses.replace(plan, noise_multiplier=sigma),
                       l2_norm_clip)


def _kernel_layout(canaries: int) -> Tuple[int, int]:
  """(d, half): canary i sits on weight (i mod d, i div d) of a d x 2 half kernel; the
  weight (i mod d, half + i div d) is its run without it."""
  d = int(math.ceil(math.sqrt(canaries)))
  return d, int(math.ceil(canaries / d))


def _release_fn(path: str, model: tf.keras.Model, clip: float, noise_multiplier: float,
                expected_batch: float, seed: int):
  """One step's noisy clipped gradient sum of the kernel, through the trainers' code."""
  d, o = model.input_shape[-1], model.output_shape[-1]
  signature = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
               tf.TensorSpec([None], tf.float32)]
  # An input of twice the clip makes each canary's gradient 2 C: the clipping is tested too.
  scale = 2.0 * clip

  if path == TF_PRIVACY:
    # The classifier's optimizer, its noise TF Privacy's own (GaussianSumQuery's random
    # op, seeded by TF's global seed as the classifier's is).
    tf.random.set_seed(seed)
    optimizer = dp_training.dp_adam(clip, noise_multiplier, 1e-3,
                                    expected_batch_size=expected_batch)

    # Without autograph: it would convert the Keras and TF Privacy code called here,
    # some 20 s, and nothing here needs it.
    @tf.function(input_signature=signature, autograph=False)
    def release(rows, columns, weights):
      x = scale * tf.one_hot(rows, d)
      with tf.GradientTape() as tape:
        losses = weights * tf.reduce_sum(model(x, training=True) * tf.one_hot(columns, o), 1)
      # What minimize() hands to Adam: the noisy sum over the expected batch.
      [(gradient, _)] = optimizer._compute_gradients(  # pylint: disable=protected-access
          losses, model.trainable_variables, tape=tape)
      return gradient * expected_batch
    return release

  if path == CLASSIFIER:
    # The classifier's optimizer: the one-pass clipped sum and its Gaussian sum query's
    # noise (TF Privacy's random op, seeded by TF's global seed as the classifier's is).
    tf.random.set_seed(seed)
    optimizer = classifier.optimizer_for(classifier.ClassifierConfig(
        l2_norm_clip=clip, noise_multiplier=noise_multiplier), expected_batch)

    @tf.function(input_signature=signature, autograph=False)  # as above
    def release(rows, columns, weights):
      x = scale * tf.one_hot(rows, d)
      selector = tf.one_hot(columns, o)
      sums, _, _ = dp_clipping.clipped_gradient_sum(
          model, [[x]], lambda outputs: weights * tf.reduce_sum(outputs[0] * selector, 1),
          clip)
      # What minimize_examples hands to Adam: the noisy sum over the expected batch.
      return optimizer.noised_mean(sums, expected_batch)[0] * expected_batch
    return release

  # The GAN's fast path: its clipping, and its query's noise from a seeded generator.
  query = dp_clipping.gaussian_sum_query(clip, noise_multiplier,
                                         tf.random.Generator.from_seed(seed))
  state = query.initial_global_state()

  @tf.function(input_signature=signature, autograph=False)  # as above
  def release(rows, columns, weights):
    x = scale * tf.one_hot(rows, d)
    selector = tf.one_hot(columns, o)
    sums, _, _ = dp_clipping.clipped_gradient_sum(
        model, [[x]], lambda outputs: weights * tf.reduce_sum(outputs[0] * selector, 1), clip)
    noised, _, _ = query.get_noised_result(sums, state)
    return noised[0]
  return release


def audit_dp_sgd_step(mechanism: StepMechanism, scale: int = 1, replicas: int = 1,
                      seed: int = 0, noise_scale: float = 1.0) -> privacy_audit.Scores:
  """(scores with the canary, scores without): the summed log-likelihood ratio of each
  canary's weight and of each weight without one, over the plan's steps.

  A canary table is the plan's scaled by `scale` (scale x N rows, batch scale x B: the
  same rate q and number of steps), and every row is a canary; `replicas` tables run one
  after the other, their noise continuing one stream. (A step costs about B x N x
  scale^2, so more runs come cheaper as replicas beyond a scale of a few.) `noise_scale`
  0.5 plants the bug: the mechanism runs with half its noise, scored as if it had all.
  """
  plan = mechanism.plan
  canary_plan = dataclasses.replace(plan, num_examples=plan.num_examples * scale,
                                    batch_size=plan.batch_size * scale)
  assert canary_plan.steps == plan.steps
  canaries, q, sigma = canary_plan.num_examples, plan.sampling_probability, \
      plan.noise_multiplier
  d, half = _kernel_layout(canaries)
  rows, columns = np.arange(canaries) % d, np.arange(canaries) // d
  inputs = tf.keras.Input((d,))
  model = tf.keras.Model(inputs, tf.keras.layers.Dense(
      2 * half, use_bias=False, kernel_initializer="zeros")(inputs))
  release = _release_fn(mechanism.path, model, mechanism.l2_norm_clip, sigma * noise_scale,
                        float(canary_plan.batch_size), seed)
  rng = np.random.default_rng([seed, 1])
  with_canary, without = [], []
  for _ in range(replicas):
    scores_in, scores_out = np.zeros(canaries), np.zeros(canaries)
    for _ in range(plan.steps):
      batch = dp_training.step_batch(canary_plan, rng)
      # An empty Poisson batch still releases the noise: one row of loss weight 0.
      weights = np.ones(len(batch), np.float32) if len(batch) else np.zeros(1, np.float32)
      batch = batch if len(batch) else np.zeros(1, np.int64)
      kernel = release(tf.constant(rows[batch], tf.int32),
                       tf.constant(columns[batch], tf.int32),
                       tf.constant(weights)).numpy() / mechanism.l2_norm_clip
      scores_in += privacy_audit.subsampled_gaussian_llr(kernel[rows, columns], sigma, q)
      scores_out += privacy_audit.subsampled_gaussian_llr(kernel[rows, half + columns],
                                                          sigma, q)
    with_canary.append(scores_in)
    without.append(scores_out)
  return np.concatenate(with_canary), np.concatenate(without)


# --- DP statistics --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StatisticsMechanism:
  """The GAN's released statistics: noise multipliers of the marginals, the second
  moment and the binning scales' trees (relative to their sensitivities) and of the
  label count, and the release's settings."""
  noise: Tuple[float, ...]
  count_noise: float
  config: dp_statistics.StatisticsConfig
  delta: float
  num_examples: int

  @property
  def stated_epsilon(self) -> float:
    plan = accounting.PrivacyPlan(
        num_examples=self.num_examples, batch_size=1, noise_multiplier=0.0, epochs=0,
        delta=self.delta, released_noise_multipliers=tuple(self.noise),
        label_count_noise_multiplier=self.count_noise)
    return accounting.compute_epsilon(plan).epsilon

  @property
  def setting(self) -> str:
    correlation = "pooled" if self.config.pooled_correlation else "per class"
    scales = f", binning scales {self.noise[2]:.2f}" if len(self.noise) > 2 else ""
    return (f"noise multipliers: marginals {self.noise[0]:.2f}, second moment "
            f"{self.noise[1]:.2f} ({correlation}){scales}, label count {self.count_noise:g}")


def demo_statistics_mechanism(num_examples: int = DEMO_TRAINING_PATIENTS, config=None,
                              budget: Optional[dp_training.PrivacyBudget] = None
                              ) -> StatisticsMechanism:
  """The GAN's statistics at the demo's settings (a GanConfig and budget, by default the
  pipeline's), as gan_trainer resolves them."""
  if config is None or budget is None:
    training = _training_defaults()
    config, budget = config or training.gan, budget or training.gan_budget
  noise = dp_training.statistics_noise(config, budget)
  statistics = config.statistics(num_examples)
  return StatisticsMechanism(tuple(noise), config.label_count_noise_multiplier, statistics,
                             budget.delta, num_examples)


@contextlib.contextmanager
def _noisy_statistics_seen():
  """The white-box auditor's view of release(): each noisy statistic as it leaves its
  Gaussian mechanism, recorded where release() hands it to post-processing (norm-sub of
  each noisy histogram, the correlation made of each noisy second moment), and passed
  on unchanged. (The binning scales' trees are seen whole, before their own
  norm-sub, which also passes through `histogram`: the marginals are the last ones.)"""
  seen: Dict[str, List[np.ndarray]] = {"histograms": [], "moments": [], "trees": []}
  norm_sub = dp_statistics._norm_sub  # pylint: disable=protected-access
  nearest = dp_statistics._correlation_from_noisy  # pylint: disable=protected-access
  scales = dp_statistics.scales_from_noisy_trees

  def histogram(noisy, *args, **kwargs):
    seen["histograms"].append(np.array(noisy, np.float64))
    return norm_sub(noisy, *args, **kwargs)

  def moment(noisy, *args, **kwargs):
    seen["moments"].append(np.array(noisy, np.float64))
    return nearest(noisy, *args, **kwargs)

  def trees(noisy, *args, **kwargs):
    seen["trees"].append(np.array(noisy, np.float64))
    return scales(noisy, *args, **kwargs)

  dp_statistics._norm_sub, dp_statistics._correlation_from_noisy = histogram, moment
  dp_statistics.scales_from_noisy_trees = trees
  try:
    yield seen
  finally:
    dp_statistics._norm_sub, dp_statistics._correlation_from_noisy = norm_sub, nearest
    dp_statistics.scales_from_noisy_trees = scales


# A small table of 12 numeric codes (3 series x 4 visits). The second moment's
# sensitivity sqrt((1 + c^2) / 2) is reached by a unit vector with every |x_i| = c
# (c = 0.35: 1 / c^2 = 8.2 codes); the canary's vector, about 1 / sqrt(12) = 0.29 on every
# code, gets 98% of it and leaves room for its scores to vary before the coordinate clip
# (9 codes: 1/3 each, clipped as soon as they vary; measured at the demo's noise, 90%
# of the sensitivity on average with 9 codes, 97% with 12). Epsilon depends on the
# noise multipliers only, each relative to its statistic's sensitivity, whatever the
# table's columns.
AUDIT_SERIES, AUDIT_VISITS, AUDIT_BACKGROUND_ROWS = 3, 4, 40


def audit_statistics(mechanism: StatisticsMechanism, runs: int, seed: int = 0,
                     noise_scale: float = 1.0, workers: int = 1) -> privacy_audit.Scores:
  """(scores with the canary, without) of `runs` releases each.

  The table: AUDIT_BACKGROUND_ROWS patients of class 0 with values drawn on the public
  bounds; the canary, of class 1, has every value at the top of its bounds. It is then
  the only patient of its class, so with per-class statistics its histograms and
  second moment hold nothing else, and its clipped score vector points along the
  diagonal whatever the noise (each value lies at 0.98 of the top bin's mass). Score:
  per statistic, the projection of the noisy release on the canary's contribution over
  the noise's standard deviation there (the matched filter), combined with weights
  1 / sigma (the shift each would show), all from the STATED noise. Run r draws from
  the seed (seed, r) alone, so `workers` (processes) change nothing but the time.
  """
  chunks = [range(start, min(start + 50, runs)) for start in range(0, runs, 50)]
  jobs = [(mechanism, chunk, seed, noise_scale) for chunk in chunks]
  if workers > 1:
    # Fork: the children run NumPy only, never the parent's TensorFlow.
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      parts = list(pool.map(_statistics_scores, jobs))
  else:
    parts = [_statistics_scores(job) for job in jobs]
  both = np.concatenate(parts, axis=1)
  return both[0], both[1]


def _statistics_scores(job) -> np.ndarray:
  """[2, runs]: the scores of audit_statistics's runs `runs`, with the canary and without."""
  mechanism, runs, seed, noise_scale = job
  config = mechanism.config
  numeric = AUDIT_SERIES * AUDIT_VISITS
  codes = dp_statistics.CodeLayout(numeric=numeric, categories=(), bins=config.bins,
                                   num_series=AUDIT_SERIES, num_visits=AUDIT_VISITS)
  m = codes.num_codes
  background = np.random.default_rng([seed, 2]).random((AUDIT_BACKGROUND_ROWS, numeric))
  canary = np.ones((1, numeric))
  canary_bins = codes.encode(canary)[0]
  sigma_m, sigma_c = mechanism.noise[:2]
  sigma_s = mechanism.noise[2] if len(mechanism.noise) > 2 else None
  sigma_n = mechanism.count_noise
  # The canary's tree nodes: its values at the top put one count on the last node of
  # every level of every scale (a unit vector over them is the matched filter).
  scale_nodes = None
  if sigma_s is not None:
    trees = dp_statistics.scale_tree_counts(canary, codes.scale_columns,
                                            config.scale_branching, config.scale_levels)
    scale_nodes = trees > 0
    tree_sd = sigma_s * sensitivity.histograms(int(scale_nodes.sum()))
  c = min(config.coordinate_clip, 1.0)
  # The canary's x x^T as the template (its scores are all large and alike: x is about
  # the diagonal direction), on the released upper triangle, unit norm.
  x = np.minimum(np.full(m, 1.0 / math.sqrt(m)), c)
  upper = np.triu_indices(m)
  template = np.outer(x, x)[upper]
  template /= np.linalg.norm(template)
  marginal_sd = sigma_m * sensitivity.histograms(m)  # of each noisy count
  moment_sd = sigma_c * dp_statistics.correlation_sensitivity(c)  # of each noisy entry
  weights = [1 / sigma_m, 1 / sigma_c, 1 / sigma_n] + ([1 / sigma_s] if sigma_s else [])
  weights = np.array(weights)
  noise = tuple(sigma * noise_scale for sigma in mechanism.noise)
  scores = np.zeros((2, len(runs)))
  for i, run in enumerate(runs):
    for world, with_canary in enumerate((True, False)):
      flat = np.concatenate([background, canary]) if with_canary else background
      labels = (np.arange(len(flat)) >= len(background)).astype(np.int64)
      rng = np.random.default_rng([seed, 3, run, world])
      # As gan_trainer: the label rate, then the statistics, from one generator.
      rate = dp_training.dp_positive_rate(labels, sigma_n * noise_scale, rng)
      with _noisy_statistics_seen() as seen:
        dp_statistics.release(flat, labels, codes, config, noise, rng)
      histograms = seen["histograms"][-m:]  # class 1's, code by code
      moment = seen["moments"][-1]  # class 1's (or the pooled one)
      z_marginals = sum(h[b] for h, b in zip(histograms, canary_bins)) / math.sqrt(m) \
          / marginal_sd
      z_moment = float(moment[upper] @ template) / moment_sd
      # The count over the table's public N without the canary: the auditor does not
      # read the world from N.
      z_count = rate * len(background) / sigma_n
      z = [z_marginals, z_moment, z_count]
      if scale_nodes is not None:
        z.append(float(seen["trees"][-1][scale_nodes].sum())
                 / math.sqrt(scale_nodes.sum()) / tree_sd)
      scores[world, i] = np.array(z) @ weights / np.linalg.norm(weights)
  return scores


# --- the federated mechanisms, in their own runtime -------------------------------------

def run_federated(scale: int, seed: int, log: Log = say) -> List[privacy_audit.MechanismAudit]:
  """benchmarks/privacy_audit_federated.py in the federated runtime, in a session of its
  own (federated/child_session.py); its audits, read back from its JSON."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "federated_audit.json")
    completed = run_in_own_session(
        [FEDERATED_PYTHON, os.path.join(PROJECT_ROOT, "benchmarks",
                                        "privacy_audit_federated.py"),
         "--out", out, "--scale", str(scale), "--seed", str(seed), "--no-table"],
        on_line=lambda line: log(line.rstrip()[len("[privacy audit] "):]
                                 if line.startswith("[privacy audit] ") else line.rstrip()),
        timeout=1200, cwd=PROJECT_ROOT)
    if completed.returncode != 0 or not os.path.exists(out):
      raise RuntimeError(f"the federated audit failed (exit {completed.returncode}):\n"
                         + completed.output())
    with open(out, encoding="utf-8") as f:
      return [privacy_audit.MechanismAudit.from_dict(r) for r in json.load(f)["audits"]]


# --- the benchmark --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Runs:
  """How many runs an audit takes, as built and with the noise halved (whose signal is
  twice as large, so a quarter of the runs measure it as well)."""
  scale: int = 1  # DP-SGD steps: canary rows per table, in units of N
  replicas: int = 1  # DP-SGD steps: tables, one after the other
  halved_replicas: int = 1
  releases: int = 0  # DP statistics: releases per world
  halved_releases: int = 0

  def times(self, factor: int) -> "Runs":
    return Runs(self.scale, self.replicas * factor, self.halved_replicas * factor,
                self.releases * factor, self.halved_releases * factor)


# Enough for the lower bound to reach half the stated epsilon with a margin of about two
# standard errors or more at the demo: the classifier's mu is about 0.24 (5235 runs per
# world: standard error 0.02); the GAN's steps state epsilon 0.2 (mu 0.055: about 10^5
# runs, in tables of 4 x 5235 canaries, beyond which a step's cost grows fast); the
# statistics' mu is about 0.225 of the 0.241 their noise allows (the template of the
# canary's second moment is 93% efficient), so 4000 releases per world.
CLASSIFIER_RUNS = Runs(scale=1, replicas=1, halved_replicas=1)
GAN_RUNS = Runs(scale=4, replicas=5, halved_replicas=1)
STATISTICS_RUNS = Runs(releases=4000, halved_releases=600)


def audit_step(mechanism: StepMechanism, runs: Runs, seed: int, log: Log = say
               ) -> privacy_audit.MechanismAudit:
  started = time.time()
  canaries = mechanism.plan.num_examples * runs.scale
  log(f"{mechanism.name}: {mechanism.setting}; stated epsilon "
      f"{mechanism.stated_epsilon:.3f}; {runs.replicas} table(s) of {canaries} canaries (as "
      f"many weights without one), {runs.halved_replicas} with the noise halved")
  scores = audit_dp_sgd_step(mechanism, runs.scale, runs.replicas, seed)
  log(f"  as built: {time.time() - started:.0f} s")
  halved = audit_dp_sgd_step(mechanism, runs.scale, runs.halved_replicas, seed + 1,
                             noise_scale=0.5)
  log(f"  noise halved: {time.time() - started:.0f} s")
  return privacy_audit.audit_mechanism(mechanism.name, mechanism.setting,
                                       mechanism.stated_epsilon, mechanism.plan.delta,
                                       scores, halved, seconds=time.time() - started)


def audit_statistics_release(mechanism: StatisticsMechanism, runs: Runs, seed: int,
                             workers: int = 1, log: Log = say
                             ) -> privacy_audit.MechanismAudit:
  started = time.time()
  name = "GAN DP statistics (marginals, second moment, label count)"
  log(f"{name}: {mechanism.setting}; stated epsilon {mechanism.stated_epsilon:.3f}; "
      f"{runs.releases} releases with the canary and {runs.releases} without, "
      f"{runs.halved_releases} each with the noise halved")
  scores = audit_statistics(mechanism, runs.releases, seed, workers=workers)
  log(f"  as built: {time.time() - started:.0f} s")
  halved = audit_statistics(mechanism, runs.halved_releases, seed + 1, noise_scale=0.5,
                            workers=workers)
  log(f"  noise halved: {time.time() - started:.0f} s")
  return privacy_audit.audit_mechanism(name, mechanism.setting, mechanism.stated_epsilon,
                                       mechanism.delta, scores, halved,
                                       seconds=time.time() - started)


def _report(audits: Sequence[privacy_audit.MechanismAudit]) -> None:
  print()
  print(privacy_audit.markdown_table(audits))
  print()
  for a in audits:
    verdict = ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in (
        ("sound", a.sound), ("has power", a.has_power),
        ("catches halved noise", a.catches_halved_noise)))
    print(f"- {a.mechanism}: {verdict} ({a.seconds:.0f} s)")


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=None, help="write the audits as JSON here")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--scale", type=int, default=1,
                      help="runs per audit, as a multiple of the default (time grows with it)")
  parser.add_argument("--workers", type=int, default=2,
                      help="processes for the DP statistics' releases (NumPy only)")
  parser.add_argument("--no-federated", action="store_true",
                      help="skip the federated mechanisms (no federated runtime)")
  args = parser.parse_args(argv)
  started = time.time()
  classifier_step, gan_step = demo_step_mechanisms()
  audits = [audit_step(classifier_step, CLASSIFIER_RUNS.times(args.scale), args.seed),
            audit_step(gan_step, GAN_RUNS.times(args.scale), args.seed + 10),
            audit_statistics_release(demo_statistics_mechanism(),
                                     STATISTICS_RUNS.times(args.scale), args.seed + 20,
                                     args.workers)]
  if not args.no_federated:
    audits += run_federated(args.scale, args.seed + 30)
  _report(audits)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump({"seed": args.seed, "scale": args.scale, "seconds": time.time() - started,
                 "audits": [a.to_dict() for a in audits]}, f, indent=2)
    say(f"wrote {args.out}")
  say(f"done in {time.time() - started:.0f} s")
  return 0 if all(a.sound and a.has_power and a.catches_halved_noise for a in audits) else 1


if __name__ == "__main__":
  sys.exit(main())
