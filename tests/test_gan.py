"""The DP AC-GAN's models and steps; a positive control that DP noise is really applied."""

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats
import tensorflow as tf

from clinical_dp.simulators import simulate
from trainers import gan

SPRINT_SPEC = simulate("sprint", patients=20)[1]
ICU_SPEC = simulate("icu", patients=20)[1]
SMALL = gan.GanConfig(latent_dim=8, generator_units=16, generator_filters=8,
                      discriminator_filters=4, discriminator_units=16, batch_size=8,
                      noise_multiplier=1.1)


def _real_batch(layout, batch_size, seed=0):
  rng = np.random.default_rng(seed)
  real = []
  if layout.has_series:
    real.append(tf.constant(rng.random((batch_size, layout.num_visits, layout.num_series)),
                            tf.float32))
  if layout.has_static:
    real.append(tf.constant(rng.random((batch_size, layout.static_width)), tf.float32))
  labels = tf.constant(rng.integers(0, 2, (batch_size, 1)), tf.int32)
  return real, labels


@pytest.mark.parametrize("spec", [SPRINT_SPEC, ICU_SPEC], ids=["sprint", "icu"])
def test_generator_emits_the_spec_layout_on_the_unit_scale(spec):
  layout = gan.PatientLayout.from_spec(spec)
  generator = gan.build_generator(layout, SMALL)
  fake, labels = gan.sample_fake(generator, 5, SMALL.latent_dim)
  expected = ([(5, layout.num_visits, layout.num_series)] if layout.has_series else []) + \
      [(5, layout.static_width)]
  assert [tuple(f.shape) for f in fake] == expected
  for tensor in fake:
    assert float(tf.reduce_min(tensor)) >= 0.0 and float(tf.reduce_max(tensor)) <= 1.0
  start = len(layout.numeric_static)
  for name, size in layout.categorical_static:  # each categorical block is a distribution
    sums = tf.reduce_sum(fake[-1][:, start:start + size], axis=1).numpy()
    if name in layout.nullable_static:  # ... or all zeros where its indicator says missing
      assert np.all(np.isclose(sums, 1.0, rtol=1e-5) | (sums == 0.0)), (name, sums)
    else:
      np.testing.assert_allclose(sums, 1.0, rtol=1e-5)
    start += size


def test_training_steps_update_both_networks():
  layout = gan.PatientLayout.from_spec(SPRINT_SPEC)
  generator = gan.build_generator(layout, SMALL)
  discriminator = gan.build_discriminator(layout, SMALL)
  d_before = [w.numpy().copy() for w in discriminator.trainable_variables]
  g_before = [w.numpy().copy() for w in generator.trainable_variables]
  real, labels = _real_batch(layout, SMALL.batch_size)
  d_loss = gan.discriminator_dp_step(discriminator, generator,
                                     gan.dp_discriminator_optimizer(SMALL), real, labels,
                                     SMALL.latent_dim)
  g_loss = gan.generator_step(generator, discriminator, gan.generator_optimizer(SMALL),
                              SMALL.batch_size, SMALL.latent_dim)
  assert np.isfinite(float(d_loss)) and np.isfinite(float(g_loss))
  assert any(not np.allclose(a, b.numpy()) for a, b in
             zip(d_before, discriminator.trainable_variables))
  assert any(not np.allclose(a, b.numpy()) for a, b in
             zip(g_before, generator.trainable_variables))


def _dp_gradients(discriminator, config, real, labels, fake, fake_labels, noise_rng=None):
  optimizer = gan.dp_discriminator_optimizer(config, noise_rng=noise_rng)
  with tf.GradientTape(persistent=True) as tape:
    losses = gan.discriminator_example_losses(discriminator, real, labels, fake, fake_labels)
  pairs = optimizer._compute_gradients(  # pylint: disable=protected-access
      losses, discriminator.trainable_variables, tape=tape)
  return np.concatenate([g.numpy().ravel() for g, _ in pairs]), losses


