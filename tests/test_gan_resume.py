"""Resumable DP AC-GAN training: a run interrupted and resumed from its checkpoint ends
with the weights and the privacy record of a run that never stopped."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # disable_op_determinism

from clinical_dp.simulators import simulate, write_simulated
from clinical_dp.validation import validate_table
from trainers import dp_training, features, gan, gan_checkpoint, gan_trainer

SPRINT_SPEC = simulate("sprint", patients=20)[1]
EPOCHS, STOP_AT_EPOCH = 4, 2
SMALL = gan.GanConfig(latent_dim=8, generator_units=16, generator_filters=8,
                      discriminator_filters=4, discriminator_units=16, batch_size=32,
                      noise_multiplier=None, epochs=EPOCHS)  # solved for BUDGET
BUDGET = dp_training.PrivacyBudget(10.0, 1e-5)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
  data, _ = write_simulated(str(tmp_path_factory.mktemp("sprint")),
                            *simulate("sprint", patients=300, seed=1))
  return features.encode_table(validate_table(data, SPRINT_SPEC).table, SPRINT_SPEC)


@pytest.fixture
def deterministic_ops():
  tf.config.experimental.enable_op_determinism()
  yield
  tf_config.disable_op_determinism()


class Interrupted(KeyboardInterrupt):
  """What Ctrl-C raises, at the end of a chosen epoch."""


def _train(table, checkpoint=None, stop_at_epoch=None, config=SMALL):
  inputs, labels = table
  logs = []

  def log(line):
    logs.append(line)
    if stop_at_epoch is not None and f"epoch {stop_at_epoch}/" in line:
      raise Interrupted()

  trained = gan_trainer.train_gan(inputs, labels, SPRINT_SPEC, config, BUDGET, seed=3,
                                  log=log, checkpoint=checkpoint)
  return trained, logs


def _weights(model):
  return [w.numpy() for w in model.weights]


@pytest.mark.parametrize("dp_method", ["fast", "tf_privacy"])
def test_interrupted_and_resumed_training_equals_an_uninterrupted_run(
    table, tmp_path, deterministic_ops, dp_method):
  config = dataclasses.replace(SMALL, dp_method=dp_method)
  reference, _ = _train(table, config=config)  # never stopped, no checkpoints

  checkpoint = gan_checkpoint.CheckpointConfig(str(tmp_path / "checkpoints"))
  with pytest.raises(Interrupted):
    _train(table, checkpoint, stop_at_epoch=STOP_AT_EPOCH, config=config)
  stopped = gan_checkpoint.read_progress(checkpoint.directory)
  steps_per_epoch = reference.record.steps // EPOCHS
  assert stopped.steps_done == STOP_AT_EPOCH * steps_per_epoch
  assert stopped.total_steps == reference.record.steps
  assert stopped.reason == "interrupted: Interrupted"

  resumed, logs = _train(table, checkpoint, config=config)
  assert any(f"resuming from step {stopped.steps_done} of {reference.record.steps}" in line
             for line in logs)
  # The steps before the interruption are not trained again: progress resumes after them.
  assert not any(f"epoch {STOP_AT_EPOCH - 1}/" in line for line in logs)
  for name in ("generator", "discriminator"):
    for ours, theirs in zip(_weights(getattr(resumed, name)),
                            _weights(getattr(reference, name))):
      np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=name)
  assert resumed.record.to_dict() == reference.record.to_dict()
  assert resumed.positive_rate == reference.positive_rate
  assert gan_checkpoint.read_progress(checkpoint.directory).reason == "finished"


def test_a_checkpoint_of_other_data_or_settings_is_refused(table, tmp_path):
  checkpoint = gan_checkpoint.CheckpointConfig(str(tmp_path / "checkpoints"))
  with pytest.raises(Interrupted):
    _train(table, checkpoint, stop_at_epoch=1)
  inputs, labels = table
  with pytest.raises(gan_checkpoint.CheckpointMismatchError, match="other training data"):
    _train(([x.copy() for x in inputs], 1 - labels), checkpoint)
  with pytest.raises(gan_checkpoint.CheckpointMismatchError, match="other training data"):
    _train(table, checkpoint, config=dataclasses.replace(SMALL, epochs=EPOCHS + 1))
  # Keyed by fingerprint (Kubeflow), another run starts afresh beside it instead.
  keyed = dataclasses.replace(checkpoint, by_fingerprint=True)
  trained, logs = _train(table, keyed, config=dataclasses.replace(SMALL, epochs=1))
  assert not any("resuming" in line for line in logs)
  subdirectories = [d for d in os.listdir(keyed.directory)
                    if os.path.isdir(os.path.join(keyed.directory, d))]
  assert len(subdirectories) == 1
  with open(os.path.join(keyed.directory, subdirectories[0],
                         gan_checkpoint.PROGRESS_FILE)) as f:
    assert json.load(f)["steps_done"] == trained.record.steps
