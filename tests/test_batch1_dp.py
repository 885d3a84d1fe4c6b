"""Paper mode's batch-1 loop (trainers/batch1_dp.py): its DP steps on Poisson batches against
a reference and TF Privacy's DP Adam, its noise, its one trace."""

import dataclasses

import numpy as np
import pytest
from scipy import stats
import tensorflow as tf

from clinical_dp.simulators import simulate
from trainers import accounting, batch1_dp, gan
# After trainers: trainers.dp_training skips TF Privacy's package __init__ (TF Probability).
from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras

SPRINT_SPEC = simulate("sprint", patients=20)[1]
# Paper mode's algorithm on small networks; no dropout, so that two runs can agree.
PAPER_SMALL = dataclasses.replace(
    gan.paper_config(epochs=1), latent_dim=8, generator_units=16, generator_filters=8,
    discriminator_filters=4, discriminator_units=16, dropout=0.0)


def _rows(layout, count, seed=0):
  rng = np.random.default_rng(seed)
  inputs = [rng.random((count, layout.num_visits, layout.num_series)).astype(np.float32),
            rng.random((count, layout.static_width)).astype(np.float32)]
  return inputs, rng.integers(0, 2, (count, 1)).astype(np.int32)


def _fixed_partner(generator, batch_size, latent_dim, positive_rate=0.5, rng=None):
  """gan.sample_fake without its random draws: two runs see the same generated partner
  (the generator's own update is off in the test that uses it)."""
  del positive_rate, rng
  labels = tf.ones((batch_size, 1), tf.int32)
  fake = generator([tf.fill((batch_size, latent_dim), 0.3), labels], training=True)
  return (fake if isinstance(fake, list) else [fake]), labels


def test_the_loop_takes_the_dp_steps_of_poisson_batches_when_noise_is_off(monkeypatch):
  """Noise off, clip binding: after steps of 1, 0, 2 and 3 rows, the discriminator's
  weights are those of a reference that clips each row's gradient alone, sums them, and
  takes Adam's step on the sum / 1 (the expected batch), an empty step on a zero
  gradient. Its first step, of one row, is TF Privacy's DPKerasAdamOptimizer's own."""
  monkeypatch.setattr(gan, "sample_fake", _fixed_partner)
  config = dataclasses.replace(PAPER_SMALL, noise_multiplier=0.0, l2_norm_clip=0.05,
                               discriminator_learning_rate=1e-2, generator_learning_rate=0.0)
  layout = gan.PatientLayout.from_spec(SPRINT_SPEC)
  inputs, labels = _rows(layout, 12)
  order = [np.array(rows, np.int64) for rows in
           ([3], [], [7, 3], [0, 11, 5], [], [2], [6])]
  tf.random.set_seed(0)
  discriminator = gan.build_discriminator(layout, config)
  variables = discriminator.trainable_variables
  start = [v.numpy() for v in variables]
  generator = gan.build_generator(layout, config)

  def row_loss(i):
    fake, fake_labels = gan.sample_fake(generator, 1, config.latent_dim)
    return gan.discriminator_example_losses(discriminator, [x[i:i + 1] for x in inputs],
                                            labels[i:i + 1], fake, fake_labels)

  reference = dp_optimizer_keras.DPKerasAdamOptimizer(
      l2_norm_clip=config.l2_norm_clip, noise_multiplier=0.0, num_microbatches=None,
      learning_rate=config.discriminator_learning_rate, beta_1=config.beta_1)
  norms = []
  for step, rows in enumerate(order):
    row_gradients = []
    for i in rows:
      with tf.GradientTape() as tape:
        loss = row_loss(i)
      row_gradients.append(tape.gradient(loss, variables))
      norms.append(float(tf.linalg.global_norm(row_gradients[-1])))
    if step == 0:  # once: eager, TF Privacy's per-example gradients take seconds a step
      assert len(rows) == 1
      with tf.GradientTape(persistent=True) as tape:
        loss = row_loss(rows[0])
      reference.minimize(loss, variables, tape=tape)
    else:
      clipped_sum = [tf.zeros_like(v) for v in variables]
      for gradients in row_gradients:
        clipped, _ = tf.clip_by_global_norm(gradients, config.l2_norm_clip)
        clipped_sum = [s + c for s, c in zip(clipped_sum, clipped)]
      # The DP optimizer's own Adam (its state), on the clipped sum over 1 (TF Privacy's
      # step divides by the realized batch): Adam's apply_gradients, the class it
      # extends, as its own refuses gradients it did not compute.
      tf.keras.optimizers.legacy.Adam.apply_gradients(reference, zip(clipped_sum, variables))
  want = [v.numpy() for v in variables]
  assert min(norms) > config.l2_norm_clip  # every row was clipped

  for variable, value in zip(variables, start):
    variable.assign(value)
  loop = batch1_dp.Batch1Training(discriminator, generator, config, inputs, labels,
                                  noise_seed=0, settings=batch1_dp.Batch1Settings(
                                      steps_per_call=3))  # calls of 3, 3 and 1 steps
  taken = list(loop.run(order))
  assert [step for step, _, _, _ in taken] == [1, 2, 3, 4, 5, 6, 7]
  assert [settled for _, _, _, settled in taken] == [False, False, True] * 2 + [True]
  assert [d_loss is None for _, d_loss, _, _ in taken] == [len(r) == 0 for r in order]
  for got, expect, before in zip(variables, want, start):
    assert not np.allclose(got.numpy(), before)
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-4, atol=1e-6)


