"""DP overhead of one discriminator update: DP (TF Privacy) vs the same non-private update.

Same model, same batch, same per-example AC-GAN loss; prints the median time of each
over repeated runs and their ratio. Run with the pipeline runtime:
  .venv/bin/python benchmarks/dp_step_overhead.py [--batch_size 64] [--repeats 50] [--paper]
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

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


def _median_ms(step, real, labels, repeats):
  step(real, labels)  # trace and warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step(real, labels).numpy()
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def main(_):
  spec = simulate("sprint", patients=20)[1]
  layout = gan.PatientLayout.from_spec(spec)
  config = gan.paper_config() if FLAGS.paper else gan.GanConfig()
  discriminator = gan.build_discriminator(layout, config)
  generator = gan.build_generator(layout, config)
  batch = FLAGS.batch_size
  rng = np.random.default_rng(0)
  real = [tf.constant(rng.random((batch, layout.num_visits, layout.num_series)), tf.float32),
          tf.constant(rng.random((batch, layout.static_width)), tf.float32)]
  labels = tf.constant(rng.integers(0, 2, (batch, 1)), tf.int32)

  dp_optimizer = gan.dp_discriminator_optimizer(config)
  dp_step = tf.function(lambda r, y: gan.discriminator_dp_step(
      discriminator, generator, dp_optimizer, r, y, config.latent_dim))
  adam = tf.keras.optimizers.Adam(config.discriminator_learning_rate, beta_1=config.beta_1)

  def plain_step(r, y):
    fake, fake_labels = gan.sample_fake(generator, batch, config.latent_dim)
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(gan.discriminator_example_losses(
          discriminator, r, y, [tf.stop_gradient(f) for f in fake], fake_labels))
    grads = tape.gradient(loss, discriminator.trainable_variables)
    adam.apply_gradients(zip(grads, discriminator.trainable_variables))
    return loss

  plain_ms = _median_ms(tf.function(plain_step), real, labels, FLAGS.repeats)
  dp_ms = _median_ms(dp_step, real, labels, FLAGS.repeats)
  print(f"discriminator weights {discriminator.count_params()}, batch {batch}, "
        f"{FLAGS.repeats} updates each")
  print(f"non-private update: median {plain_ms:.1f} ms")
  print(f"DP update (DPKerasAdamOptimizer, per-example clipping): median {dp_ms:.1f} ms")
  print(f"DP overhead: {dp_ms / plain_ms:.1f}x")


if __name__ == "__main__":
  app.run(main)
