"""What every DP trainer here shares: the budget, the plan, batch sampling, progress.

The batches drawn are exactly what the accountant assumes: each row enters each step
independently with probability q = B/N (`poisson` sampling), under the relation "one
patient added or removed" (clinical_dp/sensitivity.py). A step's update is

    (sum over the drawn rows of clip(g_i, C) + N(0, (sigma C)^2 I)) / B

with B the expected batch, a public constant: never the realized batch size, whose
value depends on who was drawn. A step whose batch is empty still adds its noise
(padded with one row of weight 0, `padded_batch`), so that what is released at each
step does not depend on whether anyone was drawn.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from clinical_dp import sensitivity
from clinical_dp.console import say
from trainers import accounting, dp_clipping, dp_statistics

# TF Privacy's package __init__ imports TF Probability and Estimator, which are not
# needed here; this documented switch skips that import.
sys.skip_tf_privacy_import = True
from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras  # pylint: disable=g-import-not-at-top,wrong-import-position


@dataclasses.dataclass(frozen=True)
class PrivacyBudget:
  """The most one trained artifact may spend: (target_epsilon, delta) for the patient."""
  target_epsilon: float = 10.0
  delta: float = 1e-5




def dp_adam(l2_norm_clip: float, noise_multiplier: float, learning_rate: float,
            beta_1: float = 0.9, noise_rng: Optional[tf.random.Generator] = None,
            expected_batch_size: float = 1.0):
  """TF Privacy's DP Adam (DPKerasAdamOptimizer is its generic DP Adam with a Gaussian
  sum query) with one example per microbatch (per-example clipping), which is what the
  accountant assumes (examples_per_microbatch=1), its noisy sum divided by the expected
  batch; with noise_rng, its Gaussian noise is drawn from that generator
  (trainers/dp_clipping.py: GeneratorGaussianSumQuery)."""
  return dp_clipping.ExpectedBatchDPAdam(
      dp_sum_query=dp_clipping.gaussian_sum_query(l2_norm_clip, noise_multiplier, noise_rng),
      num_microbatches=None, learning_rate=learning_rate, beta_1=beta_1,
      expected_batch_size=expected_batch_size)


# A Trainer's custom_config key for an explicit seed (tests, benchmarks); without it the
# trainer draws a secret one (clinical_dp/secret_seed.py).
SEED_KEY = "seed"


def seed_global_generators(seed: int) -> None:
  """Python's, NumPy's and TF's global generators, which Keras initializers and TF
  Privacy's noise ops draw from. Keras's set_random_seed takes 32 bits (NumPy's legacy
  seed does); TF's global seed, behind the noise, then gets all of a secret seed."""
  tf.keras.utils.set_random_seed(seed % 2**32)
  tf.random.set_seed(seed)


def fit_batch_to_data(config, num_examples: int, log: Optional[Callable[[str], None]] = say):
  """The trainer config with its batch at most the number of training rows.

  A batch above the data (a small table) cannot be drawn: Poisson sampling would need a
  rate above 1 (and fixed-size sampling more rows than there are). The batch is
  fitted here, before the noise is solved, so that the plan, its accounting and the
  privacy record all follow the batch that actually runs. Any config with a
  `batch_size` field (GanConfig, ClassifierConfig) works; it comes back unchanged when
  its batch already fits.
  """
  if num_examples < 1:
    raise ValueError(f"no training rows (num_examples {num_examples})")
  batch = min(int(config.batch_size), int(num_examples))
  if batch == config.batch_size:
    return config
  if log is not None:
    log(f"  batch size {config.batch_size} is above the {num_examples} training rows; "
        f"training with batch {batch} (every step sees the whole training set)")
  return dataclasses.replace(config, batch_size=batch)


def fit_steps_to_cap(config, num_examples: int,
                     log: Optional[Callable[[str], None]] = say):
  """The trainer config with at most its `max_steps` DP steps: on a table so large that
  `epochs` passes would take more, the epochs shrink to max_steps x batch / rows (a
  fraction), so that training time stops growing with the table. Like the batch, the
  epochs are fitted before the noise is solved, so the plan, its accounting and the
  privacy record follow the steps that actually run (fewer steps at the same budget:
  less noise per step). A config without `max_steps`, or with None, is unchanged."""
  cap = getattr(config, "max_steps", None)
  if not cap or num_examples < 1:
    return config
  steps = math.ceil(config.epochs * num_examples / config.batch_size)
  if steps <= cap:
    return config
  epochs = cap * config.batch_size / num_examples
  while math.ceil(epochs * num_examples / config.batch_size) > cap:  # float rounding
    epochs = math.nextafter(epochs, 0.0)
  if log is not None:
    log(f"  {steps} steps ({config.epochs:g} epochs of batch {config.batch_size}) on "
        f"{num_examples} rows are above the cap of {cap}; training {epochs:.3g} epochs "
        f"({cap} steps)")
  return dataclasses.replace(config, epochs=epochs)