@pytest.mark.parametrize("noise_from", ["tf_privacy", "generator"])
def test_dp_path_is_exact_without_noise_and_adds_the_expected_noise(noise_from):
  """Positive control. With no noise and a clip no gradient reaches, the DP gradient is the
  ordinary mean gradient; with noise multiplier s and clip C over a batch of B, it differs
  from that by Gaussian noise of standard deviation s * C / B per coordinate. The same
  with the noise drawn by TF Privacy's query or from a checkpointable generator
  (GeneratorGaussianSumQuery, what resumable training uses)."""
  tf.random.set_seed(0)
  noise_rng = tf.random.Generator.from_seed(0) if noise_from == "generator" else None
  # Wide enough (about 8k weights) that the sample deviation of the noise is within 2%.
  config = dataclasses.replace(SMALL, dropout=0.0, batch_size=16, discriminator_units=128)
  layout = gan.PatientLayout.from_spec(SPRINT_SPEC)
  discriminator = gan.build_discriminator(layout, config)
  generator = gan.build_generator(layout, config)
  real, labels = _real_batch(layout, config.batch_size)
  fake, fake_labels = gan.sample_fake(generator, config.batch_size, config.latent_dim)

  exact = dataclasses.replace(config, l2_norm_clip=1e6, noise_multiplier=0.0)
  dp_exact, losses = _dp_gradients(discriminator, exact, real, labels, fake, fake_labels)
  with tf.GradientTape() as tape:
    mean_loss = tf.reduce_mean(gan.discriminator_example_losses(
        discriminator, real, labels, fake, fake_labels))
  plain = np.concatenate([g.numpy().ravel() for g in
                          tape.gradient(mean_loss, discriminator.trainable_variables)])
  np.testing.assert_allclose(dp_exact, plain, rtol=1e-3, atol=1e-6)

  clip, sigma = 0.5, 2.0
  noisy = dataclasses.replace(config, l2_norm_clip=clip, noise_multiplier=sigma)
  clipped_only, _ = _dp_gradients(discriminator, dataclasses.replace(noisy, noise_multiplier=0.0),
                                  real, labels, fake, fake_labels)
  dp_noisy, _ = _dp_gradients(discriminator, noisy, real, labels, fake, fake_labels,
                              noise_rng=noise_rng)
  expected_sd = sigma * clip / config.batch_size
  assert np.std(dp_noisy - clipped_only) == pytest.approx(expected_sd, rel=0.05)
  # Clipping really bounds the sum: the noiseless clipped mean has norm <= C.
  assert np.linalg.norm(clipped_only) <= clip + 1e-5


def _tiny_training(tmp_path, epochs=2, budget=None, noise_multiplier=3.0, **overrides):
  from clinical_dp.validation import validate_table
  from clinical_dp.simulators import write_simulated
  from trainers import dp_training, features, gan_trainer
  data, spec_path = write_simulated(str(tmp_path), *simulate("sprint", patients=300, seed=1))
  table = validate_table(data, SPRINT_SPEC).table
  inputs, labels = features.encode_table(table, SPRINT_SPEC)
  config = dataclasses.replace(SMALL, epochs=epochs, batch_size=32,
                               noise_multiplier=noise_multiplier, **overrides)
  logs = []
  trained = gan_trainer.train_gan(
      inputs, labels, SPRINT_SPEC, config, budget or dp_training.PrivacyBudget(10.0, 1e-5),
      seed=0, log=logs.append)
  return trained, logs, labels


def test_training_reports_progress_and_a_privacy_record_within_budget(tmp_path):
  trained, logs, labels = _tiny_training(tmp_path)
  record = trained.record
  assert record.sampling == "poisson" and record.accountant == "rdp"
  assert record.num_examples == len(labels)
  assert record.steps == int(np.ceil(2 * len(labels) / 32))
  assert 0 < record.epsilon <= 10.0
  assert record.label_count_noise_multiplier == SMALL.label_count_noise_multiplier
  assert any("epoch 2/2" in line and "epsilon so far" in line for line in logs)
  # The released label rate is a noisy count: near the truth, not equal to it.
  assert abs(trained.positive_rate - labels.mean()) < 0.2
  assert trained.positive_rate != labels.mean()


