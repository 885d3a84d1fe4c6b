"""The privacy audit's model side: scores from the released and trained models, shadow
models, and the deliberately overfit positive control.

Members are training patients; non-members are eval-split patients, which no trainer
touches (the test split stays reserved for utility). The attacker is given what a
recipient of the release has: the released synthetic table is its reference
population, on which it trains shadow models the way the target was trained
(Kerckhoffs: the training algorithm and its settings are public).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from sklearn.ensemble import RandomForestClassifier

from components.evaluation import attacks
from trainers import classifier, gan
from trainers.dp_training import PrivacyBudget
from trainers.features import PatientLayout


@dataclasses.dataclass(frozen=True)
class AuditConfig:
  max_records: int = 1000  # members and non-members scored per attack (each at most)
  shadow_models: int = 4
  # Each shadow of the DP classifier trains on half the released synthetic table, but on
  # at most this many of its rows (None: half, however large). A shadow repeats the
  # classifier's DP training, whose steps grow with its rows: at 100 k patients the four
  # shadows on 40 k rows each took 153 s of the report. Its use is the spread of the
  # confidences of models that did not see a record, which a few thousand rows give; the
  # tables of the tests and `make demo` stay below it, unchanged.
  max_shadow_rows: Optional[int] = 10_000
  control_members: int = 200
  control_trees: int = 100
  seed: int = 0


@dataclasses.dataclass
class Records:
  """Patients scored by the attacks: encoded features, labels and raw tf.Examples."""
  x: np.ndarray
  inputs: List[np.ndarray]  # the GAN's layout (series matrix, static vector)
  y: np.ndarray
  serialized: List[bytes]

  def head(self, n: int) -> "Records":
    return Records(self.x[:n], [a[:n] for a in self.inputs], self.y[:n], self.serialized[:n])


def classifier_probabilities(model_dir: str) -> Callable[[List[bytes]], np.ndarray]:
  """The exported classifier (loaded once) as serialized tf.Examples -> positive-class
  probability, through its serving signature."""
  serve = tf.saved_model.load(model_dir).signatures["serving_default"]

  def probabilities(serialized: List[bytes]) -> np.ndarray:
    outputs = [serve(examples=tf.constant(serialized[i:i + 1024]))["probability"].numpy()
               for i in range(0, len(serialized), 1024)]
    return np.concatenate(outputs).reshape(-1)
  return probabilities


# A fitted model as the attacks see it: features -> probability of the positive label.
Probabilities = Callable[[np.ndarray], np.ndarray]


def keras_probabilities(model: tf.keras.Model) -> Probabilities:
  """A Keras model that outputs the positive-class logit."""
  return lambda x: tf.sigmoid(model(x, training=False)).numpy().reshape(-1)


def _half_samples(count: int, shadows: int, rng: np.random.Generator, size: int
                  ) -> List[np.ndarray]:
  return [rng.choice(count, size=min(size, count), replace=False) for _ in range(shadows)]


def shadow_confidences(train: Callable[[np.ndarray, np.ndarray], Probabilities],
                       reference_x: np.ndarray, reference_y: np.ndarray, size: int,
                       scored: List[Records], config: AuditConfig) -> List[np.ndarray]:
  """Trains config.shadow_models models on random subsets of the reference data; returns,
  for each scored set, the (shadows x records) true-label logit confidences."""
  rng = np.random.default_rng(config.seed + 7)
  confidences = [[] for _ in scored]
  for index in _half_samples(len(reference_y), config.shadow_models, rng, size):
    probabilities = train(reference_x[index], reference_y[index])
    for out, records in zip(confidences, scored):
      out.append(attacks.logit_confidence(probabilities(records.x), records.y))
  return [np.stack(c) for c in confidences]


def model_attacks(probabilities: Callable[[Records], np.ndarray], members: Records,
                  non_members: Records, shadows: List[np.ndarray]) -> Dict[str, Dict]:
  """Loss threshold and offline LiRA against one model."""
  p_members, p_non = probabilities(members), probabilities(non_members)
  return {
      "loss_threshold": attacks.attack_metrics(attacks.loss_scores(p_members, members.y),
                                               attacks.loss_scores(p_non, non_members.y)),
      "lira_offline": attacks.attack_metrics(
          attacks.offline_lira_scores(attacks.logit_confidence(p_members, members.y),
                                      shadows[0]),
          attacks.offline_lira_scores(attacks.logit_confidence(p_non, non_members.y),
                                      shadows[1])),
  }


def shadow_rows(reference_rows: int, config: AuditConfig) -> int:
  """Rows each shadow of the DP classifier trains on: half the reference table, capped at
  `max_shadow_rows` (drawn at random like the halves: shadow_confidences)."""
  half = reference_rows // 2
  return half if config.max_shadow_rows is None else min(half, config.max_shadow_rows)


def audit_dp_classifier(model_dir: str, record: Dict, members: Records, non_members: Records,
                        reference_x: np.ndarray, reference_y: np.ndarray,
                        config: AuditConfig) -> Dict[str, Dict]:
  """Attacks on the released DP classifier; shadows repeat its DP training (same noise,
  clip, batch and epochs) on halves of the synthetic table."""
  trained = classifier.ClassifierConfig(**record["classifier_config"])
  # The record's batch is the one that ran (fitted to the training rows); the shadows fit
  # it again to their own halves if they are smaller.
  shadow_config = dataclasses.replace(trained, noise_multiplier=record["noise_multiplier"],
                                      batch_size=int(record.get("batch_size",
                                                                trained.batch_size)))
  # Shadows are the attacker's own models: no budget applies to them.
  budget = PrivacyBudget(target_epsilon=float("inf"), delta=record["delta"])

  def train(x, y):
    model, _ = classifier.train_classifier(x, y, shadow_config, budget, seed=config.seed,
                                           log=lambda _: None)
    return keras_probabilities(model)

  shadows = shadow_confidences(train, reference_x, reference_y,
                               shadow_rows(len(reference_y), config),
                               [members, non_members], config)
  target = classifier_probabilities(model_dir)
  return model_attacks(lambda r: target(r.serialized), members, non_members, shadows)


def overfit_model(x: np.ndarray, y: np.ndarray, config: AuditConfig) -> Probabilities:
  """Fully grown trees on every feature: each tree memorises its bootstrap sample, so
  members get near-certain votes and non-members do not (a classic membership target).
  A wide network trained to zero loss is a weaker control here: it is as confident on
  most unseen patients as on its members, since these tables are largely predictable."""
  forest = RandomForestClassifier(n_estimators=config.control_trees, max_features=None,
                                  random_state=config.seed, n_jobs=1)
  forest.fit(x, y)
  classes = list(forest.classes_)
  if 1 not in classes:  # trained on negatives only: it is sure every record is negative
    return lambda features: np.zeros(len(features))
  positive = classes.index(1)
  return lambda features: forest.predict_proba(features)[:, positive]


def audit_positive_control(members: Records, non_members: Records, reference_x: np.ndarray,
                           reference_y: np.ndarray, config: AuditConfig) -> Dict[str, Dict]:
  """The same attacks on a deliberately overfit non-private model: they must succeed here,
  or a low attack AUROC on the DP models says nothing."""
  members = members.head(config.control_members)
  non_members = non_members.head(config.control_members)
  target = overfit_model(members.x, members.y, config)
  shadows = shadow_confidences(lambda x, y: overfit_model(x, y, config), reference_x,
                               reference_y, len(members.y), [members, non_members], config)
  return model_attacks(lambda r: target(r.x), members, non_members, shadows)


def load_discriminator(weights_path: str, spec, gan_config: Dict) -> tf.keras.Model:
  config = gan.GanConfig(**gan_config)
  model = gan.build_discriminator(PatientLayout.from_spec(spec), config)
  model.load_weights(weights_path)
  return model


def discriminator_scores(discriminator: tf.keras.Model, records: Records
                         ) -> Tuple[np.ndarray, np.ndarray]:
  """The real/fake logit and the class head's probability of the positive label."""
  realness, label_logit = discriminator([tf.constant(a) for a in records.inputs],
                                        training=False)
  return realness.numpy().reshape(-1), tf.sigmoid(label_logit).numpy().reshape(-1)


def audit_discriminator(discriminator: tf.keras.Model, members: Records,
                        non_members: Records) -> Dict[str, Dict]:
  """Threshold attacks on the DP-trained discriminator, the only network that saw patients."""
  real_m, class_m = discriminator_scores(discriminator, members)
  real_n, class_n = discriminator_scores(discriminator, non_members)
  return {"realness_threshold": attacks.attack_metrics(real_m, real_n),
          "class_loss_threshold": attacks.attack_metrics(
              attacks.loss_scores(class_m, members.y), attacks.loss_scores(class_n,
                                                                          non_members.y))}


def audit_synthetic_data(synthetic_x: np.ndarray, members: Records, non_members: Records
                         ) -> Dict[str, Dict]:
  return {"distance_to_synthetic": attacks.attack_metrics(
      attacks.distance_scores(members.x, synthetic_x),
      attacks.distance_scores(non_members.x, synthetic_x))}