def fit_to_data(config, num_examples: int, log: Optional[Callable[[str], None]] = say):
  """fit_batch_to_data, then fit_steps_to_cap: the batch and the epochs that run."""
  return fit_steps_to_cap(fit_batch_to_data(config, num_examples, log), num_examples, log)


# The pre-flight criterion of DP training: after batch fitting, the Gaussian noise on the
# averaged clipped gradient has standard deviation clip x noise_multiplier / batch. At
# most one clip (one patient's whole clipped gradient) the signal of the batch can still
# be heard over the noise; above it, each step is mostly noise whatever the epochs.
MAX_NOISE_PER_EXAMPLE = 1.0


@dataclasses.dataclass(frozen=True)
class DpFeasibility:
  """Whether DP training of one trainer config can usefully run on num_examples rows."""
  feasible: bool
  num_examples: int
  batch_size: int  # after fit_to_data
  noise_multiplier: Optional[float]  # configured or solved for the budget; None: no noise fits
  noise_per_example: Optional[float]  # noise_multiplier / batch_size, in units of the clip
  max_noise_per_example: float
  epsilon: Optional[float]  # of the plan at that noise (None when none fits)
  target_epsilon: float
  delta: float
  steps: Optional[int]
  reason: str  # empty when feasible
  # Not part of the verdict, for the message: the standard deviation of a released noisy
  # label rate (the GAN's label_count_noise_multiplier / rows); None when none is released.
  label_rate_noise_sd: Optional[float] = None

  def to_dict(self) -> Dict:
    return dataclasses.asdict(self)


def dp_feasibility(config, budget: PrivacyBudget, num_examples: int,
                   max_rows_per_patient: int = 1,
                   max_noise_per_example: float = MAX_NOISE_PER_EXAMPLE) -> DpFeasibility:
  """Can DP training with this config reach the budget on num_examples training rows, with
  noise that leaves a signal (noise_multiplier / batch <= max_noise_per_example)?

  Pure accounting (no training): the batch is fitted to the data as the trainers fit it,
  the noise solved for the budget when the config leaves it open (as the trainers do),
  and a configured noise checked against the budget. A GAN config's released label count
  (label_count_noise_multiplier) is composed in, as the GAN trainer does.
  """
  target, delta = budget.target_epsilon, budget.delta
  count_noise = getattr(config, "label_count_noise_multiplier", 0.0)

  def result(feasible, batch, sigma, epsilon, steps, reason):
    return DpFeasibility(
        feasible=feasible, num_examples=int(num_examples), batch_size=int(batch),
        noise_multiplier=sigma,
        noise_per_example=None if sigma is None else sigma / batch,
        max_noise_per_example=max_noise_per_example, epsilon=epsilon, target_epsilon=target,
        delta=delta, steps=steps, reason=reason,
        label_rate_noise_sd=(count_noise / num_examples if count_noise and num_examples > 0
                             else None))

  if num_examples < 1:
    return result(False, 1, None, None, None, "no training rows")
  config = fit_to_data(config, num_examples, log=None)
  batch = config.batch_size
  if delta >= 1.0 / num_examples:
    return result(False, batch, None, None, None,
                  f"delta {delta:g} is not below 1/N = 1/{num_examples}")
  try:
    plan = plan_for(num_examples, config, budget, max_rows_per_patient,
                    label_count_noise_multiplier=count_noise)
  except accounting.BudgetExceededError as e:  # the released statistics alone
    return result(False, batch, None, None, None, str(e))
  if config.noise_multiplier is None:
    try:
      sigma = accounting.noise_for_target_epsilon(plan, target)
    except accounting.BudgetExceededError:
      return result(False, batch, None, None, None,
                    f"no noise multiplier reaches epsilon {target:g} on {num_examples} rows")
  else:
    sigma = float(config.noise_multiplier)
  plan = dataclasses.replace(plan, noise_multiplier=sigma)
  record = accounting.compute_epsilon(plan)
  if record.epsilon > target:  # a configured noise: the accountant says what would fit
    return result(False, batch, sigma, record.epsilon, record.steps,
                  accounting.over_budget_reason(plan, record, target))
  # A generator that starts from its DP statistics does not need its DP steps to learn.
  if sigma / batch > max_noise_per_example and not getattr(config, "statistics_share", 0.0):
    return result(False, batch, sigma, record.epsilon, record.steps,
                  f"noise {sigma:.3g} on batches of {batch} rows is {sigma / batch:.3g} clips per "
                  f"averaged gradient, above {max_noise_per_example:g}: DP training at epsilon "
                  f"{target:g} drowns the signal of {num_examples} rows")
  return result(True, batch, sigma, record.epsilon, record.steps, "")