def test_noise_is_solved_for_the_budget_when_not_configured(tmp_path):
  from trainers import dp_training
  trained, logs, _ = _tiny_training(tmp_path, epochs=1, noise_multiplier=None,
                                    budget=dp_training.PrivacyBudget(2.0, 1e-5))
  assert trained.config.noise_multiplier > 0
  assert f"noise multiplier {trained.config.noise_multiplier:.3f}" in logs[0]
  assert 1.9 < trained.record.epsilon <= 2.0


def test_plan_over_budget_is_refused_before_training(tmp_path):
  from trainers import accounting, dp_training
  with pytest.raises(accounting.BudgetExceededError, match="raise noise_multiplier"):
    _tiny_training(tmp_path, epochs=2, budget=dp_training.PrivacyBudget(0.5, 1e-5))


def test_synthetic_data_is_generated_and_published_block_by_block(tmp_path, monkeypatch):
  from clinical_dp.validation import InvalidInputError, validate_table
  from components import synthetic_data
  from trainers import gan_export
  trained, _, _ = _tiny_training(tmp_path, epochs=1)
  export_dir = gan_export.export_generator(trained.generator, SPRINT_SPEC,
                                           trained.config.latent_dim, str(tmp_path / "generator"))
  monkeypatch.setattr(synthetic_data, "BLOCK_PATIENTS", 7)
  blocks = list(synthetic_data.synthetic_blocks(export_dir, SPRINT_SPEC, 20, 0.5))
  assert [len(block) for block in blocks] == [7, 7, 6]
  assert pd.concat(blocks)["patient_id"].tolist() == [f"synthetic-{i:06d}" for i in range(1, 21)]
  assert set(pd.concat(blocks)["site"]) == {"synthetic"}
  published = str(tmp_path / "out" / "synthetic.csv")
  synthetic_data.write_checked_csv(iter(blocks), SPRINT_SPEC, published)
  checked = validate_table(published, SPRINT_SPEC)
  assert checked.ok and checked.rows == 20
  assert checked.table["patient_id"].tolist() == pd.concat(blocks)["patient_id"].tolist()
  # A block that breaks the spec: nothing is published, the file before stays as it was.
  before = open(published, encoding="utf-8").read()
  broken = blocks[2].assign(age=500)
  with pytest.raises(InvalidInputError, match="age"):
    synthetic_data.write_checked_csv(iter([blocks[0], broken]), SPRINT_SPEC, published)
  assert open(published, encoding="utf-8").read() == before
  assert os.listdir(tmp_path / "out") == ["synthetic.csv"]


def test_exported_generator_returns_patients_in_clinical_units(tmp_path):
  from trainers import gan_export
  trained, _, _ = _tiny_training(tmp_path, epochs=1)
  export_dir = gan_export.export_generator(trained.generator, SPRINT_SPEC,
                                           trained.config.latent_dim, str(tmp_path / "generator"))
  frame = gan_export.generate_table(export_dir, SPRINT_SPEC, 200, positive_rate=0.5)
  assert list(frame.columns) == [SPRINT_SPEC.label_column] + SPRINT_SPEC.feature_columns
  assert len(frame) == 200 and set(frame["intensive"]) <= {0, 1}
  assert 0.35 < frame["intensive"].mean() < 0.65
  for feature in SPRINT_SPEC.static:  # holes are empty cells (the spec models them)
    if feature.is_categorical:
      assert set(frame[feature.name].dropna()) <= set(feature.values)
    else:
      assert frame[feature.name].dropna().between(feature.min, feature.max).all()
  for series in SPRINT_SPEC.series:
    values = frame[list(series.columns)].astype(float)
    observed = values.notna()
    assert (values.ge(series.min) | ~observed).all().all()
    assert (values.le(series.max) | ~observed).all().all()
    # monotone: once a visit is empty, every later one is
    assert not (observed.to_numpy()[:, 1:] & ~observed.to_numpy()[:, :-1]).any()
    if series.integer:
      kept = values.to_numpy()[observed.to_numpy()]
      assert (kept == np.round(kept)).all()
  assert "patient_id" not in frame.columns


