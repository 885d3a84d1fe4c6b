"""What every DP trainer here shares: the budget, the plan, batch sampling, progress.

Batches are drawn without replacement, independently at every step, so the
accountant's `fixed` sampling (replace-one adjacency, RDP) is exactly what happens.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Iterator

import numpy as np

from trainers import accounting

# TF Privacy's package __init__ imports TF Probability and Estimator, which are not
# needed here; this documented switch skips that import.
sys.skip_tf_privacy_import = True
from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras  # pylint: disable=g-import-not-at-top,wrong-import-position


@dataclasses.dataclass(frozen=True)
class PrivacyBudget:
  target_epsilon: float = 10.0
  delta: float = 1e-5


def dp_adam(l2_norm_clip: float, noise_multiplier: float, learning_rate: float,
            beta_1: float = 0.9):
  """TF Privacy's DP Adam with one example per microbatch (per-example clipping), which is
  what the accountant assumes (examples_per_microbatch=1)."""
  return dp_optimizer_keras.DPKerasAdamOptimizer(
      l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier, num_microbatches=None,
      learning_rate=learning_rate, beta_1=beta_1)


def plan_for(num_examples: int, config, budget: PrivacyBudget, max_rows_per_patient: int = 1,
             epochs=None) -> accounting.PrivacyPlan:
  """The accountant's view of a trainer config (batch_size, noise_multiplier, epochs)."""
  return accounting.PrivacyPlan(
      num_examples=num_examples, batch_size=config.batch_size,
      noise_multiplier=config.noise_multiplier,
      epochs=config.epochs if epochs is None else epochs, delta=budget.delta,
      accountant="rdp", sampling="fixed", max_rows_per_patient=max_rows_per_patient)


def fixed_size_batches(num_examples: int, batch_size: int, steps: int,
                       rng: np.random.Generator) -> Iterator[np.ndarray]:
  for _ in range(steps):
    yield rng.choice(num_examples, size=batch_size, replace=False)


def report_interval(num_examples: int, config) -> int:
  """Steps between progress lines: accounting takes a fraction of a second, so about ten."""
  steps_per_epoch = max(1, math.ceil(num_examples / config.batch_size))
  return steps_per_epoch * max(1, math.ceil(config.epochs / 10))


def epsilon_after(step: int, num_examples: int, config, budget: PrivacyBudget,
                  max_rows_per_patient: int = 1) -> float:
  return accounting.compute_epsilon(plan_for(
      num_examples, config, budget, max_rows_per_patient,
      epochs=step * config.batch_size / num_examples)).epsilon
