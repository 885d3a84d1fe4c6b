"""Trains the DP AC-GAN on transformed patients and exports the generator.

Batches are drawn without replacement, independently at every step, so the
accountant's `fixed` sampling (replace-one adjacency, RDP) is exactly what happens.
The plan is checked against the privacy budget before the first step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from clinical_dp.spec import DatasetSpec
from trainers import accounting, gan
from trainers.preprocessing import LABEL_KEY, transform_features, transformed_name


@dataclasses.dataclass(frozen=True)
class PrivacyBudget:
  target_epsilon: float = 10.0
  delta: float = 1e-5


def layout_arrays(transformed: Dict[str, np.ndarray], spec: DatasetSpec
                  ) -> Tuple[List[np.ndarray], np.ndarray]:
  """Transform outputs -> the networks' inputs ([series], [static]) and labels."""
  layout = gan.PatientLayout.from_spec(spec)
  inputs = []
  if layout.has_series:
    inputs.append(np.stack([np.asarray(transformed[transformed_name(s.name)], np.float32)
                            for s in spec.series], axis=2))
  if layout.has_static:
    numeric = [np.asarray(transformed[transformed_name(n)], np.float32)[:, None]
               for n in layout.numeric_static]
    categorical = [np.asarray(transformed[transformed_name(n)], np.float32)
                   for n, _ in layout.categorical_static]
    inputs.append(np.concatenate(numeric + categorical, axis=1))
  labels = np.asarray(transformed[LABEL_KEY], np.int32).reshape(-1, 1)
  return inputs, labels


def encode_table(table: pd.DataFrame, spec: DatasetSpec) -> Tuple[List[np.ndarray], np.ndarray]:
  """A validated table through the pipeline's own preprocessing_fn, for use outside TFX."""
  columns = {}
  for column in spec.required_columns:
    values = table[column].to_numpy()
    if values.dtype == object:
      values = values.astype(str).astype(bytes)
    columns[column] = tf.constant(values.reshape(-1, 1))
  transformed = {k: v.numpy() for k, v in transform_features(columns, spec).items()}
  return layout_arrays(transformed, spec)


def plan_for(num_examples: int, config: gan.GanConfig, budget: PrivacyBudget,
             max_rows_per_patient: int = 1) -> accounting.PrivacyPlan:
  return accounting.PrivacyPlan(
      num_examples=num_examples, batch_size=config.batch_size,
      noise_multiplier=config.noise_multiplier, epochs=config.epochs, delta=budget.delta,
      accountant="rdp", sampling="fixed", max_rows_per_patient=max_rows_per_patient)


def train_gan(inputs: List[np.ndarray], labels: np.ndarray, spec: DatasetSpec,
              config: gan.GanConfig, budget: PrivacyBudget, seed: int = 0,
              max_rows_per_patient: int = 1, log: Callable[[str], None] = print
              ) -> Tuple[tf.keras.Model, accounting.PrivacyRecord]:
  """DP training; refuses a plan over budget before any step. Returns (generator, record)."""
  num_examples = len(labels)
  record = accounting.check_budget(
      plan_for(num_examples, config, budget, max_rows_per_patient), budget.target_epsilon)
  tf.random.set_seed(seed)
  rng = np.random.default_rng(seed)
  layout = gan.PatientLayout.from_spec(spec)
  generator = gan.build_generator(layout, config)
  discriminator = gan.build_discriminator(layout, config)
  d_optimizer = gan.dp_discriminator_optimizer(config)
  g_optimizer = gan.generator_optimizer(config)
  d_step = tf.function(lambda real, y: gan.discriminator_dp_step(
      discriminator, generator, d_optimizer, real, y, config.latent_dim))
  g_step = tf.function(lambda: gan.generator_step(
      generator, discriminator, g_optimizer, config.batch_size, config.latent_dim))
  steps_per_epoch = max(1, math.ceil(num_examples / config.batch_size))
  # Accounting takes a fraction of a second, so the running epsilon is shown about ten times.
  report_every = steps_per_epoch * max(1, math.ceil(config.epochs / 10))
  log(f"DP AC-GAN: {num_examples} patients, {record.steps} steps of batch {config.batch_size}, "
      f"noise {config.noise_multiplier}, clip {config.l2_norm_clip}; planned epsilon "
      f"{record.epsilon:.3f} at delta {budget.delta:g} (budget {budget.target_epsilon:g})")
  start = time.time()
  for step in range(record.steps):
    index = rng.choice(num_examples, size=config.batch_size, replace=False)
    d_loss = d_step([tf.constant(x[index]) for x in inputs], tf.constant(labels[index]))
    g_loss = g_step()
    if (step + 1) % report_every == 0 or step + 1 == record.steps:
      epochs_done = (step + 1) / steps_per_epoch
      spent = accounting.compute_epsilon(dataclasses.replace(
          plan_for(num_examples, config, budget, max_rows_per_patient),
          epochs=(step + 1) * config.batch_size / num_examples)).epsilon
      log(f"  epoch {epochs_done:.0f}/{config.epochs}: d_loss {float(d_loss):.3f} "
          f"g_loss {float(g_loss):.3f}, {(step + 1) / (time.time() - start):.1f} steps/s, "
          f"epsilon so far {spent:.3f}")
  return generator, record