def test_the_record_counts_every_statistic_the_generator_releases(tmp_path):
  """The copula's marginals, correlation and binning scales are charged with the DP steps
  and the label count: the record names their noise, and leaving any of them out spends
  less."""
  from trainers import accounting, dp_training
  budget = dp_training.PrivacyBudget(10.0, 1e-5)
  trained, logs, labels = _tiny_training(tmp_path, epochs=1, budget=budget)
  record = trained.record
  released = dp_training.statistics_noise(trained.config, budget)
  assert len(released) == 3 and record.released_noise_multipliers == released
  assert trained.config.correlation_by_class is False  # the default: pooled
  assert any("released DP marginals" in line for line in logs)
  plan = dp_training.plan_for(len(labels), trained.config, budget,
                              label_count_noise_multiplier=SMALL.label_count_noise_multiplier)
  assert accounting.compute_epsilon(plan).epsilon == pytest.approx(record.epsilon)
  for fewer in (released[:1], released[1:], released[:2], ()):
    partial = dataclasses.replace(plan, released_noise_multipliers=fewer)
    assert accounting.compute_epsilon(partial).epsilon < record.epsilon - 0.05
  no_steps = dataclasses.replace(plan, epochs=0)  # the statistics alone spend their share
  assert 0 < accounting.compute_epsilon(no_steps).epsilon < record.epsilon


def test_class_correlations_are_pooled_where_the_noise_explains_their_difference():
  """shrunk_class_correlations: classes with one correlation and noisy moments get the
  pooled correlation; classes whose correlations differ far beyond the noise keep their
  own (a pair correlated +0.7 in one class and -0.7 in the other)."""
  from trainers import dp_statistics
  rng = np.random.default_rng(0)

  def moment(rho, rows, noise):
    scores = rng.multivariate_normal(np.zeros(3), [[1, rho, 0], [rho, 1, 0], [0, 0, 1]], rows)
    return scores.T @ scores + noise * rng.normal(size=(3, 3))

  same = dp_statistics.shrunk_class_correlations([moment(0.3, 400, 40.0),
                                                  moment(0.3, 300, 40.0)], 40.0)
  np.testing.assert_allclose(same[0], same[1], atol=1e-12)
  apart = dp_statistics.shrunk_class_correlations([moment(0.7, 4000, 5.0),
                                                   moment(-0.7, 3000, 5.0)], 5.0)
  assert apart[0][0, 1] > 0.6 and apart[1][0, 1] < -0.6
  assert abs(apart[0][0, 2]) < 0.1 and abs(apart[1][0, 2]) < 0.1


def test_the_correlation_sensitivity_bounds_every_row_and_is_reached():
  """The correlation's noise is scaled by correlation_sensitivity(c): the L2 norm of one
  row's released upper triangle (diagonal included) never exceeds it for rows of norm <= 1
  with coordinates in [-c, c], and rows that put their mass on as few coordinates as the
  clip allows come close; without the coordinate clip one coordinate reaches 1."""
  from trainers import dp_statistics
  rng = np.random.default_rng(0)

  def upper_norm(x):
    return np.linalg.norm((np.outer(x, x))[np.triu_indices(len(x))])

  for c in (0.35, 0.5, 1.0):
    bound = dp_statistics.correlation_sensitivity(c)
    rows = rng.standard_normal((2000, 43)) * rng.random((2000, 1)) ** 3 * 4
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1.0)
    rows = np.clip(rows, -c, c)
    assert max(upper_norm(x) for x in rows) <= bound + 1e-12
    k = int(np.floor(1 / c ** 2))  # k coordinates at c and the rest of the unit norm
    peaked = np.zeros(43)
    peaked[:k] = c
    peaked[k] = np.sqrt(max(1 - k * c ** 2, 0.0))
    assert bound - 0.03 <= upper_norm(peaked) <= bound + 1e-12
  assert upper_norm(np.eye(43)[0]) == pytest.approx(1.0)
  assert dp_statistics.correlation_sensitivity(0.35) < 0.75


