"""What every DP trainer here shares: the budget, the plan, batch sampling, progress.

The batches drawn are exactly what the accountant assumes: with one row per patient,
B rows without replacement, independently at every step (`fixed` sampling,
replace-one adjacency, RDP); with several rows per patient, each row independently
with probability B/N (`poisson` sampling, which has a patient-level group bound).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Callable, Iterator, Optional

import numpy as np
import tensorflow as tf

from pipelines.console import say
from trainers import accounting

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
            beta_1: float = 0.9):
  """TF Privacy's DP Adam with one example per microbatch (per-example clipping), which is
  what the accountant assumes (examples_per_microbatch=1)."""
  return dp_optimizer_keras.DPKerasAdamOptimizer(
      l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier, num_microbatches=None,
      learning_rate=learning_rate, beta_1=beta_1)


def plan_for(num_examples: int, config, budget: PrivacyBudget, max_rows_per_patient: int = 1,
             epochs=None, label_count_noise_multiplier: float = 0.0) -> accounting.PrivacyPlan:
  """The accountant's view of a trainer config (batch_size, noise_multiplier, epochs)."""
  return accounting.PrivacyPlan(
      num_examples=num_examples, batch_size=config.batch_size,
      noise_multiplier=config.noise_multiplier or 0.0,
      epochs=config.epochs if epochs is None else epochs, delta=budget.delta,
      accountant="rdp", sampling="fixed" if max_rows_per_patient == 1 else "poisson",
      max_rows_per_patient=max_rows_per_patient,
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
  """The share of positive labels, released with the Gaussian mechanism (sensitivity one
  row; the accountant scales it to the patient). Clipped away from 0 and 1 so that both
  classes are generated."""
  noisy_count = float(np.sum(labels)) + rng.normal(0.0, noise_multiplier)
  return float(np.clip(noisy_count / len(labels), 0.01, 0.99))


def training_batches(plan: accounting.PrivacyPlan, rng: np.random.Generator
                     ) -> Iterator[np.ndarray]:
  """Row indices of each step's batch, sampled as the plan's accounting assumes."""
  for _ in range(plan.steps):
    if plan.sampling == "fixed":
      yield rng.choice(plan.num_examples, size=plan.batch_size, replace=False)
    else:
      batch = np.flatnonzero(rng.random(plan.num_examples) < plan.sampling_probability)
      if len(batch):  # an empty Poisson batch (about exp(-B)) updates nothing
        yield batch


class TrainingProgress:
  """About ten progress lines per run: epoch, losses, steps per second and, for a DP
  trainer, the epsilon spent so far (each accounting takes a fraction of a second).

  The lines go to `log`; None or `print` means the run's console (pipelines.console),
  which under `clinical-dp run` is the terminal while library output goes to the log.
  """

  def __init__(self, name: str, num_examples: int, batch_size: int, epochs: float,
               total_steps: int, plan: Optional[accounting.PrivacyPlan],
               log: Optional[Callable[[str], None]] = None):
    steps_per_epoch = max(1, math.ceil(num_examples / batch_size))
    self._every = steps_per_epoch * max(1, math.ceil(epochs / 10))
    self._name, self._epochs, self._total = name, epochs, total_steps
    self._examples_per_step = batch_size / num_examples
    # `print` is the trainers' default today (train_gan, train_classifier): it meant the
    # terminal, which is what the console is.
    self._log = say if log is None or log is print else log
    self._plan, self._start = plan, time.time()

  def after(self, step: int, **losses) -> None:
    if step % self._every and step != self._total:
      return
    epochs_done = step * self._examples_per_step
    line = (f"  {self._name} epoch {epochs_done:.0f}/{self._epochs}: "
            + " ".join(f"{k} {float(v):.3f}" for k, v in losses.items())
            + f", {step / (time.time() - self._start):.1f} steps/s")
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
