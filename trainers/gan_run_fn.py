"""TFX Trainer entry point for the DP AC-GAN: `run_fn` on Transform's output.

custom_config carries the dataset spec ("spec"), GanConfig overrides ("gan") and the
privacy budget ("budget"). The generator SavedModel goes to serving_model_dir with
its privacy record beside it.
"""

import dataclasses
import json
import os
from typing import Dict, List

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from clinical_dp.spec import spec_from_dict
from trainers import dp_training, gan, gan_export, gan_trainer
from trainers.preprocessing import SPEC_KEY

PRIVACY_RECORD_FILE = "privacy_record.json"


def load_transformed(file_patterns: List[str], transform_output: str) -> Dict[str, np.ndarray]:
  """Every transformed example of the given files, as whole arrays (the GAN samples rows)."""
  feature_spec = tft.TFTransformOutput(transform_output).transformed_feature_spec()
  files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
  if not files:
    raise FileNotFoundError(f"no transformed examples match {file_patterns}")
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
      lambda records: tf.io.parse_example(records, feature_spec))
  batches = list(dataset.as_numpy_iterator())
  return {key: np.concatenate([b[key] for b in batches]) for key in feature_spec}


def max_rows_per_patient(transformed: Dict[str, np.ndarray], id_column) -> int:
  if not id_column:
    return 1
  _, counts = np.unique(transformed[id_column], return_counts=True)
  return int(counts.max())


def run_fn(fn_args) -> None:
  """Trains the DP AC-GAN on the train split and exports the generator."""
  custom = fn_args.custom_config or {}
  spec = spec_from_dict(custom[SPEC_KEY])
  config = dataclasses.replace(gan.GanConfig(), **custom.get("gan", {}))
  budget = dp_training.PrivacyBudget(**custom.get("budget", {}))
  transformed = load_transformed(fn_args.train_files, fn_args.transform_output)
  inputs, labels = gan_trainer.layout_arrays(transformed, spec)
  generator, record = gan_trainer.train_gan(
      inputs, labels, spec, config, budget,
      max_rows_per_patient=max_rows_per_patient(transformed, spec.id_column))
  gan_export.export_generator(generator, spec, config.latent_dim, fn_args.serving_model_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, PRIVACY_RECORD_FILE), "w") as f:
    json.dump({**record.to_dict(), "model": "dp_acgan_generator",
               "selection": "none: the last step's generator is released, no model or epoch "
                            "selection on real data", "gan_config": dataclasses.asdict(config)},
              f, indent=2)
