"""Resumable DP AC-GAN training: a run interrupted and resumed from its checkpoint ends
with the weights and the privacy record of a run that never stopped."""

import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # disable_op_determinism

from clinical_dp.simulators import simulate, write_simulated
from clinical_dp.validation import validate_table
from trainers import batch1_dp, dp_training, features, gan, gan_checkpoint, gan_trainer

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


class Interrupted(Exception):
  """Raised at the end of a chosen epoch: a crash between two steps."""


class Terminated(BaseException):
  """What the SIGTERM handler below raises, as `clinical-dp run`'s console does."""


@pytest.fixture
def sigterm_raises():
  def raise_terminated(signum, frame):  # pylint: disable=unused-argument
    raise Terminated()
  previous = signal.signal(signal.SIGTERM, raise_terminated)
  yield
  signal.signal(signal.SIGTERM, previous)


def _train(table, checkpoint=None, stop_at_epoch=None, config=SMALL, stop_by="exception",
           seed=3):
  """stop_by "exception": Interrupted raised at the end of stop_at_epoch; "sigterm":
  SIGTERM sent to this process then, which training holds until its next step ends."""
  inputs, labels = table
  logs = []

  def log(line):
    logs.append(line)
    if stop_at_epoch is not None and f"epoch {stop_at_epoch}/" in line:
      if stop_by == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
      else:
        raise Interrupted()

  trained = gan_trainer.train_gan(inputs, labels, SPRINT_SPEC, config, BUDGET, seed=seed,
                                  log=log, checkpoint=checkpoint)
  return trained, logs


def _weights(model):
  return [w.numpy() for w in model.weights]


# Paper mode's batch-1 loop (trainers/batch1_dp.py): expected batch 1, Poisson sampling,
# noise a function of (seed, step), many steps per call.
BATCH1 = dict(batch_size=1, statistics_share=0.0)


@pytest.mark.parametrize("dp_method,stop_by", [("fast", "sigterm"),
                                               ("tf_privacy", "exception"),
                                               (gan.BATCH1_METHOD, "sigterm")])
