"""DP classifiers (logistic regression, small MLP) with TF Privacy, beside a non-private twin.

Inputs are the same transformed features the GAN sees, flattened: series values
visit by visit, then static covariates. The private model is trained with
DPKerasAdamOptimizer on per-example losses and Poisson-sampled batches, its noisy sum
divided by the expected batch (dp_training.py); the twin trains the same way with plain
Adam, for comparison only.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from clinical_dp import secret_seed
from clinical_dp.console import say
from trainers import accounting
from trainers.dp_training import (PrivacyBudget, TrainingProgress, dp_adam, fit_to_data,
                                  plan_for, seed_global_generators, training_batches,
                                  with_noise_for_budget)

KINDS = ("logistic", "mlp")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  kind: str = "logistic"
  hidden_units: int = 32
  batch_size: int = 64
  epochs: int = 20
  # At most this many DP steps (dp_training.fit_steps_to_cap): above 5000 x 64 / 20 =
  # 16 000 training rows the epochs shrink, so that training time stops growing with the
  # table.
  max_steps: Optional[int] = 5000
  learning_rate: float = 1e-2
  l2_norm_clip: float = 1.0
  noise_multiplier: Optional[float] = None  # None: the smallest noise within the budget
  private: bool = True


def build_classifier(width: int, config: ClassifierConfig) -> tf.keras.Model:
  """Returns a model that outputs the logit of the positive class."""
  if config.kind not in KINDS:
    raise ValueError(f"classifier kind must be one of {list(KINDS)}, got {config.kind!r}")
  features = tf.keras.Input((width,), name="features")
  x = features
  if config.kind == "mlp":
    x = tf.keras.layers.Dense(config.hidden_units, activation="relu")(x)
  return tf.keras.Model(features, tf.keras.layers.Dense(1, name="logit")(x),
                        name=f"{config.kind}_classifier")


def _optimizer(config: ClassifierConfig, expected_batch_size: float):
  if config.private:
    return dp_adam(config.l2_norm_clip, config.noise_multiplier, config.learning_rate,
                   expected_batch_size=expected_batch_size)
  return tf.keras.optimizers.Adam(config.learning_rate)


def train_classifier(x: np.ndarray, y: np.ndarray, config: ClassifierConfig,
                     budget: PrivacyBudget, seed: Optional[int] = None,
                     max_rows_per_patient: int = 1,
                     log: Callable[[str], None] = say
                     ) -> Tuple[tf.keras.Model, Optional[accounting.PrivacyRecord]]:
  """Trains the classifier; the private one refuses a plan over budget before any step.

  Returns the model and its privacy record (None for the non-private twin). Batches and
  noise come from `seed`, or from a secret seed drawn for this call when it is None
  (clinical_dp/secret_seed.py).
  """
  num_examples = len(y)
  # The batch first (the twin too): the noise, the plan and the record follow the batch
  # that runs.
  config = fit_to_data(config, num_examples, log)
  if config.private:
    config = with_noise_for_budget(
        config, plan_for(num_examples, config, budget, max_rows_per_patient), budget)
  # The twin samples batches the same way; it has no guarantee to account for.
  plan = plan_for(num_examples, config, budget, max_rows_per_patient)
  record = accounting.check_budget(plan, budget.target_epsilon) if config.private else None
  seed = secret_seed.resolve(seed)
  seed_global_generators(seed)
  rng = np.random.default_rng(seed)
  model = build_classifier(x.shape[1], config)
  optimizer = _optimizer(config, plan.expected_batch_size)
  labels = y.reshape(-1, 1).astype(np.float32)
  x = np.asarray(x, np.float32)

  # Poisson batches vary in size: one trace, for any batch ([None] from the start).
  @tf.function(input_signature=[tf.TensorSpec([None, x.shape[1]], tf.float32),
                                tf.TensorSpec([None, 1], tf.float32),
                                tf.TensorSpec([None], tf.float32)])
  def step(features, targets, weights):
    with tf.GradientTape(persistent=config.private) as tape:
      losses = weights * tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(
          labels=targets, logits=model(features, training=True)), [-1])
      loss = tf.reduce_sum(losses) / plan.expected_batch_size
    if config.private:  # the vector loss and the tape take TF Privacy's clip-and-noise path
      optimizer.minimize(losses, model.trainable_variables, tape=tape)
    else:
      optimizer.minimize(loss, model.trainable_variables, tape=tape)
    return loss

  kind = f"{'DP' if config.private else 'non-private'} {config.kind}"
  progress = TrainingProgress(kind, num_examples, config.batch_size, config.epochs, plan.steps,
                              plan if config.private else None, log)
  for count, (index, weights) in enumerate(training_batches(plan, rng), start=1):
    progress.after(count, loss=step(tf.constant(x[index]), tf.constant(labels[index]),
                                    tf.constant(weights)))
  return model, record


def accuracy(model: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> float:
  predicted = (model.predict(x, verbose=0).reshape(-1) > 0).astype(int)
  return float(np.mean(predicted == y.reshape(-1)))
