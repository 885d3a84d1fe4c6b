"""DP classifiers (logistic regression, small MLP) with TF Privacy, beside a non-private twin.

Inputs are the same transformed features the GAN sees, flattened: series values
visit by visit, then static covariates. The private model is trained with DP-SGD on
Poisson-sampled batches: each example's gradient clipped (in one batched pass,
trainers/dp_clipping.py), TF Privacy's Gaussian noise and DP Adam, the noisy sum divided
by the expected batch (dp_training.py); the twin trains the same way with plain Adam,
for comparison only.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from clinical_dp import secret_seed
from clinical_dp.console import say
from trainers import accounting, dp_clipping
from trainers.dp_training import (PrivacyBudget, TrainingProgress, fit_to_data, plan_for,
                                  seed_global_generators, training_batches,
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


def optimizer_for(config: ClassifierConfig, expected_batch_size: float):
  """The private classifier's DP Adam (one-pass clipping, TF Privacy's Gaussian sum query,
  the noisy sum over the expected batch), or the twin's plain Adam."""
  if config.private:
    return dp_clipping.FastDPKerasAdamOptimizer(
        config.l2_norm_clip, config.noise_multiplier, learning_rate=config.learning_rate,
        expected_batch_size=expected_batch_size)
  return tf.keras.optimizers.Adam(config.learning_rate)


def training_step(model: tf.keras.Model, optimizer, features: tf.Tensor, targets: tf.Tensor,
                  weights: tf.Tensor, expected_batch_size: float) -> tf.Tensor:
  """One update on a batch whose rows weigh 0 or 1 (an empty Poisson batch is one row of
  weight 0); returns the weighted loss over the expected batch.

  With a FastDPKerasAdamOptimizer (the private classifier) each example's gradient is
  clipped in one batched pass (trainers/dp_clipping.py: exact for Dense layers), then
  TF Privacy's Gaussian sum query adds its noise and the sum is divided by the expected
  batch: the DP-SGD step of TF Privacy's DPKerasAdamOptimizer, at a fraction of its cost
  (tests/test_classifier.py holds the two equal)."""
  def example_losses(logits):
    return weights * tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=targets, logits=logits), [-1])
  if isinstance(optimizer, dp_clipping.FastDPKerasAdamOptimizer):
    losses = optimizer.minimize_examples(model, [[features]],
                                         lambda outputs: example_losses(outputs[0]))
  else:
    with tf.GradientTape() as tape:
      losses = example_losses(model(features, training=True))
      loss = tf.reduce_sum(losses) / expected_batch_size
    optimizer.minimize(loss, model.trainable_variables, tape=tape)
  return tf.reduce_sum(losses) / expected_batch_size


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
  optimizer = optimizer_for(config, plan.expected_batch_size)
  labels = y.reshape(-1, 1).astype(np.float32)
  x = np.asarray(x, np.float32)

  # Poisson batches vary in size: one trace, for any batch ([None] from the start).
  # autograph=False, as the GAN's steps (trainers/gan_trainer.py): nothing here branches on
  # a tensor, and converting the Keras and TF Privacy code took 10 of a first training's
  # 14 s on 10 000 rows; the graph is the same.
  step = tf.function(
      lambda features, targets, weights: training_step(model, optimizer, features, targets,
                                                       weights, plan.expected_batch_size),
      autograph=False,
      input_signature=[tf.TensorSpec([None, x.shape[1]], tf.float32),
                       tf.TensorSpec([None, 1], tf.float32), tf.TensorSpec([None], tf.float32)])

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