def test_one_trace_runs_batches_and_calls_of_any_size():
  """The loop's graph, traced on its first call, runs every later call: Poisson batches
  of any size and calls of any number of steps, without tracing again."""
  config = PAPER_SMALL
  layout = gan.PatientLayout.from_spec(SPRINT_SPEC)
  inputs, labels = _rows(layout, 12)
  loop = batch1_dp.Batch1Training(gan.build_discriminator(layout, config),
                                  gan.build_generator(layout, config), config, inputs, labels,
                                  noise_seed=0, settings=batch1_dp.Batch1Settings(
                                      steps_per_call=4))
  step = 1
  for batches in ([[1]], [[], [2, 5], [0, 1, 2, 3, 4, 5, 6, 7], []], [[], []],
                  [[9, 10, 11], [4]]):
    taken = list(loop.run([np.array(b, np.int64) for b in batches], first_step=step))
    assert [s for s, _, _, _ in taken] == list(range(step, step + len(batches)))
    assert all(np.isfinite(g) and (d is None) == (len(b) == 0)
               for (_, d, g, _), b in zip(taken, batches))
    step += len(batches)
    assert loop.tracing_count == 1  # and once only: Adam's variables exist before it
  with pytest.raises(ValueError, match="vector of row indices"):
    list(loop.run([np.array([[1, 2]])]))


def test_noise_is_gaussian_with_the_configured_scale():
  """Positive control: the gradient the loop hands Adam differs from the clipped gradient
  by N(0, (noise_multiplier x clip)^2) per coordinate; none when the noise is off."""
  config = dataclasses.replace(PAPER_SMALL, discriminator_units=256)  # about 10k weights
  layout = gan.PatientLayout.from_spec(SPRINT_SPEC)
  discriminator = gan.build_discriminator(layout, config)
  variables = discriminator.trainable_variables
  gradients = [tf.random.normal(v.shape, seed=i) for i, v in enumerate(variables)]
  clipped, _ = tf.clip_by_global_norm(gradients, config.l2_norm_clip)
  clean = np.concatenate([g.numpy().ravel() for g in clipped])

  def handed_to_adam(optimizer, noise):
    seen = []
    optimizer.adam.apply_gradients = lambda pairs: seen.extend(g for g, _ in pairs)
    optimizer.apply([gradients], variables, noise)
    return np.concatenate([g.numpy().ravel() for g in seen])

  optimizer = batch1_dp.Batch1DpAdam(config.l2_norm_clip, config.noise_multiplier,
                                     config.discriminator_learning_rate, config.beta_1)
  source = batch1_dp.StepNoise([v.shape for v in variables], seed=3,
                               stddev=optimizer.noise_stddev)
  silent = [tf.zeros_like(v) for v in variables]
  np.testing.assert_allclose(handed_to_adam(optimizer, silent), clean, rtol=1e-6)
  assert np.linalg.norm(clean) == pytest.approx(config.l2_norm_clip, rel=1e-5)

  sd = config.noise_multiplier * config.l2_norm_clip
  deltas = [handed_to_adam(optimizer, [tf.constant(z) for z in source.for_step(step)]) - clean
            for step in (1, 2)]
  for delta in deltas:
    assert np.std(delta) == pytest.approx(sd, rel=0.03)
    assert abs(np.mean(delta)) < 0.05 * sd
    assert stats.kstest(delta / sd, "norm").pvalue > 1e-3
  assert abs(np.corrcoef(deltas[0], deltas[1])[0, 1]) < 0.05  # steps draw afresh


