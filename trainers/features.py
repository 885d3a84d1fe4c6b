"""From Transform's outputs to the networks' inputs, shared by every trainer.

One patient is laid out as a (visits x series) matrix and a static vector (numeric
values on the spec's [0, 1] scale, then one-hot categories). The same functions run
on NumPy arrays during training and on tensors inside exported serving graphs, so
training and serving cannot disagree about the layout.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_transform as tft

from clinical_dp.names import SIGNATURE_INPUTS_FILE
from clinical_dp.spec import DatasetSpec
from trainers.preprocessing import LABEL_KEY, transform_features, transformed_name


@dataclasses.dataclass(frozen=True)
class PatientLayout:
  """How one patient is laid out for the networks, derived from the spec."""
  num_visits: int
  num_series: int
  numeric_static: Tuple[str, ...]
  categorical_static: Tuple[Tuple[str, int], ...]

  @classmethod
  def from_spec(cls, spec: DatasetSpec) -> "PatientLayout":
    return cls(num_visits=spec.num_visits, num_series=len(spec.series),
               numeric_static=tuple(f.name for f in spec.static if not f.is_categorical),
               categorical_static=tuple((f.name, len(f.values)) for f in spec.static
                                        if f.is_categorical))

  @property
  def static_width(self) -> int:
    return len(self.numeric_static) + sum(size for _, size in self.categorical_static)

  @property
  def has_series(self) -> bool:
    return self.num_series > 0

  @property
  def has_static(self) -> bool:
    return self.static_width > 0


def network_inputs(transformed: Dict, spec: DatasetSpec) -> List[tf.Tensor]:
  """Transformed features -> [series (batch, visits, series)], [static (batch, width)]."""
  layout = PatientLayout.from_spec(spec)
  inputs = []
  if layout.has_series:
    inputs.append(tf.stack([tf.cast(transformed[transformed_name(s.name)], tf.float32)
                            for s in spec.series], axis=2))
  if layout.has_static:
    numeric = [tf.reshape(tf.cast(transformed[transformed_name(n)], tf.float32), [-1, 1])
               for n in layout.numeric_static]
    categorical = [tf.cast(transformed[transformed_name(n)], tf.float32)
                   for n, _ in layout.categorical_static]
    inputs.append(tf.concat(numeric + categorical, axis=1))
  return inputs


def flat_features(inputs: List) -> tf.Tensor:
  """The networks' inputs as one row per patient: series visit by visit, then static."""
  return tf.concat([tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1]) for x in inputs],
                   axis=1)


def layout_arrays(transformed: Dict[str, np.ndarray], spec: DatasetSpec
                  ) -> Tuple[List[np.ndarray], np.ndarray]:
  """network_inputs on NumPy arrays, with the labels as an int32 column."""
  inputs = [x.numpy() for x in network_inputs(transformed, spec)]
  labels = np.asarray(transformed[LABEL_KEY], np.int32).reshape(-1, 1)
  return inputs, labels


def flatten_inputs(inputs: List[np.ndarray]) -> np.ndarray:
  return flat_features(inputs).numpy()


def encode_table(table: pd.DataFrame, spec: DatasetSpec) -> Tuple[List[np.ndarray], np.ndarray]:
  """A validated table (or a generated one, without id and site) through the pipeline's own
  preprocessing_fn, for use outside TFX."""
  columns = {}
  for column in [c for c in spec.required_columns if c in table.columns]:
    values = table[column].to_numpy()
    if values.dtype == object:
      values = values.astype(str).astype(bytes)
    columns[column] = tf.constant(values.reshape(-1, 1))
  transformed = {k: v.numpy() for k, v in transform_features(columns, spec).items()}
  return layout_arrays(transformed, spec)


def load_transformed(file_patterns: List[str], transform_output: str) -> Dict[str, np.ndarray]:
  """Every transformed example of the given files, as whole arrays (the trainers sample rows)."""
  feature_spec = tft.TFTransformOutput(transform_output).transformed_feature_spec()
  files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
  if not files:
    raise FileNotFoundError(f"no transformed examples match {file_patterns}")
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
      lambda records: tf.io.parse_example(records, feature_spec))
  batches = list(dataset.as_numpy_iterator())
  return {key: np.concatenate([b[key] for b in batches]) for key in feature_spec}


def max_rows_per_patient(transformed: Dict[str, np.ndarray], id_column) -> int:
  """The most rows any one patient has: the group size of patient-level accounting."""
  if not id_column:
    return 1
  _, counts = np.unique(transformed[id_column], return_counts=True)
  return int(counts.max())


def write_signature_inputs(directory: str, column_names: Dict[str, str],
                           signatures: Dict[str, List[str]]) -> str:
  """Documents, beside a SavedModel, which column of the user's table each signature
  key is ({signature: {column: key}}); keys are safe names (clinical_dp/names.py)."""
  path = os.path.join(directory, SIGNATURE_INPUTS_FILE)
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump({signature: {column_names.get(key, key): key for key in keys}
               for signature, keys in signatures.items()}, f, indent=2, ensure_ascii=False)
  return path


def table_from_flat(flat: np.ndarray, labels: np.ndarray, spec: DatasetSpec) -> pd.DataFrame:
  """Flat features on the [0, 1] scale (flat_features' order) and 0 / 1 labels -> a table in
  the spec's columns and clinical units (the label as 1 / 0), as the exported generator
  decodes its own outputs (trainers/gan_export.py)."""
  layout = PatientLayout.from_spec(spec)
  flat = np.clip(np.asarray(flat, np.float64), 0.0, 1.0)
  columns = {spec.label_column: np.asarray(labels).reshape(-1).astype(np.int64)}

  def clinical(values, feature):
    values = feature.min + values * (feature.max - feature.min)
    if feature.rounding is None:
      return values
    values = np.round(values, feature.rounding)
    return values.astype(np.int64) if feature.integer else values

  for index, feature in enumerate(spec.series):
    for visit, column in enumerate(feature.columns):
      columns[column] = clinical(flat[:, visit * layout.num_series + index], feature)
  offset = layout.num_visits * layout.num_series
  for feature in spec.static:
    if not feature.is_categorical:
      columns[feature.name] = clinical(flat[:, offset], feature)
      offset += 1
  for feature in spec.static:
    if feature.is_categorical:
      block = flat[:, offset:offset + len(feature.values)]
      columns[feature.name] = np.asarray(feature.values, dtype=object)[block.argmax(axis=1)]
      offset += len(feature.values)
  return pd.DataFrame(columns)[[spec.label_column] + spec.feature_columns]