def test_interrupted_and_resumed_training_equals_an_uninterrupted_run(
    table, tmp_path, deterministic_ops, sigterm_raises, dp_method, stop_by):
  config = dataclasses.replace(SMALL, dp_method=dp_method,
                               **(BATCH1 if dp_method == gan.BATCH1_METHOD else {}))
  reference, _ = _train(table, config=config)  # never stopped, no checkpoints

  checkpoint = gan_checkpoint.CheckpointConfig(str(tmp_path / "checkpoints"))
  with pytest.raises(Terminated if stop_by == "sigterm" else Interrupted):
    _train(table, checkpoint, stop_at_epoch=STOP_AT_EPOCH, config=config,
           stop_by=stop_by)
  stopped = gan_checkpoint.read_progress(checkpoint.directory)
  # the progress line's epoch (dp_training.TrainingProgress): ceil(rows / batch) steps
  steps_per_epoch = -(-reference.record.num_examples // config.batch_size)
  if dp_method == gan.BATCH1_METHOD:
    # The epoch's last step ran in a call of many; the signal waits for that call to end.
    per_call = batch1_dp.Batch1Settings().steps_per_call
    assert stopped.steps_done == -(-STOP_AT_EPOCH * steps_per_epoch // per_call) * per_call
  else:  # held until the epoch's last step has ended (its progress line sent it)
    assert stopped.steps_done == STOP_AT_EPOCH * steps_per_epoch
  assert stopped.total_steps == reference.record.steps
  assert stopped.reason == ("interrupted: SIGTERM" if stop_by == "sigterm"
                            else "interrupted: Interrupted")

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


def test_a_secret_seed_is_kept_with_the_checkpoints_for_the_resume(
    table, tmp_path, deterministic_ops):
  """Without a seed, a run draws a secret one and keeps it beside its checkpoints before
  its first draw; the resumed run continues with it: it equals a straight run given that
  seed."""
  config = dataclasses.replace(SMALL, epochs=2)
  checkpoint = gan_checkpoint.CheckpointConfig(str(tmp_path / "checkpoints"))
  with pytest.raises(Interrupted):
    _train(table, checkpoint, stop_at_epoch=1, config=config, seed=None)
  with open(os.path.join(checkpoint.directory, gan_checkpoint.SEED_FILE)) as f:
    kept = json.load(f)["seed"]
  resumed, logs = _train(table, checkpoint, config=config, seed=None)
  assert any("resuming from step" in line for line in logs)
  straight, _ = _train(table, config=config, seed=kept)
  for ours, theirs in zip(_weights(resumed.generator), _weights(straight.generator)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
  assert resumed.positive_rate == straight.positive_rate


def test_each_run_without_a_seed_draws_its_own_and_keeps_it_only_for_itself(tmp_path):
  first = gan_checkpoint.CheckpointConfig(str(tmp_path / "first"))
  second = gan_checkpoint.CheckpointConfig(str(tmp_path / "second"))
  drawn = gan_checkpoint.run_seed(first, "fingerprint", None)
  assert gan_checkpoint.run_seed(first, "fingerprint", None) == drawn  # the resume's
  assert gan_checkpoint.run_seed(second, "fingerprint", None) != drawn
  assert gan_checkpoint.run_seed(None, "fingerprint", None) != drawn  # kept nowhere
  assert gan_checkpoint.run_seed(first, "fingerprint", 5) == 5  # explicit: as given
  with pytest.raises(gan_checkpoint.CheckpointMismatchError, match="other training data"):
    gan_checkpoint.run_seed(first, "another run", None)
  keyed = dataclasses.replace(first, by_fingerprint=True)  # Kubeflow: one per fingerprint
  assert gan_checkpoint.run_seed(keyed, "another run", None) != drawn


def test_a_checkpoint_of_other_data_or_settings_is_refused(table, tmp_path):
  checkpoint = gan_checkpoint.CheckpointConfig(str(tmp_path / "checkpoints"))
  with pytest.raises(Interrupted):
    _train(table, checkpoint, stop_at_epoch=1)
  inputs, labels = table
  with pytest.raises(gan_checkpoint.CheckpointMismatchError, match="other training data"):
    _train(([x.copy() for x in inputs], 1 - labels), checkpoint)
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


def test_resume_needs_an_unfinished_run_with_a_gan_checkpoint(tmp_path):
  """`clinical-dp run --resume DIR` continues only what can be continued (exit 2 else)."""
  from cli.main import main  # pylint: disable=g-import-not-at-top
  from pipelines import run_directory  # pylint: disable=g-import-not-at-top
  from pipelines.config import gan_checkpoint_dir  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path / "run"
  with pytest.raises(run_directory.OutputDirError, match="not a clinical-dp run directory"):
    run_directory.resumable_run(str(tmp_path))
  run_directory.begin_output_dir(str(run_dir))
  with pytest.raises(run_directory.OutputDirError, match="run_args.json"):
    run_directory.resumable_run(str(run_dir))
  (run_dir / run_directory.RUN_ARGS_FILE).write_text(json.dumps({"fast": True}))
  with pytest.raises(run_directory.OutputDirError, match="no checkpoint of the DP AC-GAN"):
    run_directory.resumable_run(str(run_dir))
  progress = gan_checkpoint.Progress(
      fingerprint="f", statistics_fingerprint="s", steps_done=3, total_steps=9,
      numpy_rng_state={}, checkpoint="ckpt-3", saved_at="2026-01-01T00:00:00+00:00",
      reason="periodic")
  os.makedirs(gan_checkpoint_dir(str(run_dir)))
  with open(os.path.join(gan_checkpoint_dir(str(run_dir)), gan_checkpoint.PROGRESS_FILE),
            "w") as f:
    json.dump(dataclasses.asdict(progress), f)
  resumable = run_directory.resumable_run(str(run_dir))
  assert resumable.progress == progress and resumable.run_args == {"fast": True}
  (run_dir / run_directory.SUMMARY_FILE).write_text("{}")
  with pytest.raises(run_directory.OutputDirError, match="the run finished"):
    run_directory.resumable_run(str(run_dir))
  assert main(["run", "--resume", str(run_dir), "--fast"]) == 2  # its own arguments only


def test_a_resumed_runs_summary_lists_each_components_last_outputs():
  """ML Metadata keeps the first attempt's executions; the summary names the resumed
  run's own (cached or new), one set per component."""
  from pipelines.run_summary import latest_outputs  # pylint: disable=g-import-not-at-top
  outputs = [{"component": "CsvExampleGen", "execution_id": 1, "name": "examples"},
             {"component": "Transform", "execution_id": 2, "name": "transform_graph"},
             {"component": "Transform", "execution_id": 2, "name": "transformed_examples"},
             {"component": "CsvExampleGen", "execution_id": 5, "name": "examples"},
             {"component": "Transform", "execution_id": 6, "name": "transform_graph"},
             {"component": "Transform", "execution_id": 6, "name": "transformed_examples"},
             {"component": "GanTrainer", "execution_id": 7, "name": "model"}]
  assert [(o["component"], o["execution_id"]) for o in latest_outputs(outputs)] == [
      ("CsvExampleGen", 5), ("Transform", 6), ("Transform", 6), ("GanTrainer", 7)]
