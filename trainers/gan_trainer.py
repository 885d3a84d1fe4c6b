"""Trains the DP AC-GAN on transformed patients.

The plan is checked against the privacy budget before the first step (with the noise
solved for the budget when the config leaves it open); batches and accounting follow
trainers/dp_training.py. Besides the generator, the run releases the label rate the
synthetic patients are drawn with, as a noisy count charged to the same budget.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List

import numpy as np
import tensorflow as tf

from clinical_dp.spec import DatasetSpec
from pipelines.console import say
from trainers import accounting, batch1_dp, dp_statistics, features, gan
from trainers.dp_training import (PrivacyBudget, TrainingProgress, dp_positive_rate,
                                  fit_batch_to_data, plan_for, statistics_noise,
                                  training_batches, with_noise_for_budget)
from trainers.features import PatientLayout


@dataclasses.dataclass
class TrainedGan:
  generator: tf.keras.Model
  discriminator: tf.keras.Model  # never released; kept for the membership audit
  record: accounting.PrivacyRecord
  config: gan.GanConfig  # as trained, with the noise multiplier that was used
  positive_rate: float  # DP estimate of the training label rate


def train_gan(inputs: List[np.ndarray], labels: np.ndarray, spec: DatasetSpec,
              config: gan.GanConfig, budget: PrivacyBudget, seed: int = 0,
              max_rows_per_patient: int = 1, log: Callable[[str], None] = say) -> TrainedGan:
  """DP training; refuses a plan over budget before any step."""
  num_examples = len(labels)
  count_noise = config.label_count_noise_multiplier

  def plan(trained_config):
    return plan_for(num_examples, trained_config, budget, max_rows_per_patient,
                    label_count_noise_multiplier=count_noise)

  # The batch first: the noise, the plan and the record follow the batch that runs.
  config = fit_batch_to_data(config, num_examples, log)
  layout = PatientLayout.from_spec(spec)
  statistics = config.statistics(num_examples)
  config = dataclasses.replace(config, statistics_bins=statistics.bins)  # as recorded
  codes = dp_statistics.CodeLayout.from_layout(layout, statistics.bins)
  if config.statistics_share and config.latent_dim < codes.num_codes:
    config = dataclasses.replace(config, latent_dim=codes.num_codes)
  # (marginals, correlation) noise multipliers; () for a config that releases no statistics
  noise = statistics_noise(config, budget, max_rows_per_patient)
  if noise and config.correlation_by_class is None:
    config = dataclasses.replace(config, correlation_by_class=len(noise) > 1 and (
        dp_statistics.class_correlations_affordable(statistics, noise[1], codes.num_codes,
                                                    num_examples)))
    statistics = config.statistics(num_examples)
  config = with_noise_for_budget(config, plan(config), budget)
  record = accounting.check_budget(plan(config), budget.target_epsilon)
  log(f"  DP AC-GAN: {num_examples} rows, {record.steps} steps of batch {config.batch_size}, "
      f"noise multiplier {config.noise_multiplier:.3f}, clip {config.l2_norm_clip:g}; "
      f"planned epsilon {record.epsilon:.3f} at delta {budget.delta:g} ({record.unit})")
  tf.keras.utils.set_random_seed(seed)  # Python, NumPy and TF alike
  rng = np.random.default_rng(seed)
  positive_rate = dp_positive_rate(labels, count_noise, rng)
  copula = None
  if noise:
    copula = dp_statistics.release(features.flatten_inputs(inputs), labels, codes,
                                   statistics, noise, rng)
    correlations = "a normal-score correlation per class" if statistics.by_class and not \
        statistics.pooled_correlation else "one normal-score correlation"
    log(f"  DP AC-GAN: released DP marginals per label class ({codes.num_codes} columns, noise "
        f"multiplier {noise[0]:.2f}) and {correlations} (noise multiplier {noise[1]:.2f}); "
        f"the generator starts as their copula")
  generator = gan.build_generator(layout, config, copula)
  discriminator = gan.build_discriminator(layout, config)
  d_optimizer = gan.dp_discriminator_optimizer(config)
  g_optimizer = gan.generator_optimizer(config)
  # autograph=False: the steps have no tensor-dependent Python control flow, and
  # autograph's conversion of every Keras and TF Privacy function they call took most of
  # a small run (about 40 to 90 s of tracing on 2 shared cores); the graph is the same.
  d_step = tf.function(lambda real, y: gan.discriminator_dp_step(
      discriminator, generator, d_optimizer, real, y, config.latent_dim),
                       reduce_retracing=True, autograph=False)  # Poisson batches vary in size
  g_step = tf.function(lambda: gan.generator_step(
      generator, discriminator, g_optimizer, config.batch_size, config.latent_dim),
                       autograph=False)
  progress = TrainingProgress("DP AC-GAN", num_examples, config.batch_size, config.epochs,
                              record.steps, plan(config), log)
  if batch1_dp.applies(config, plan(config)):  # paper mode: many steps per call
    steps = batch1_dp.Batch1Training(discriminator, generator, config, inputs, labels,
                                     noise_seed=seed).run(training_batches(plan(config), rng))
    for step, d_loss, g_loss in steps:
      progress.after(step, d_loss=d_loss, g_loss=g_loss)
  else:
    for step, index in enumerate(training_batches(plan(config), rng), start=1):
      d_loss = d_step([tf.constant(x[index]) for x in inputs], tf.constant(labels[index]))
      for _ in range(config.generator_steps):  # free in privacy: no real data involved
        g_loss = g_step()
      progress.after(step, d_loss=d_loss, g_loss=g_loss)
  return TrainedGan(generator, discriminator, record, config, positive_rate)
