"""How the default DP GAN settings were chosen: a sweep on simulated data only.

Each candidate GanConfig is trained at the default budget (epsilon 1, delta 1e-5) on
a simulated `sprint` table drawn with another seed than the demo's, and scored by
train-on-synthetic, test-on-real: logistic regression trained on synthetic patients,
AUROC on held-out simulated patients, against the same model trained on the real
rows. No user data is involved, so choosing the defaults costs no privacy.
  .venv/bin/python benchmarks/gan_settings_sweep.py [--candidates default,small_d] [--seed 11]
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

import dataclasses
import tempfile
import time

from absl import app, flags
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from clinical_dp.simulators import simulate, write_simulated
from clinical_dp.validation import validate_table
from trainers import features, gan, gan_export, gan_trainer
from trainers.dp_training import PrivacyBudget

CANDIDATES = {
    "default": gan.GanConfig(),
    "g_lr_1e-3": gan.GanConfig(generator_learning_rate=1e-3),
    "g_steps_2": gan.GanConfig(generator_steps=2),
    "g_steps_3": gan.GanConfig(generator_steps=3),
    "g_steps_2_epochs50": gan.GanConfig(generator_steps=2, epochs=50),
    "d_lr_2e-3": gan.GanConfig(discriminator_learning_rate=2e-3),
    "epochs20": gan.GanConfig(epochs=20),
    "clip_0.5": gan.GanConfig(l2_norm_clip=0.5),
    "small_d": gan.GanConfig(discriminator_filters=8, discriminator_units=32),
    "g_lr_1e-4": gan.GanConfig(generator_learning_rate=1e-4),
    "d_lr_5e-4": gan.GanConfig(discriminator_learning_rate=5e-4),
    "batch128": gan.GanConfig(batch_size=128),
    "epochs50": gan.GanConfig(epochs=50),
    "batch512_60ep": gan.GanConfig(batch_size=512, epochs=60),
}

FLAGS = flags.FLAGS
flags.DEFINE_list("candidates", list(CANDIDATES), "names of the configurations to try")
flags.DEFINE_integer("seed", 11, "simulation seed (the demo table uses 0)")
flags.DEFINE_float("target_epsilon", 1.0, "budget of each candidate")


def _tstr_auroc(train_x, train_y, test_x, test_y) -> float:
  model = LogisticRegression(max_iter=2000).fit(train_x, train_y)
  return roc_auc_score(test_y, model.predict_proba(test_x)[:, 1])


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    frame, spec = simulate("sprint", seed=FLAGS.seed)
    table = validate_table(write_simulated(tmp, frame, spec)[0], spec).table
    split = int(0.8 * len(table))
    inputs, labels = features.encode_table(table.iloc[:split], spec)
    test_x, test_y = (lambda i, l: (features.flatten_inputs(i), l.ravel()))(
        *features.encode_table(table.iloc[split:], spec))
    real_auroc = _tstr_auroc(features.flatten_inputs(inputs), labels.ravel(), test_x, test_y)
    print(f"simulated sprint seed {FLAGS.seed}: {split} training, {len(test_y)} test patients; "
          f"LR on real rows: AUROC {real_auroc:.3f}")
    for name in FLAGS.candidates:
      config = CANDIDATES[name]
      start = time.perf_counter()
      trained = gan_trainer.train_gan(inputs, labels, spec, config,
                                      PrivacyBudget(FLAGS.target_epsilon, 1e-5),
                                      log=lambda _: None)
      seconds = time.perf_counter() - start
      export_dir = gan_export.export_generator(trained.generator, spec, config.latent_dim,
                                               f"{tmp}/{name}")
      synthetic = gan_export.generate_table(export_dir, spec, split, trained.positive_rate)
      synthetic_x, synthetic_y = features.encode_table(synthetic, spec)
      auroc = _tstr_auroc(features.flatten_inputs(synthetic_x), synthetic_y.ravel(),
                          test_x, test_y)
      print(f"  {name:<16} noise {trained.config.noise_multiplier:6.2f}, "
            f"epsilon {trained.record.epsilon:.3f}, {seconds:6.0f} s: TSTR AUROC {auroc:.3f} "
            f"({auroc / real_auroc:.3f} of real)")


if __name__ == "__main__":
  app.run(main)
