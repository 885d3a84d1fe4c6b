"""One-pass per-example clipping (trainers/dp_clipping.py) against a per-example loop."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from clinical_dp.simulators import simulate
from trainers import dp_clipping, gan

SPRINT_SPEC = simulate("sprint", patients=20)[1]
ICU_SPEC = simulate("icu", patients=20)[1]
# As tests/test_gan.py's SMALL, without dropout so that a loop can reproduce the pass.
SMALL = gan.GanConfig(latent_dim=8, generator_units=16, generator_filters=8,
                      discriminator_filters=4, discriminator_units=16, batch_size=8,
                      noise_multiplier=1.1, dropout=0.0)


def _batch(spec, config, seed=0):
  """A discriminator, real patients with labels, and generated patients with labels."""
  tf.random.set_seed(seed)
  layout = gan.PatientLayout.from_spec(spec)
  discriminator = gan.build_discriminator(layout, config)
  generator = gan.build_generator(layout, config)
  rng = np.random.default_rng(seed)
  real = []
  if layout.has_series:
    real.append(tf.constant(rng.random((config.batch_size, layout.num_visits,
                                        layout.num_series)), tf.float32))
  real.append(tf.constant(rng.random((config.batch_size, layout.static_width)), tf.float32))
  labels = tf.constant(rng.integers(0, 2, (config.batch_size, 1)), tf.int32)
  fake, fake_labels = gan.sample_fake(generator, config.batch_size, config.latent_dim)
  return discriminator, real, labels, fake, fake_labels


def _loop_reference(discriminator, real, labels, fake, fake_labels, clip):
  """Example by example with tf.GradientTape: the gradient of real i's loss plus its
  generated partner's, clipped over all weights together, then summed."""
  total, norms = None, []
  for i in range(int(labels.shape[0])):
    with tf.GradientTape() as tape:
      loss = gan.discriminator_example_losses(
          discriminator, [x[i:i + 1] for x in real], labels[i:i + 1],
          [x[i:i + 1] for x in fake], fake_labels[i:i + 1])
    grads = tape.gradient(loss, discriminator.trainable_variables)
    norm = float(tf.linalg.global_norm(grads))
    norms.append(norm)
    clipped = [g.numpy() * min(1.0, clip / norm) for g in grads]
    total = clipped if total is None else [t + c for t, c in zip(total, clipped)]
  return total, np.array(norms)


def _fast(discriminator, real, labels, fake, fake_labels, clip):
  return dp_clipping.clipped_gradient_sum(
      discriminator, [real, fake],
      lambda outputs: gan.ac_gan_example_losses(*outputs, labels, fake_labels), clip)


@pytest.mark.parametrize("spec", [SPRINT_SPEC, ICU_SPEC], ids=["sprint", "icu"])
def test_clipped_sum_equals_a_per_example_loop_with_clipping_active(spec):
  discriminator, real, labels, fake, fake_labels = _batch(spec, SMALL)
  _, norms = _loop_reference(discriminator, real, labels, fake, fake_labels, clip=np.inf)
  clip = float(np.median(norms))  # about half the examples are clipped
  expected, _ = _loop_reference(discriminator, real, labels, fake, fake_labels, clip)

  sums, losses, fast_norms = _fast(discriminator, real, labels, fake, fake_labels, clip)
  np.testing.assert_allclose(fast_norms.numpy(), norms, rtol=1e-4)
  assert 0 < np.sum(norms > clip) < len(norms)  # clipping is active, and not for all
  assert len(sums) == len(discriminator.trainable_variables)
  for got, want, variable in zip(sums, expected, discriminator.trainable_variables):
    assert got.shape == variable.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6, err_msg=variable.name)
  np.testing.assert_allclose(losses.numpy(), gan.discriminator_example_losses(
      discriminator, real, labels, fake, fake_labels).numpy(), rtol=1e-5)


