"""DP overhead of one discriminator update: each DP method vs the same non-private update.

Same model, same batch, same per-example AC-GAN loss; prints the median time of each
(inside tf.function, over repeated runs) and its ratio to the non-private update. The DP
methods (GanConfig.dp_method) are the same exact update: TF Privacy's
DPKerasAdamOptimizer, its VectorizedDPKerasAdamOptimizer, and the one-pass clipping of
trainers/dp_clipping.py. Run with the pipeline runtime:
  .venv/bin/python benchmarks/dp_step_overhead.py [--batch_size 64] [--repeats 50] [--paper]
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

import dataclasses
import time

from absl import app, flags
import numpy as np
import tensorflow as tf

from clinical_dp.simulators import simulate
from trainers import gan

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 64, "examples per update")
flags.DEFINE_integer("repeats", 50, "timed updates per variant")
flags.DEFINE_bool("paper", False, "SPRINT_gan's discriminator size instead of the default")


def _median_ms(steps, real, labels, repeats):
  """Median ms of each step; the steps take turns, so that a change in the machine's load
  reaches all of them alike."""
  for step in steps:
    step(real, labels).numpy()  # trace and warm up
  times = [[] for _ in steps]
  for _ in range(repeats):
    for step, own in zip(steps, times):
      start = time.perf_counter()
      step(real, labels).numpy()
      own.append(time.perf_counter() - start)
  return [1000 * float(np.median(own)) for own in times]


def main(_):
  spec = simulate("sprint", patients=20)[1]
  layout = gan.PatientLayout.from_spec(spec)
  config = gan.paper_config() if FLAGS.paper else gan.GanConfig()
  if config.noise_multiplier is None:  # solved for the budget in training; timing is the same
    config = dataclasses.replace(config, noise_multiplier=1.0)
  discriminator = gan.build_discriminator(layout, config)
  generator = gan.build_generator(layout, config)
  batch = FLAGS.batch_size
  rng = np.random.default_rng(0)
  real = [tf.constant(rng.random((batch, layout.num_visits, layout.num_series)), tf.float32),
          tf.constant(rng.random((batch, layout.static_width)), tf.float32)]
  labels = tf.constant(rng.integers(0, 2, (batch, 1)), tf.int32)

  adam = tf.keras.optimizers.Adam(config.discriminator_learning_rate, beta_1=config.beta_1)

  def plain_step(r, y):
    fake, fake_labels = gan.sample_fake(generator, batch, config.latent_dim)
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(gan.discriminator_example_losses(
          discriminator, r, y, [tf.stop_gradient(f) for f in fake], fake_labels))
    grads = tape.gradient(loss, discriminator.trainable_variables)
    adam.apply_gradients(zip(grads, discriminator.trainable_variables))
    return loss

  def dp_step(method):
    optimizer = gan.dp_discriminator_optimizer(dataclasses.replace(config, dp_method=method))
    return tf.function(lambda r, y: gan.discriminator_dp_step(
        discriminator, generator, optimizer, r, y, config.latent_dim))

  variants = (("non-private (Adam)", tf.function(plain_step)),
              ("DP: DPKerasAdamOptimizer", dp_step("tf_privacy")),
              ("DP: VectorizedDPKerasAdamOptimizer", dp_step("vectorized")),
              ("DP: one-pass clipping (dp_clipping, default)", dp_step("fast")))
  medians = _median_ms([step for _, step in variants], real, labels, FLAGS.repeats)
  print(f"discriminator weights {discriminator.count_params()}, batch {batch}, "
        f"{FLAGS.repeats} updates each, median ms and ratio to the non-private update")
  for (name, _), ms in zip(variants, medians):
    print(f"  {name:44s} {ms:8.1f} ms {ms / medians[0]:5.1f}x")


if __name__ == "__main__":
  app.run(main)
