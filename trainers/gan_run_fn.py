"""TFX Trainer entry point for the DP AC-GAN: `run_fn` on Transform's output.

custom_config carries the dataset spec ("spec"), GanConfig overrides ("gan"), the
privacy budget ("budget") and, optionally, where training checkpoints ("checkpoint", a
trainers/gan_checkpoint.py CheckpointConfig: outside this execution's outputs, so that
a later execution resumes from it) and an explicit seed ("seed"; without it, a secret
one, kept with the checkpoints). The generator SavedModel goes to serving_model_dir with
its privacy record beside it; the record also carries the DP label rate that the
synthetic data component draws labels with. The discriminator's weights go to the
run's model_run_dir, which is not released: the privacy audit attacks them.
"""

import dataclasses
import os

from clinical_dp import secret_seed
from clinical_dp.spec import spec_from_dict
from trainers import dp_training, features, gan, gan_checkpoint, gan_export, gan_trainer
from trainers.preprocessing import COLUMN_NAMES_KEY, SPEC_KEY

GAN_KEY = "gan"
BUDGET_KEY = "budget"
CHECKPOINT_KEY = "checkpoint"
DISCRIMINATOR_WEIGHTS = "discriminator/weights"  # TF checkpoint: works on gs:// too


def run_fn(fn_args) -> None:
  """Trains the DP AC-GAN on the train split and exports the generator."""
  custom = fn_args.custom_config or {}
  spec = spec_from_dict(custom[SPEC_KEY])
  config = dataclasses.replace(gan.GanConfig(), **custom.get(GAN_KEY, {}))
  budget = dp_training.PrivacyBudget(**custom.get(BUDGET_KEY, {}))
  checkpoint = (gan_checkpoint.CheckpointConfig(**custom[CHECKPOINT_KEY])
                if custom.get(CHECKPOINT_KEY) else None)
  transformed = features.load_transformed(fn_args.train_files, fn_args.transform_output)
  inputs, labels = features.layout_arrays(transformed, spec)
  trained = gan_trainer.train_gan(
      inputs, labels, spec, config, budget,
      seed=custom.get(dp_training.SEED_KEY),
      max_rows_per_patient=features.max_rows_per_patient(transformed, spec.id_column),
      checkpoint=checkpoint)
  gan_export.export_generator(trained.generator, spec, trained.config.latent_dim,
                              fn_args.serving_model_dir)
  features.write_signature_inputs(
      fn_args.serving_model_dir, custom.get(COLUMN_NAMES_KEY, {}),
      {f"{gan_export.SIGNATURE} (outputs; the label as 1 / 0)":
       [spec.label_column] + spec.feature_columns})
  dp_training.write_privacy_record(
      fn_args.serving_model_dir, trained.record, model="dp_acgan_generator",
      target_epsilon=budget.target_epsilon, positive_rate=trained.positive_rate,
      randomness=secret_seed.describe(custom.get(dp_training.SEED_KEY)),
      noise_multiplier_source=("configured" if config.noise_multiplier is not None
                               else "solved for the target epsilon"),
      gan_config=dataclasses.asdict(trained.config))
  trained.discriminator.save_weights(os.path.join(fn_args.model_run_dir, DISCRIMINATOR_WEIGHTS))