def test_step_noise_is_a_function_of_seed_and_step():
  shapes = [(40, 30), (30,), (7,)]
  source = batch1_dp.StepNoise(shapes, seed=5, stddev=2.0)
  block = source.block(10, 3)
  assert block.shape == (3, source.row_size) and block.ctypes.data % 64 == 0
  again = batch1_dp.StepNoise(shapes, seed=5, stddev=2.0)
  for row, step in enumerate((10, 11, 12)):  # any order, any grouping: the same draws
    for start, size, part in zip(source.offsets, source.sizes, again.for_step(step)):
      np.testing.assert_array_equal(block[row, start:start + size], part.ravel())
  other_seed = batch1_dp.StepNoise(shapes, seed=6, stddev=2.0).for_step(10)
  assert not np.allclose(other_seed[0], again.for_step(10)[0])
  assert all(start % 16 == 0 for start in source.offsets)  # 64-byte aligned segments
  draws = np.concatenate([source.block(0, 40).ravel()])
  assert np.std(draws) == pytest.approx(2.0, rel=0.02) and abs(stats.kurtosis(draws)) < 0.05


def test_the_loop_runs_for_poisson_batches_of_expected_size_one_only():
  plan = accounting.PrivacyPlan(num_examples=100, batch_size=1, noise_multiplier=1.0,
                                epochs=1, delta=1e-5, sampling="poisson")
  assert batch1_dp.applies(gan.paper_config(), plan)
  assert not batch1_dp.applies(dataclasses.replace(gan.paper_config(), dp_method="tf_privacy"),
                               plan)
  assert not batch1_dp.applies(gan.paper_config(), dataclasses.replace(plan, sampling="fixed"))
  assert not batch1_dp.applies(gan.paper_config(), dataclasses.replace(plan, batch_size=4))


def test_paper_mode_training_runs_the_batch1_loop(tmp_path):
  """train_gan in paper mode: every planned step taken, with progress and a record."""
  from clinical_dp.simulators import write_simulated
  from clinical_dp.validation import validate_table
  from trainers import dp_training, features, gan_trainer
  data, _ = write_simulated(str(tmp_path), *simulate("sprint", patients=120, seed=1))
  inputs, labels = features.encode_table(validate_table(data, SPRINT_SPEC).table, SPRINT_SPEC)
  logs = []
  budget = dp_training.PrivacyBudget(10.0, 1e-5)
  assert batch1_dp.applies(PAPER_SMALL, dp_training.plan_for(len(labels), PAPER_SMALL, budget))
  trained = gan_trainer.train_gan(inputs, labels, SPRINT_SPEC, PAPER_SMALL, budget, seed=0,
                                  log=logs.append)
  assert trained.record.steps == len(labels) and trained.record.batch_size == 1
  assert any("epoch 1/1" in line and "steps/s" in line for line in logs)
  fake, _ = gan.sample_fake(trained.generator, 4, PAPER_SMALL.latent_dim)
  assert all(np.isfinite(f.numpy()).all() for f in fake)
