"""The membership attacks work (positive control) before they are trusted on DP models."""

import numpy as np
import pytest

from clinical_dp.simulators import simulate
from components.evaluation import audit
from trainers import classifier, features
from trainers.dp_training import PrivacyBudget

CONFIG = audit.AuditConfig(shadow_models=4, control_members=200)


def _records(frame, spec):
  inputs, labels = features.encode_table(frame, spec)
  return audit.Records(features.flatten_inputs(inputs), inputs, labels.reshape(-1),
                       [b""] * len(frame))


@pytest.fixture(scope="module")
def icu_patients():
  frame, spec = simulate("icu", patients=1400, sites=4, seed=3)
  frame = frame.drop_duplicates(spec.id_column).reset_index(drop=True)
  return (_records(frame.iloc[:400], spec), _records(frame.iloc[400:800], spec),
          _records(frame.iloc[800:], spec))


def test_attacks_expose_the_overfit_control(icu_patients):
  members, non_members, reference = icu_patients
  result = audit.audit_positive_control(members, non_members, reference.x, reference.y, CONFIG)
  assert result["loss_threshold"]["auroc"] > 0.55, result
  assert result["lira_offline"]["auroc"] > 0.65, result
  assert result["loss_threshold"]["members"] == 200


def test_attacks_stay_near_chance_on_a_dp_model(icu_patients):
  members, non_members, reference = icu_patients
  config = classifier.ClassifierConfig(epochs=5, noise_multiplier=2.0)
  model, _ = classifier.train_classifier(members.x, members.y, config,
                                         PrivacyBudget(target_epsilon=100, delta=1e-4),
                                         seed=0, log=lambda _: None)
  shadows = audit.shadow_confidences(
      lambda x, y: audit.keras_probabilities(classifier.train_classifier(
          x, y, config, PrivacyBudget(target_epsilon=100, delta=1e-4), seed=0,
          log=lambda _: None)[0]),
      reference.x, reference.y, len(members.y), [members, non_members], CONFIG)
  target = audit.keras_probabilities(model)
  result = audit.model_attacks(lambda r: target(r.x), members, non_members, shadows)
  for attack in result.values():
    assert attack["auroc"] < 0.6, result


def test_synthetic_copies_of_members_are_caught(icu_patients):
  members, non_members, _ = icu_patients
  rng = np.random.default_rng(0)
  leaked = members.x + rng.normal(0, 1e-3, members.x.shape)
  result = audit.audit_synthetic_data(leaked, members, non_members)
  assert result["distance_to_synthetic"]["auroc"] > 0.95


def test_shadows_train_on_half_the_reference_up_to_the_cap():
  assert audit.shadow_rows(7000, audit.AuditConfig()) == 3500  # make demo's size: half
  assert audit.shadow_rows(80_000, audit.AuditConfig(max_shadow_rows=10_000)) == 10_000
  assert audit.shadow_rows(80_000, audit.AuditConfig(max_shadow_rows=None)) == 40_000
  # The cap draws its rows as the halves are drawn: seeded, without replacement.
  seen = []

  def train(x, y):
    seen.append((x.copy(), y.copy()))
    return lambda features: np.full(len(features), 0.5)
  reference_x = np.arange(100, dtype=float).reshape(-1, 1)
  records = audit.Records(reference_x[:5], [], np.zeros(5, int), [b""] * 5)
  config = audit.AuditConfig(shadow_models=3, max_shadow_rows=20, seed=3)
  confidences = audit.shadow_confidences(train, reference_x, np.arange(100) % 2,
                                         audit.shadow_rows(100, config), [records], config)
  assert confidences[0].shape == (3, 5)
  assert [len(x) for x, _ in seen] == [20, 20, 20]
  assert all(len(np.unique(x)) == 20 for x, _ in seen)
