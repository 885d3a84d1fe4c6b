"""Time to train the DP AC-GAN: steps per second of our default settings and of SPRINT_gan's
paper mode, and paper mode's full 500 epochs extrapolated from them.

Trains on the default simulated `sprint` table (complete cases, 80% as in the pipeline's
train split). Steps per second are steady-state: the steps between the first and the
last epoch's progress line over the time between them, so building the models and
tracing the steps are left out. Paper mode runs its batch-1 loop (trainers/batch1_dp.py)
and, for comparison, the per-step path it replaced (TF Privacy's DPKerasAdamOptimizer,
one call per step), taking turns so that a change in the machine's load reaches both
alike; medians over --rounds. The default's full training (all its epochs) is timed
too unless --skip_full. Run with the pipeline runtime:
  .venv/bin/python benchmarks/gan_training_time.py [--paper_epochs 2] [--rounds 2]
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

import dataclasses
import re
import tempfile
import time

from absl import app, flags
import numpy as np

from clinical_dp.simulators import simulate, write_simulated
from clinical_dp.validation import validate_table
from trainers import batch1_dp, features, gan, gan_trainer
from trainers.dp_training import PrivacyBudget

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 4, "epochs of the default configuration's timed runs")
flags.DEFINE_integer("paper_epochs", 2, "epochs of each paper-mode timed run (at least 2)")
flags.DEFINE_integer("rounds", 2, "timed runs of each configuration (medians reported)")
flags.DEFINE_bool("compare_previous", True, "also time paper mode's previous per-step path")
flags.DEFINE_bool("one_intra_op_thread", True,
                  "one TensorFlow intra-op thread, as `clinical-dp run --mode paper` asks")
flags.DEFINE_bool("skip_full", False, "skip timing the default configuration's full training")

# The comparison is about time: a permissive budget, and a fixed noise multiplier so that
# no noise is solved (the time of a step does not depend on the noise).
_BUDGET = PrivacyBudget(target_epsilon=100.0, delta=1e-5)
_EPOCH_LINE = re.compile(r"epoch (\d+)/")


def _steady_steps_per_second(inputs, labels, spec, config) -> float:
  """Steps per second between the first and the last epoch's progress line."""
  stamps = []

  def log(line):
    match = _EPOCH_LINE.search(line)
    if match:
      stamps.append((int(match.group(1)), time.perf_counter()))

  gan_trainer.train_gan(inputs, labels, spec, config, _BUDGET, log=log)
  (first_epoch, start), (last_epoch, end) = stamps[0], stamps[-1]
  steps_per_epoch = -(-len(labels) // config.batch_size)
  return (last_epoch - first_epoch) * steps_per_epoch / (end - start)


def main(_):
  if FLAGS.paper_epochs < 2:
    raise app.UsageError("--paper_epochs must be at least 2 (two progress lines)")
  one_thread = FLAGS.one_intra_op_thread and batch1_dp.use_one_intra_op_thread()
  with tempfile.TemporaryDirectory() as tmp:
    frame, spec = simulate("sprint")
    data, _ = write_simulated(tmp, frame, spec)
    inputs, labels = features.encode_table(validate_table(data, spec).table, spec)
  train = int(0.8 * len(labels))
  inputs, labels = [x[:train] for x in inputs], labels[:train]
  print(f"default sprint table: {train} training patients; TensorFlow intra-op threads: "
        f"{'1' if one_thread else 'its default'}; steady-state steps/s, median of "
        f"{FLAGS.rounds} runs each")
  configurations = {
      "default": dataclasses.replace(gan.GanConfig(), epochs=FLAGS.epochs,
                                     noise_multiplier=1.0),
      "paper (batch-1 loop)": gan.paper_config(epochs=FLAGS.paper_epochs)}
  if FLAGS.compare_previous:
    configurations["paper (previous: TF Privacy, a call per step)"] = dataclasses.replace(
        gan.paper_config(epochs=FLAGS.paper_epochs), dp_method="tf_privacy")
  rates = {name: [] for name in configurations}
  for _ in range(FLAGS.rounds):
    for name, config in configurations.items():
      rates[name].append(_steady_steps_per_second(inputs, labels, spec, config))
  medians = {name: float(np.median(r)) for name, r in rates.items()}
  for name, config in configurations.items():
    print(f"  {name:<48} batch {config.batch_size:>3}: {medians[name]:7.1f} steps/s "
          f"(runs: {', '.join(f'{r:.0f}' for r in rates[name])})")
  paper = gan.paper_config()
  paper_steps = paper.epochs * train  # batch 1: one step per patient per epoch
  for name in configurations:
    if name.startswith("paper"):
      print(f"paper mode's {paper.epochs} epochs ({paper_steps} steps) at the {name} rate, "
            f"extrapolated from the measured steps/s: {paper_steps / medians[name] / 3600:.1f} h")
  if not FLAGS.skip_full:
    config = gan.GanConfig()
    start = time.perf_counter()
    trained = gan_trainer.train_gan(inputs, labels, spec, config,
                                    PrivacyBudget(target_epsilon=1.0, delta=1e-5),
                                    log=lambda _: None)
    print(f"default full training ({config.epochs} epochs, epsilon "
          f"{trained.record.epsilon:.3f}), wall time with set-up: "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  app.run(main)
