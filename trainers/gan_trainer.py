"""Trains the DP AC-GAN on transformed patients.

The plan is checked against the privacy budget before the first step (with the noise
solved for the budget when the config leaves it open); batches and accounting follow
trainers/dp_training.py. Besides the generator, the run releases the label rate the
synthetic patients are drawn with, as a noisy count charged to the same budget.
Given a checkpoint directory, training checkpoints and resumes (trainers/gan_checkpoint.py):
every random draw after the statistics comes from checkpointed generators, so a resumed
run gives the weights and the privacy record of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import signal
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from clinical_dp import secret_seed
from clinical_dp.console import say
from clinical_dp.spec import DatasetSpec
from trainers import accounting, batch1_dp, dp_statistics, features, gan, gan_checkpoint
from trainers.dp_training import (PrivacyBudget, TrainingProgress, dp_positive_rate,
                                  fit_to_data, padded_batch, plan_for,
                                  seed_global_generators, statistics_noise, step_batch,
                                  with_noise_for_budget)
from trainers.features import PatientLayout


@dataclasses.dataclass
class TrainedGan:
  generator: tf.keras.Model
  discriminator: tf.keras.Model  # never released; kept for the membership audit
  record: accounting.PrivacyRecord
  config: gan.GanConfig  # as trained, with the noise multiplier that was used
  positive_rate: float  # DP estimate of the training label rate


def train_gan(inputs: List[np.ndarray], labels: np.ndarray, spec: DatasetSpec,
              config: gan.GanConfig, budget: PrivacyBudget, seed: Optional[int] = None,
              max_rows_per_patient: int = 1, log: Callable[[str], None] = say,
              checkpoint: Optional[gan_checkpoint.CheckpointConfig] = None) -> TrainedGan:
  """DP training; refuses a plan over budget before any step. With `checkpoint`, saves
  the training state periodically and when interrupted, and resumes from the last
  checkpoint there (trainers/gan_checkpoint.py). Every draw (DP statistics, batches,
  noise) comes from `seed`, or, when it is None, from a secret seed drawn for the run and
  kept in the checkpoint directory for a resume (clinical_dp/secret_seed.py)."""
  num_examples = len(labels)
  count_noise = config.label_count_noise_multiplier

  def plan(trained_config):
    return plan_for(num_examples, trained_config, budget, max_rows_per_patient,
                    label_count_noise_multiplier=count_noise)

  # The batch first: the noise, the plan and the record follow the batch that runs.
  config = fit_to_data(config, num_examples, log)
  layout = PatientLayout.from_spec(spec)
  statistics = config.statistics(num_examples)
  config = dataclasses.replace(config, statistics_bins=statistics.bins)  # as recorded
  codes = dp_statistics.CodeLayout.from_layout(layout, statistics.bins)
  if not codes.numeric:  # nothing to bin: the scales' share goes to the other statistics
    config = dataclasses.replace(config, scale_weight=0.0)
    statistics = config.statistics(num_examples)
  if config.statistics_share and config.latent_dim < codes.num_codes:
    config = dataclasses.replace(config, latent_dim=codes.num_codes)
  # (marginals, correlation[, binning scales]) noise multipliers; () for a config that
  # releases no statistics
  noise = statistics_noise(config, budget, max_rows_per_patient)
  config = with_noise_for_budget(config, plan(config), budget)
  record = accounting.check_budget(plan(config), budget.target_epsilon)
  log(f"  DP AC-GAN: {num_examples} rows, {record.steps} steps of batch {config.batch_size}, "
      f"noise multiplier {config.noise_multiplier:.3f}, clip {config.l2_norm_clip:g}; "
      f"planned epsilon {record.epsilon:.3f} at delta {budget.delta:g} ({record.unit})")
  resumable = config.dp_method in gan.RESUMABLE_DP_METHODS
  checkpoint = checkpoint if checkpoint is not None and checkpoint.directory else None
  run_fingerprint = gan_checkpoint.fingerprint(
      [*inputs, labels], config=dataclasses.asdict(config), budget=dataclasses.asdict(budget),
      seed=secret_seed.recorded(seed), max_rows_per_patient=max_rows_per_patient)
  seed = gan_checkpoint.run_seed(checkpoint if resumable else None, run_fingerprint, seed)
  seed_global_generators(seed)
  rng = np.random.default_rng(seed)
  positive_rate = dp_positive_rate(labels, count_noise, rng)
  copula = None
  if noise:
    copula = dp_statistics.release(features.flatten_inputs(inputs), labels, codes,
                                   statistics, noise, rng)
    correlations = "a normal-score correlation per class" if statistics.by_class and not \
        statistics.pooled_correlation else "one normal-score correlation"
    log(f"  DP AC-GAN: released DP marginals per label class ({codes.num_codes} columns, noise "
        f"multiplier {noise[0]:.2f}) and {correlations} (noise multiplier {noise[1]:.2f})"
        + (f", on binning scales from DP CDFs of the numeric columns (noise multiplier "
           f"{noise[2]:.2f})" if len(noise) > 2 else "")
        + "; the generator starts as their copula")
  randomness = gan.TrainingRandomness.from_seed(seed)
  generator = gan.build_generator(layout, config, copula)
  discriminator = gan.build_discriminator(layout, config, dropout_rng=randomness.dropout)
  training_plan = plan(config)
  if batch1_dp.applies(config, training_plan):  # paper mode: many steps per call
    loop = batch1_dp.Batch1Training(discriminator, generator, config, inputs, labels,
                                    noise_seed=seed, latent_rng=randomness.latent)
    d_optimizer, g_optimizer = loop.d_optimizer.adam, loop.g_optimizer
    steps_from = lambda done: _batch1_steps(loop, training_plan, rng, done, record.steps)
  else:
    d_optimizer = gan.dp_discriminator_optimizer(
        config, noise_rng=randomness.noise if resumable else None,
        expected_batch_size=training_plan.expected_batch_size)
    g_optimizer = gan.generator_optimizer(config)
    steps_from = lambda done: _per_step(
        discriminator, generator, d_optimizer, g_optimizer, config, randomness.latent, inputs,
        labels, training_plan, rng, done, record.steps)
  checkpoints = None
  if checkpoint is not None:
    checkpoints = _open_checkpoints(
        checkpoint, config, resumable, run_fingerprint,
        gan_checkpoint.statistics_fingerprint(positive_rate, copula), record.steps,
        {"generator": generator, "discriminator": discriminator,
         "discriminator_optimizer": d_optimizer, "generator_optimizer": g_optimizer,
         **randomness.checkpoint_objects()}, log)
  steps_done = checkpoints.restore(rng) if checkpoints is not None else 0
  progress = TrainingProgress("DP AC-GAN", num_examples, config.batch_size, config.epochs,
                              record.steps, training_plan, log, first_step=steps_done)
  # A checkpoint must hold the state after exactly `steps_done` steps: SIGTERM and Ctrl-C
  # take effect where the state is settled (DeferredInterrupts: after a step, or after the
  # batch-1 loop's call of many steps), and any other exception before that (batch drawn,
  # or one network updated) saves nothing: the last checkpoint stands.
  inside_step = True
  try:
    with gan_checkpoint.DeferredInterrupts() as interrupts:
      for step, losses, settled in steps_from(steps_done):
        if settled:
          steps_done, inside_step = step, False
        if losses is not None:
          progress.after(step, **losses)
        if not settled:
          continue
        if interrupts.pending is not None:
          _save_interrupted(checkpoints, steps_done, record.steps, rng,
                            signal.Signals(interrupts.pending).name, log)
          interrupts.deliver()
        if checkpoints is not None and checkpoints.due():
          checkpoints.save(steps_done, rng, "periodic")
        inside_step = True
      inside_step = False
  except BaseException as e:  # Ctrl-C, SIGTERM, a crash: keep what is done
    if not inside_step:
      _save_interrupted(checkpoints, steps_done, record.steps, rng, type(e).__name__, log)
    raise
  if checkpoints is not None:
    checkpoints.save(steps_done, rng, "finished")
  return TrainedGan(generator, discriminator, record, config, positive_rate)


def _per_step(discriminator, generator, d_optimizer, g_optimizer, config: gan.GanConfig,
              latent_rng: tf.random.Generator, inputs: List[np.ndarray], labels: np.ndarray,
              plan: accounting.PrivacyPlan, rng: np.random.Generator, steps_done: int,
              total_steps: int) -> Iterator[Tuple[int, Optional[dict], bool]]:
  """One step per call from step steps_done + 1 on; yields (step, its losses or None for
  an empty batch, True: the state is settled after every step)."""
  # autograph=False: the steps have no tensor-dependent Python control flow, and
  # autograph's conversion of every Keras and TF Privacy function they call took most of
  # a small run (about 40 to 90 s of tracing on 2 shared cores); the graph is the same.
  # Poisson batches vary in size: one trace, for any batch ([None] from the start).
  d_step = tf.function(lambda real, y, weights: gan.discriminator_dp_step(
      discriminator, generator, d_optimizer, real, y, config.latent_dim,
      latent_rng=latent_rng, weights=weights),
                       autograph=False, input_signature=[
                           [tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype))
                            for x in inputs],
                           tf.TensorSpec([None, *labels.shape[1:]], tf.as_dtype(labels.dtype)),
                           tf.TensorSpec([None], tf.float32)])
  g_step = tf.function(lambda: gan.generator_step(
      generator, discriminator, g_optimizer, config.batch_size, config.latent_dim,
      latent_rng=latent_rng),
                       autograph=False)
  for step in range(steps_done + 1, total_steps + 1):
    # An empty Poisson batch still takes its noisy step (padded_batch: one row of weight 0).
    index, weights = padded_batch(step_batch(plan, rng))
    d_loss = d_step([tf.constant(x[index]) for x in inputs], tf.constant(labels[index]),
                    tf.constant(weights))
    for _ in range(config.generator_steps):  # free in privacy: no real data involved
      g_loss = g_step()
    yield step, {"d_loss": d_loss, "g_loss": g_loss}, True


def _batch1_steps(loop: batch1_dp.Batch1Training, plan: accounting.PrivacyPlan,
                  rng: np.random.Generator, steps_done: int, total_steps: int
                  ) -> Iterator[Tuple[int, Optional[dict], bool]]:
  """The batch-1 loop from step steps_done + 1 on, on the plan's Poisson batches (an
  empty one included: it still takes its noisy step); the state is settled (and the
  batch generator has drawn exactly the steps taken) after the last step of each call.
  An empty batch has no discriminator loss to report; its step yields the generator's."""
  batches = (step_batch(plan, rng) for _ in range(steps_done + 1, total_steps + 1))
  for step, d_loss, g_loss, settled in loop.run(batches, first_step=steps_done + 1):
    losses = {"g_loss": g_loss} if d_loss is None else {"d_loss": d_loss, "g_loss": g_loss}
    yield step, losses, settled