def test_visit_smoothing_averages_a_plateau_and_keeps_a_moving_series():
  """smooth_visits: on a plateau (every visit the same histogram) the noisy histograms move
  towards the truth; on a series whose visits move far beyond the noise they stay put
  (a control that the shrinkage is not a plain average); codes outside series are
  untouched."""
  from trainers import dp_statistics
  rng = np.random.default_rng(0)
  layout = dp_statistics.CodeLayout(numeric=25, categories=(3,), bins=12, num_series=2,
                                    num_visits=12)
  plateau = np.exp(-0.5 * ((np.arange(12) - 5.5) / 2.0) ** 2)
  plateau /= plateau.sum()
  moving = [np.roll(plateau, visit - 6) for visit in range(12)]  # one bin a visit
  truth = [None] * 25 + [np.full(3, 1 / 3)]
  for visit in range(12):
    truth[visit * 2], truth[visit * 2 + 1] = plateau, moving[visit]
  truth[24] = plateau
  noise = 0.01
  noisy = [np.clip(p + rng.normal(0, noise, len(p)), 0, None) for p in truth]
  noisy = [p / p.sum() for p in noisy]
  smoothed = dp_statistics.smooth_visits(noisy, layout, noise)

  def error(histograms, codes):
    return np.mean([np.abs(histograms[c] - truth[c]).sum() for c in codes])

  assert error(smoothed, layout.visits_of(0)) < 0.75 * error(noisy, layout.visits_of(0))
  assert error(smoothed, layout.visits_of(1)) < 1.05 * error(noisy, layout.visits_of(1))

  np.testing.assert_allclose(smoothed[24], noisy[24])
  np.testing.assert_allclose(smoothed[25], noisy[25])


def _visit_correlation_truth(num_visits: int, jump: bool) -> np.ndarray:
  """A correlation over one series' visits (AR(1), 0.9 a visit) and two static codes: the
  first correlated 0.4 with every visit; the second 0.6 with visit 3 only when `jump`
  (a correlation that moves beyond any noise from one visit to the next), else 0.2 with
  every visit."""
  visits = np.arange(num_visits)
  truth = np.eye(num_visits + 2)
  truth[:num_visits, :num_visits] = 0.9 ** np.abs(visits[:, None] - visits[None, :])
  truth[:num_visits, num_visits] = truth[num_visits, :num_visits] = 0.4
  second = np.where(visits == 3, 0.6, 0.0) if jump else np.full(num_visits, 0.2)
  truth[:num_visits, num_visits + 1] = truth[num_visits + 1, :num_visits] = second
  return truth


@pytest.mark.parametrize("jump", [False, True], ids=["smooth", "jump"])
def test_visit_correlation_smoothing_removes_noise_and_keeps_what_moves(jump):
  """smooth_visit_correlations: where a visit's correlations change slowly from visit to
  visit, the noisy moment moves towards the truth (over 20 noise draws); where one visit's
  correlation jumps far beyond the noise, that block stays near its own noisy values (a
  control that the shrinkage is not a plain average); the diagonal, the static codes'
  correlation with each other and symmetry are kept."""
  from trainers import dp_statistics
  num_visits, rows = 12, 2000
  layout = dp_statistics.CodeLayout(numeric=num_visits + 2, categories=(), bins=8,
                                    num_series=1, num_visits=num_visits)
  truth = _visit_correlation_truth(num_visits, jump) * rows  # a second moment of `rows`
  noise, rng = 40.0, np.random.default_rng(1)
  visit_entries = ~np.eye(len(truth), dtype=bool)
  visit_entries[num_visits:, num_visits:] = False
  raw_error, smoothed_error, jump_error = [], [], []
  for _ in range(20):
    upper = np.triu(rng.normal(0, noise, truth.shape))
    noisy = truth + upper + np.triu(upper, 1).T
    smoothed = dp_statistics.smooth_visit_correlations(noisy, layout, noise)
    np.testing.assert_allclose(smoothed, smoothed.T)
    np.testing.assert_allclose(np.diag(smoothed), np.diag(noisy))
    assert smoothed[num_visits, num_visits + 1] == pytest.approx(noisy[num_visits, num_visits + 1])
    raw_error.append(np.abs(noisy - truth)[visit_entries].mean())
    smoothed_error.append(np.abs(smoothed - truth)[visit_entries].mean())
    jump_error.append(abs(smoothed[3, num_visits + 1] - truth[3, num_visits + 1]))
  if jump:
    assert np.mean(jump_error) < 2 * noise  # kept: a plain average would miss by 0.3 x rows
  else:
    assert np.mean(smoothed_error) < 0.7 * np.mean(raw_error)
  without_series = dataclasses.replace(layout, num_series=0, num_visits=0)
  np.testing.assert_array_equal(
      dp_statistics.smooth_visit_correlations(noisy, without_series, noise), noisy)


