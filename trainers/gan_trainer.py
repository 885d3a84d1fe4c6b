"""Trains the DP AC-GAN on transformed patients.

The plan is checked against the privacy budget before the first step; batches and
accounting follow trainers/dp_training.py.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from clinical_dp.spec import DatasetSpec
from trainers import accounting, gan
from trainers.dp_training import (PrivacyBudget, epsilon_after, fixed_size_batches, plan_for,
                                  report_interval)
from trainers.preprocessing import LABEL_KEY, transform_features, transformed_name


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


def train_gan(inputs: List[np.ndarray], labels: np.ndarray, spec: DatasetSpec,
              config: gan.GanConfig, budget: PrivacyBudget, seed: int = 0,
              max_rows_per_patient: int = 1, log: Callable[[str], None] = print
              ) -> Tuple[tf.keras.Model, accounting.PrivacyRecord]:
  """DP training; refuses a plan over budget before any step. Returns (generator, record)."""
  num_examples = len(labels)
  record = accounting.check_budget(
      plan_for(num_examples, config, budget, max_rows_per_patient), budget.target_epsilon)
  tf.keras.utils.set_random_seed(seed)  # Python, NumPy and TF alike
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
  every = report_interval(num_examples, config)
  start = time.time()
  for step, index in enumerate(fixed_size_batches(num_examples, config.batch_size,
                                                  record.steps, rng), start=1):
    d_loss = d_step([tf.constant(x[index]) for x in inputs], tf.constant(labels[index]))
    g_loss = g_step()
    if step % every == 0 or step == record.steps:
      spent = epsilon_after(step, num_examples, config, budget, max_rows_per_patient)
      log(f"  epoch {step * config.batch_size / num_examples:.0f}/{config.epochs}: "
          f"d_loss {float(d_loss):.3f} g_loss {float(g_loss):.3f}, "
          f"{step / (time.time() - start):.1f} steps/s, epsilon so far {spent:.3f}")
  return generator, record