def _open_checkpoints(checkpoint: gan_checkpoint.CheckpointConfig, config: gan.GanConfig,
                      resumable: bool, run_fingerprint: str, released: str, total_steps: int,
                      objects: dict, log: Callable[[str], None]
                      ) -> Optional[gan_checkpoint.GanCheckpoints]:
  """The run's checkpoints, or None for a dp_method whose noise cannot be resumed."""
  if not resumable:
    log(f"  DP AC-GAN: no checkpoints: dp_method {config.dp_method!r} draws its noise "
        f"inside TF Privacy, where a resumed run could not continue it (use one of "
        f"{gan.RESUMABLE_DP_METHODS})")
    return None
  if hasattr(objects["generator_optimizer"], "build"):  # legacy Adam: slots restored later
    objects["generator_optimizer"].build(objects["generator"].trainable_variables)
  checkpoints = gan_checkpoint.GanCheckpoints(checkpoint, run_fingerprint, released,
                                              total_steps, objects, log)
  if gan_checkpoint.read_progress(checkpoints.directory) is None:
    log(f"  DP AC-GAN: checkpoints every {checkpoint.every_seconds:g} s and on interruption "
        f"in {checkpoints.directory}")
  return checkpoints


def _save_interrupted(checkpoints: Optional[gan_checkpoint.GanCheckpoints], steps_done: int,
                      total_steps: int, rng: np.random.Generator, cause: str,
                      log: Callable[[str], None]) -> None:
  if checkpoints is None or checkpoints.saved_steps == steps_done:
    return
  checkpoints.save(steps_done, rng, f"interrupted: {cause}")
  log(f"  DP AC-GAN: stopped after step {steps_done} of {total_steps} ({cause}); checkpoint "
      f"saved in {checkpoints.directory}")
