"""SyntheticDataGen: turns the DP generator into a released synthetic dataset.

It writes `synthetic.csv` in the input's columns and clinical units, checked
against the dataset spec before it is published, and the same rows as an Examples
artifact (split "train") that downstream TFX components can consume. Synthetic
patients get fresh ids and the site "synthetic": nothing is copied from real rows.
The guarantee is the generator's (post-processing), so its privacy record is
copied beside the table.
"""

import os
import shutil
from typing import Iterable, Iterator

import pandas as pd
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import path_utils

from clinical_dp.console import say
from clinical_dp.example_tables import serialized_examples
from clinical_dp.files import write_atomically
from clinical_dp.names import ColumnKeys, user_labels
from clinical_dp.release_layout import SYNTHETIC_CSV
from clinical_dp.spec import DatasetSpec, parse_spec
from clinical_dp.validation import InvalidInputError, validate_table
from trainers import dp_training, gan_export

SYNTHETIC_SPLIT = "train"
SYNTHETIC_SITE = "synthetic"


# Patients generated, encoded and written at a time: a million-patient table, its copy under
# the user's names, its CSV text and its serialized examples, all at once, took gigabytes.
BLOCK_PATIENTS = 100_000


def synthetic_table(generator, spec: DatasetSpec, num_patients: int, positive_rate: float,
                    first_id: int = 1) -> pd.DataFrame:
  """Generated patients with the input's columns, in the order the spec lists them, their
  ids numbered from `first_id` (`generator`: as gan_export.generate_table takes it)."""
  frame = gan_export.generate_table(generator, spec, num_patients, positive_rate)
  if spec.id_column:
    frame[spec.id_column] = [f"synthetic-{i:06d}"
                             for i in range(first_id, first_id + num_patients)]
  if spec.site_column:
    frame[spec.site_column] = SYNTHETIC_SITE
  return frame[spec.required_columns]


def synthetic_blocks(generator_dir: str, spec: DatasetSpec, num_patients: int,
                     positive_rate: float) -> Iterator[pd.DataFrame]:
  """synthetic_table's patients, BLOCK_PATIENTS at a time (one empty block for none)."""
  generator = gan_export.load_generator(generator_dir)
  for start in range(0, num_patients or 1, BLOCK_PATIENTS):
    yield synthetic_table(generator, spec, min(BLOCK_PATIENTS, num_patients - start),
                          positive_rate, first_id=start + 1)


def user_table(frame: pd.DataFrame, spec: DatasetSpec, keys: ColumnKeys) -> pd.DataFrame:
  """Rows under the pipeline's keys -> the user's column names and label classes."""
  table = keys.to_user(frame)
  table[spec.label_column] = user_labels(table[spec.label_column], spec)
  return table


def write_checked_csv(frames: Iterable[pd.DataFrame], spec: DatasetSpec, path: str) -> None:
  """Writes the rows of `frames` one after another as one CSV and publishes it only if the
  whole file passes the same validation as real input."""
  def write(tmp: str) -> None:
    for index, frame in enumerate(frames):
      frame.to_csv(tmp, mode="a" if index else "w", header=not index, index=False,
                   float_format="%.6f")
    report = validate_table(tmp, spec)
    if not report.ok or report.dropped_rows:
      raise InvalidInputError(report.findings)
  write_atomically(path, write)


@tfx.dsl.components.component
def SyntheticDataGen(  # pylint: disable=invalid-name
    generator: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    synthetic_examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    spec_yaml: tfx.dsl.components.Parameter[str],
    num_patients: tfx.dsl.components.Parameter[int] = 0,
) -> None:
  """Samples num_patients (0: as many as the generator was trained on) at the DP label rate.

  `spec_yaml` is the user's spec: the generator speaks the pipeline's feature keys and
  1 / 0 labels, synthetic.csv the user's column names and classes."""
  spec = parse_spec(spec_yaml)
  keys = ColumnKeys.for_spec(spec)
  generator_dir = path_utils.serving_model_path(generator.uri)
  record = dp_training.read_privacy_record(generator_dir)
  count = num_patients or record["num_examples"]
  say(f"  SyntheticDataGen: sampling {count} synthetic patients at positive rate "
        f"{record['positive_rate']:.3f} (DP epsilon {record['epsilon']:.3f})")
  split_dir = os.path.join(synthetic_examples.uri, f"Split-{SYNTHETIC_SPLIT}")
  os.makedirs(split_dir, exist_ok=True)
  # One tf.Example per row, typed as CsvExampleGen types the input CSV (an empty cell is
  # an absent feature); the CSV the same rows under the user's names and classes.
  with tf.io.TFRecordWriter(os.path.join(split_dir, "synthetic-00000-of-00001.gz"),
                            options="GZIP") as examples:
    def user_tables() -> Iterator[pd.DataFrame]:
      for frame in synthetic_blocks(generator_dir, keys.internal_spec(spec), count,
                                    record["positive_rate"]):
        for example in serialized_examples(frame):
          examples.write(example)
        yield user_table(frame, spec, keys)
    write_checked_csv(user_tables(), spec, os.path.join(synthetic_examples.uri, SYNTHETIC_CSV))
  synthetic_examples.split_names = artifact_utils.encode_split_names([SYNTHETIC_SPLIT])
  shutil.copyfile(os.path.join(generator_dir, dp_training.PRIVACY_RECORD_FILE),
                  os.path.join(synthetic_examples.uri, dp_training.PRIVACY_RECORD_FILE))