def test_cross_term_of_the_pair_is_in_the_norm():
  """Summing the squared norms of the real and the generated contribution would be wrong:
  the norm is of their sum, so it differs from sqrt(|g_real|^2 + |g_fake|^2)."""
  discriminator, real, labels, fake, fake_labels = _batch(SPRINT_SPEC, SMALL)
  _, _, fast_norms = _fast(discriminator, real, labels, fake, fake_labels, 1e6)
  with tf.GradientTape(persistent=True) as tape:
    real_outputs = discriminator([x[:1] for x in real], training=True)
    fake_outputs = discriminator([x[:1] for x in fake], training=True)
    real_loss = gan.ac_gan_example_losses(
        real_outputs, [tf.zeros_like(o) for o in fake_outputs], labels[:1], fake_labels[:1])
    fake_loss = gan.ac_gan_example_losses(
        [tf.zeros_like(o) for o in real_outputs], fake_outputs, labels[:1], fake_labels[:1])
  per_call = [tf.linalg.global_norm(tape.gradient(l, discriminator.trainable_variables))
              for l in (real_loss, fake_loss)]
  separate = float(tf.sqrt(per_call[0] ** 2 + per_call[1] ** 2))
  assert abs(float(fast_norms[0]) - separate) > 1e-3 * separate


def test_noise_has_the_expected_scale():
  """Positive control: noise multiplier s and clip C over a batch of B add Gaussian noise of
  standard deviation s * C / B per coordinate to the clipped mean; none when s is 0."""
  config = dataclasses.replace(gan.GanConfig(), batch_size=16, dropout=0.0)  # ~15k weights
  discriminator, real, labels, fake, fake_labels = _batch(SPRINT_SPEC, config)
  clip, sigma = 0.5, 2.0
  sums, losses, _ = _fast(discriminator, real, labels, fake, fake_labels, clip)
  clean = np.concatenate([s.numpy().ravel() for s in sums]) / config.batch_size

  quiet = dp_clipping.FastDPKerasAdamOptimizer(clip, 0.0)
  silent = np.concatenate([g.numpy().ravel() for g in quiet.noised_mean(sums, 16)])
  np.testing.assert_allclose(silent, clean, rtol=1e-6)

  noisy = dp_clipping.FastDPKerasAdamOptimizer(clip, sigma)
  noised = np.concatenate([g.numpy().ravel() for g in noisy.noised_mean(sums, 16)])
  assert np.std(noised - clean) == pytest.approx(sigma * clip / config.batch_size, rel=0.03)
  assert abs(np.mean(noised - clean)) < 0.05 * sigma * clip / config.batch_size
  assert np.linalg.norm(clean) <= clip + 1e-6  # the clipped mean is within the clip


def test_fast_step_is_adam_on_the_clipped_mean():
  """End to end without noise: the fast optimizer's update is Adam (the config's learning
  rate and beta_1) on the loop's clipped mean gradient."""
  config = dataclasses.replace(SMALL, noise_multiplier=0.0, l2_norm_clip=0.05,
                               discriminator_learning_rate=1e-2)
  discriminator, real, labels, fake, fake_labels = _batch(SPRINT_SPEC, config)
  start = [v.numpy() for v in discriminator.trainable_variables]
  expected, _ = _loop_reference(discriminator, real, labels, fake, fake_labels,
                                config.l2_norm_clip)
  adam = tf.keras.optimizers.legacy.Adam(config.discriminator_learning_rate,
                                         beta_1=config.beta_1)
  adam.apply_gradients(zip([tf.constant(g / config.batch_size) for g in expected],
                           discriminator.trainable_variables))
  want = [v.numpy() for v in discriminator.trainable_variables]
  for variable, value in zip(discriminator.trainable_variables, start):
    variable.assign(value)

  optimizer = gan.dp_discriminator_optimizer(config)
  assert isinstance(optimizer, dp_clipping.FastDPKerasAdamOptimizer)
  optimizer.minimize_examples(
      discriminator, [real, fake],
      lambda outputs: gan.ac_gan_example_losses(*outputs, labels, fake_labels))
  for got, expect, variable in zip(discriminator.trainable_variables, want, start):
    assert not np.allclose(got.numpy(), variable)
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-4, atol=1e-6)


def test_unsupported_layers_are_refused():
  inputs = tf.keras.Input((4,))
  x = tf.keras.layers.BatchNormalization()(tf.keras.layers.Dense(3)(inputs))
  model = tf.keras.Model(inputs, x)
  with pytest.raises(NotImplementedError, match="BatchNormalization"):
    dp_clipping.clipped_gradient_sum(model, [[tf.ones((2, 4))]],
                                     lambda outputs: tf.reduce_sum(outputs[0], axis=1), 1.0)