@pytest.mark.parametrize("by_class, scales", [(False, False), (True, True)])
def test_the_copula_generator_samples_the_released_copula_before_any_step(tmp_path, by_class,
                                                                          scales):
  """Zero residual at the start: the Keras generator and DpCopula.sample draw the same
  distribution (with one pooled correlation and equal bins, and with one correlation per
  class on binning scales), inside the bounds, with one category per block; a positive
  control shows the comparison detects another correlation."""
  from clinical_dp.simulators import write_simulated
  from clinical_dp.validation import validate_table
  from trainers import dp_statistics, features
  rng = np.random.default_rng(0)
  layout = gan.PatientLayout.from_spec(SPRINT_SPEC)
  data, _ = write_simulated(str(tmp_path), *simulate("sprint", patients=2000, seed=3))
  inputs, labels = features.encode_table(validate_table(data, SPRINT_SPEC).table, SPRINT_SPEC)
  flat = features.flatten_inputs(inputs)
  config = gan.GanConfig(correlation_by_class=by_class)
  statistics = config.statistics(len(labels))
  codes = dp_statistics.CodeLayout.from_layout(layout, statistics.bins)
  copula = dp_statistics.release(flat, labels, codes, statistics,
                                 (1.0, 1.0, 1.0) if scales else (1.0, 1.0), rng)
  assert (copula.scales is not None) == scales
  assert len(copula.correlations) == 2 and (
      np.abs(copula.correlations[0] - copula.correlations[1]).max() > 0.05) == by_class
  config = dataclasses.replace(config, latent_dim=max(config.latent_dim, codes.num_codes))
  generator = gan.build_generator(layout, config, copula)
  tf.random.set_seed(0)
  fake, fake_labels = gan.sample_fake(generator, 4000, config.latent_dim)
  keras_flat = features.flatten_inputs([f.numpy() for f in fake])
  direct = copula.sample(fake_labels.numpy(), rng)
  assert keras_flat.min() >= 0 and keras_flat.max() <= 1
  width = layout.num_visits * layout.num_series + len(layout.numeric_static)
  holes = features.missing_cells(keras_flat, layout)  # a missing category is all zeros
  masked = sum(holes[name].numpy().astype(int) for name, _ in layout.categorical_static
               if name in layout.nullable_static)
  np.testing.assert_allclose(keras_flat[:, width:].sum(axis=1),
                             len(layout.categorical_static) - masked)
  def correlations(sample):
    return np.corrcoef(sample[:, :width], rowvar=False)[np.tril_indices(width, -1)]

  real = correlations(flat)
  np.testing.assert_allclose(keras_flat.mean(axis=0), direct.mean(axis=0), atol=0.04)
  assert np.abs(correlations(keras_flat) - correlations(direct)).max() < 0.1
  for sample in (keras_flat, direct):
    np.testing.assert_allclose(sample.mean(axis=0), flat.mean(axis=0), atol=0.05)
    assert stats.spearmanr(correlations(sample), real).statistic > 0.9
  independent = rng.permuted(keras_flat, axis=0)  # control: the structure removed
  assert stats.spearmanr(correlations(independent), real).statistic < 0.5
