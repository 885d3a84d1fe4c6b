"""Time to train the DP AC-GAN: our default settings vs SPRINT_gan's paper mode, same epochs.

Trains on the default simulated `sprint` table (complete cases, 80% as in the
pipeline's train split) with each configuration for the same number of epochs and
prints wall time, steps per second and their ratio. The default's full training
(all its epochs) is timed too unless --skip_full. Run with the pipeline runtime:
  .venv/bin/python benchmarks/gan_training_time.py [--epochs 2] [--skip_full]
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

import dataclasses
import tempfile
import time

from absl import app, flags

from clinical_dp.simulators import simulate, write_simulated
from clinical_dp.validation import validate_table
from trainers import features, gan, gan_trainer
from trainers.dp_training import PrivacyBudget

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 4, "epochs of each configuration in the comparison")
flags.DEFINE_bool("skip_full", False, "skip timing the default configuration's full training")

# The comparison is about time: a permissive budget, and a fixed noise multiplier so that
# no noise is solved (the time of a step does not depend on the noise).
_BUDGET = PrivacyBudget(target_epsilon=100.0, delta=1e-5)


def _train_seconds(inputs, labels, spec, config):
  start = time.perf_counter()
  trained = gan_trainer.train_gan(inputs, labels, spec, config, _BUDGET, log=lambda _: None)
  return time.perf_counter() - start, trained.record


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    frame, spec = simulate("sprint")
    data, _ = write_simulated(tmp, frame, spec)
    inputs, labels = features.encode_table(validate_table(data, spec).table, spec)
  train = int(0.8 * len(labels))
  inputs, labels = [x[:train] for x in inputs], labels[:train]
  print(f"default sprint table: {train} training patients, {FLAGS.epochs} epochs each")
  # Untimed: the first training in a process also pays TensorFlow's one-time start-up.
  _train_seconds(inputs, labels, spec, dataclasses.replace(gan.GanConfig(), epochs=1,
                                                           noise_multiplier=1.0))
  results = {}
  for name, config in (("default", gan.GanConfig()), ("paper", gan.paper_config())):
    config = dataclasses.replace(config, epochs=FLAGS.epochs,
                                 noise_multiplier=config.noise_multiplier or 1.0)
    seconds, record = _train_seconds(inputs, labels, spec, config)
    results[name] = seconds
    print(f"  {name:<8} batch {config.batch_size:>3}: {record.steps:>6} steps in {seconds:7.1f} s "
          f"({record.steps / seconds:7.1f} steps/s, dp_method {config.dp_method})")
  print(f"paper mode / default, same epochs: {results['paper'] / results['default']:.1f}x "
        "(both include building the models and tracing the steps)")
  if not FLAGS.skip_full:
    config = gan.GanConfig()
    start = time.perf_counter()
    trained = gan_trainer.train_gan(inputs, labels, spec, config,
                                    PrivacyBudget(target_epsilon=1.0, delta=1e-5),
                                    log=lambda _: None)
    seconds = time.perf_counter() - start
    print(f"default full training ({config.epochs} epochs, epsilon "
          f"{trained.record.epsilon:.3f}): {seconds:.1f} s")
    paper_epochs = gan.paper_config().epochs
    print(f"paper mode's {paper_epochs} epochs, extrapolated from the comparison: "
          f"{results['paper'] * paper_epochs / FLAGS.epochs / 3600:.1f} h")


if __name__ == "__main__":
  app.run(main)