def min_examples_for_dp(config, budget: PrivacyBudget, max_rows_per_patient: int = 1,
                        max_noise_per_example: float = MAX_NOISE_PER_EXAMPLE,
                        upper: Optional[int] = None) -> Optional[int]:
  """The fewest training rows N from which on dp_feasibility passes for every larger
  number of rows up to `upper` (default: the largest N with delta below 1/N), or None.

  The criterion is piecewise monotone in the rows, with one step: up to the configured
  batch B every step sees every row (batch = N, the noise is that of `epochs` full-batch
  releases, so noise / batch falls as 1/N); above B the batch stays B and sampling
  amplifies privacy, but the noise needed jumps up at N = B + 1 (e.g. GAN defaults at
  epsilon 1: 22.6 at N = 256, about 33 at N = 500) and then falls again. Each piece is
  searched by doubling and bisection, so a pass below B followed by a fail above it is
  not reported as the minimum.
  """
  limit = int(math.ceil(1.0 / budget.delta)) - 1
  upper = limit if upper is None else min(upper, limit)

  def ok(n: int) -> bool:
    return dp_feasibility(config, budget, n, max_rows_per_patient,
                          max_noise_per_example).feasible

  def first_pass(low: int, high: int) -> Optional[int]:
    """Smallest n in [low, high] with ok(n), where ok is monotone there."""
    if low > high:
      return None
    if ok(low):
      return low
    fail, step = low, 1
    while True:  # doubling steps from low, then bisection
      probe = min(high, fail + step)
      if ok(probe):
        break
      if probe >= high:
        return None
      fail, step = probe, 2 * step
    while probe - fail > 1:
      middle = (fail + probe) // 2
      if ok(middle):
        probe = middle
      else:
        fail = middle
    return probe

  batch = int(config.batch_size)
  if upper <= batch:
    return first_pass(1, upper)
  above = first_pass(batch + 1, upper)
  if above is None:
    return None
  if above > batch + 1:  # rows just above the batch fail: the answer lies above
    return above
  below = first_pass(1, batch)
  return below if below is not None and ok(batch) else batch + 1


def statistics_noise(config, budget: PrivacyBudget, max_rows_per_patient: int = 1
                     ) -> Tuple[float, ...]:
  """Noise multipliers (per row) of the summary statistics a GAN config releases before
  its DP steps (trainers/dp_statistics.py): with its released label count, its
  `statistics_share` of what one Gaussian mechanism at the budget could spend per patient
  (1 / sigma^2 adds up; a patient's k rows move each statistic k times as far); () for a
  config that releases none."""
  share = getattr(config, "statistics_share", 0.0)
  if not share:
    return ()
  if not 0 < share < 1:
    raise ValueError(f"statistics_share must be in [0, 1), got {share}")
  k = max_rows_per_patient
  total = accounting.gaussian_noise_for_epsilon(budget.target_epsilon, budget.delta)
  count_noise = getattr(config, "label_count_noise_multiplier", 0.0)
  left = share / total ** 2 - ((k / count_noise) ** 2 if count_noise else 0.0)
  if left <= 0:
    raise accounting.BudgetExceededError(
        f"the released label count (noise multiplier {count_noise:g}) alone spends more than "
        f"the statistics' share of epsilon {budget.target_epsilon:g}; raise the budget")
  return tuple(float(s) for s in dp_statistics.statistics_noise(
      dp_statistics.StatisticsConfig(marginal_weight=config.marginal_weight,
                                     scale_weight=getattr(config, "scale_weight", 0.0)),
      k / math.sqrt(left)))


def plan_for(num_examples: int, config, budget: PrivacyBudget, max_rows_per_patient: int = 1,
             epochs=None, label_count_noise_multiplier: float = 0.0) -> accounting.PrivacyPlan:
  """The accountant's view of a trainer config (batch_size, noise_multiplier, epochs), with
  the summary statistics it releases (statistics_noise)."""
  return accounting.PrivacyPlan(
      released_noise_multipliers=statistics_noise(config, budget, max_rows_per_patient),
      num_examples=num_examples, batch_size=config.batch_size,
      noise_multiplier=config.noise_multiplier or 0.0,
      epochs=config.epochs if epochs is None else epochs, delta=budget.delta,
      accountant="rdp", sampling="poisson", max_rows_per_patient=max_rows_per_patient,
      label_count_noise_multiplier=label_count_noise_multiplier)


def with_noise_for_budget(config, plan: accounting.PrivacyPlan, budget: PrivacyBudget):
  """The config unchanged if it names a noise multiplier; else with the smallest noise that
  keeps the plan within the budget (TF Privacy's noise is set before training)."""
  if config.noise_multiplier is not None:
    return config
  return dataclasses.replace(config, noise_multiplier=accounting.noise_for_target_epsilon(
      plan, budget.target_epsilon))


def dp_positive_rate(labels: np.ndarray, noise_multiplier: float, rng: np.random.Generator
                     ) -> float:
  """The share of positive labels, released with the Gaussian mechanism on the count of
  positive rows (sensitivity.count: 1 per row; the accountant scales it to the patient)
  over N (public). Clipped away from 0 and 1 so that both classes are generated."""
  noisy_count = float(np.sum(labels)) + rng.normal(0.0, noise_multiplier * sensitivity.count())
  return float(np.clip(noisy_count / len(labels), 0.01, 0.99))


def step_batch(plan: accounting.PrivacyPlan, rng: np.random.Generator) -> np.ndarray:
  """Row indices of one step's batch, sampled as the plan's accounting assumes; a Poisson
  batch may be empty (about exp(-B)): the step then still adds its noise."""
  if plan.sampling == "fixed":
    return rng.choice(plan.num_examples, size=plan.batch_size, replace=False)
  return np.flatnonzero(rng.random(plan.num_examples) < plan.sampling_probability)


def padded_batch(index: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(row indices, per-example loss weights): an empty batch becomes row 0 with weight
  0, whose gradient is zero, so the step is the noise alone; otherwise weights of 1."""
  if len(index):
    return index, np.ones(len(index), np.float32)
  return np.zeros(1, np.int64), np.zeros(1, np.float32)


def training_batches(plan: accounting.PrivacyPlan, rng: np.random.Generator
                     ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
  """padded_batch(step_batch) for each planned step, empty ones included."""
  for _ in range(plan.steps):
    yield padded_batch(step_batch(plan, rng))


class TrainingProgress:
  """About ten progress lines per run: epoch, losses, steps per second and, for a DP
  trainer, the epsilon spent so far (each accounting takes a fraction of a second).

  The lines go to `log`, by default the run's console (clinical_dp.console), which under
  `clinical-dp run` is the terminal while library output goes to the log.
  """

  def __init__(self, name: str, num_examples: int, batch_size: int, epochs: float,
               total_steps: int, plan: Optional[accounting.PrivacyPlan],
               log: Callable[[str], None] = say, first_step: int = 0):
    steps_per_epoch = max(1, math.ceil(num_examples / batch_size))
    self._every = steps_per_epoch * max(1, math.ceil(epochs / 10))
    self._name, self._epochs, self._total = name, epochs, total_steps
    self._examples_per_step = batch_size / num_examples
    self._log = log
    self._plan, self._start = plan, time.time()
    self._first_step = first_step  # steps taken before this process (a resumed run)

  def after(self, step: int, **losses) -> None:
    if step % self._every and step != self._total:
      return
    epochs_done = step * self._examples_per_step
    rate = (step - self._first_step) / max(time.time() - self._start, 1e-9)
    shown = ".0f" if float(self._epochs).is_integer() else ".2f"
    line = (f"  {self._name} epoch {epochs_done:{shown}}/{self._epochs:g}: "
            + " ".join(f"{k} {float(v):.3f}" for k, v in losses.items())
            + f", {rate:.1f} steps/s")
    if self._plan is not None:
      spent = accounting.compute_epsilon(dataclasses.replace(self._plan, epochs=epochs_done))
      line += f", epsilon so far {spent.epsilon:.3f}"
    self._log(line)


PRIVACY_RECORD_FILE = "privacy_record.json"
NO_SELECTION = ("none: the model after the last planned step is released; no epoch, model or "
                "hyperparameter selection on real data")


def write_privacy_record(directory: str, record: accounting.PrivacyRecord, **details) -> str:
  """The record beside the artifact it describes, with what the artifact is."""
  path = os.path.join(directory, PRIVACY_RECORD_FILE)
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump({**record.to_dict(), "selection": NO_SELECTION, **details}, f, indent=2)
  return path


def read_privacy_record(directory: str) -> dict:
  with tf.io.gfile.GFile(os.path.join(directory, PRIVACY_RECORD_FILE)) as f:
    return json.load(f)
