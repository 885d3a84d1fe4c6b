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
from clinical_dp.spec import DROPOUT_KEY, DatasetSpec
from trainers.preprocessing import (LABEL_KEY, missing_key, transform_features,
                                    transformed_name)


@dataclasses.dataclass(frozen=True)
class PatientLayout:
  """How one patient is laid out for the networks, derived from the spec.

  With missing values modeled, the one-hot blocks end with each static column's
  indicator [observed, missing] (missing_key) and the series' dropout code (DROPOUT_KEY,
  visits + 1 wide): to the networks and the DP statistics they are categories like any
  other, and apply_missingness makes the values agree with them."""
  num_visits: int
  num_series: int
  numeric_static: Tuple[str, ...]
  categorical_static: Tuple[Tuple[str, int], ...]
  models_missing: bool = False
  # Per numeric flat column (series visit by visit, then static): (step, offset) of the
  # values it can take on the [0, 1] scale, offset + k step, for a whole-number column or
  # one reported to `decimals` (public facts of the spec); (0, 0) for a continuous one.
  numeric_atoms: Tuple[Tuple[float, float], ...] = ()

  @classmethod
  def from_spec(cls, spec: DatasetSpec) -> "PatientLayout":
    categorical = tuple((f.name, len(f.values)) for f in spec.static if f.is_categorical)
    if spec.models_missing:
      categorical += tuple((missing_key(f.name), 2) for f in spec.static)
      if spec.series:
        categorical += ((DROPOUT_KEY, spec.num_visits + 1),)
    numeric = [f for f in spec.static if not f.is_categorical]
    atoms = tuple(_atoms(f) for _ in range(spec.num_visits) for f in spec.series)
    return cls(num_visits=spec.num_visits, num_series=len(spec.series),
               numeric_static=tuple(f.name for f in numeric),
               categorical_static=categorical, models_missing=spec.models_missing,
               numeric_atoms=atoms + tuple(_atoms(f) for f in numeric))

  def block_offsets(self) -> Dict[str, int]:
    """Flat column where each static feature (numeric value or one-hot block) starts."""
    offset = self.num_visits * self.num_series
    offsets = {}
    for name in self.numeric_static:
      offsets[name] = offset
      offset += 1
    for name, size in self.categorical_static:
      offsets[name] = offset
      offset += size
    return offsets

  @property
  def nullable_static(self) -> Tuple[str, ...]:
    """Static features that have a missingness indicator."""
    names = {name for name, _ in self.categorical_static}
    return tuple(n for n in self.numeric_static + tuple(n for n, _ in self.categorical_static)
                 if missing_key(n) in names)

  @property
  def has_dropout(self) -> bool:
    return any(name == DROPOUT_KEY for name, _ in self.categorical_static)

  @property
  def static_width(self) -> int:
    return len(self.numeric_static) + sum(size for _, size in self.categorical_static)

  @property
  def has_series(self) -> bool:
    return self.num_series > 0

  @property
  def has_static(self) -> bool:
    return self.static_width > 0


@tf.autograph.experimental.do_not_convert  # plain Python on the spec, TF ops on tensors
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


def _atoms(feature) -> Tuple[float, float]:
  """(step, offset) of a numeric feature's reported values on the [0, 1] scale."""
  if feature.rounding is None:
    return (0.0, 0.0)
  step = 10.0 ** -feature.rounding
  first = np.ceil(feature.min / step - 1e-9) * step
  width = feature.max - feature.min
  return (step / width, (first - feature.min) / width)


def snap_to_atoms(values, low, high, layout: PatientLayout, columns=None) -> tf.Tensor:
  """Numeric values (batch, numeric columns, [0, 1] scale), each drawn within its bin
  [low, high), -> the same where a column's values are whole numbers or reported to
  `decimals`: the nearest of the column's values that lies inside the bin, so rounding
  cannot carry a value into a neighbouring bin. (Drawn uniformly in a bin of 0 to 0.9
  medication classes and rounded, 45% of the patients with none were given one: a
  per-visit KS of 0.10 with noise-free statistics.) A bin that holds none of the
  column's values keeps the value drawn; so does a column left out of `columns` (a bool
  per column; None: all), e.g. one on a DP binning scale, whose bins already follow its
  values (dp_statistics.BinningScales.to_binning)."""
  values = tf.convert_to_tensor(values, tf.float32)
  steps = [step if columns is None or columns[j] else 0.0
           for j, (step, _) in enumerate(layout.numeric_atoms)]
  if not any(steps):
    return values
  step = tf.constant(steps, tf.float32)
  offset = tf.constant([o for _, o in layout.numeric_atoms], tf.float32)
  safe = tf.where(step > 0, step, 1.0)
  first = tf.math.ceil((low - offset) / safe - 1e-4)
  # an atom on a bin's upper edge belongs to the next bin, but the top bin keeps the bound
  last = tf.math.floor((high - offset) / safe + tf.where(high >= 1.0 - 1e-6, 1e-4, -1e-4))
  nearest = tf.clip_by_value(tf.round((values - offset) / safe), first, tf.maximum(last, first))
  snapped = tf.clip_by_value(offset + nearest * safe, 0.0, 1.0)
  return tf.where((step > 0) & (last >= first), snapped, values)


def missing_cells(flat, layout: PatientLayout) -> Dict[str, tf.Tensor]:
  """Which cells of flat features (flat_features' order) are missing, as their indicators
  and dropout code say: {static feature: (batch,) bool}, and under DROPOUT_KEY
  (batch, visits) bool for the series' visits after the last observed one."""
  flat = tf.convert_to_tensor(flat, tf.float32)
  offsets, cells = layout.block_offsets(), {}
  for name in layout.nullable_static:
    indicator = flat[:, offsets[missing_key(name)]:offsets[missing_key(name)] + 2]
    cells[name] = tf.argmax(indicator, axis=1) == 1
  if layout.has_dropout:
    start = offsets[DROPOUT_KEY]
    observed = tf.argmax(flat[:, start:start + layout.num_visits + 1], axis=1, output_type=tf.int32)
    cells[DROPOUT_KEY] = tf.range(layout.num_visits)[None, :] >= observed[:, None]
  return cells


def apply_missingness(flat, layout: PatientLayout) -> tf.Tensor:
  """Flat features whose values agree with their own indicators and dropout code, as
  trainers/preprocessing.py encodes a table with holes: a missing number 0, a missing
  category all zeros, visits after dropout the last observed visit's values (0 when
  none is observed). Generators apply it to what they sample, so a synthetic patient is
  encoded like a real one with the same holes."""
  flat = tf.convert_to_tensor(flat, tf.float32)
  if not layout.models_missing:
    return flat
  cells, offsets = missing_cells(flat, layout), layout.block_offsets()
  columns = tf.unstack(flat, axis=1) if flat.shape[1] else []
  for name in layout.nullable_static:
    width = dict(layout.categorical_static).get(name, 1)
    for column in range(offsets[name], offsets[name] + width):
      columns[column] = tf.where(cells[name], 0.0, columns[column])
  if layout.has_dropout:
    visits, width = layout.num_visits, layout.num_visits * layout.num_series
    series = tf.reshape(flat[:, :width], [-1, visits, layout.num_series])
    observed = visits - tf.reduce_sum(tf.cast(cells[DROPOUT_KEY], tf.int32), axis=1)
    last = tf.gather(series, tf.maximum(observed - 1, 0), batch_dims=1)  # (batch, series)
    last = tf.where(observed[:, None] > 0, last, 0.0)
    series = tf.where(cells[DROPOUT_KEY][:, :, None], last[:, None, :], series)
    columns[:width] = tf.unstack(tf.reshape(series, [-1, width]), axis=1)
  return tf.stack(columns, axis=1)


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
  categorical = {f.name for f in spec.static if f.is_categorical}
  columns = {}
  for column in [c for c in spec.required_columns if c in table.columns]:
    values = table[column]
    if column in categorical and pd.api.types.is_numeric_dtype(values.dtype):
      values = values.astype("Int64").astype(str)  # 1, not 1.0; a hole <NA>, made "" below
      values = values.where(table[column].notna(), "")
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
      values = values.astype(object).where(values.notna(), "").astype(str).to_numpy()
      values = values.astype(bytes)
    elif values.hasnans:  # a hole in a number: NaN marks it (trainers/preprocessing.py)
      values = values.astype(np.float64).to_numpy()
    elif isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
      values = values.to_numpy(values.dtype.numpy_dtype)  # a nullable integer, no hole
    else:
      values = values.to_numpy()
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
  cells = {name: mask.numpy() for name, mask in missing_cells(flat, layout).items()}
  no_hole = np.zeros(len(flat), bool)

  def clinical(values, feature, missing):
    values = feature.min + values * (feature.max - feature.min)
    if feature.rounding is not None:
      values = np.round(values, feature.rounding)
    values = pd.Series(values).mask(missing)
    return values.astype("Int64" if missing.any() else np.int64) if feature.integer else values

  for index, feature in enumerate(spec.series):
    for visit, column in enumerate(feature.columns):
      missing = cells[DROPOUT_KEY][:, visit] if DROPOUT_KEY in cells else no_hole
      columns[column] = clinical(flat[:, visit * layout.num_series + index], feature, missing)
  offsets = layout.block_offsets()
  for feature in spec.static:
    missing = cells.get(feature.name, no_hole)
    start = offsets[feature.name]
    if feature.is_categorical:
      block = flat[:, start:start + len(feature.values)]
      values = np.asarray(feature.values, dtype=object)[block.argmax(axis=1)]
      columns[feature.name] = pd.Series(values).mask(missing)
    else:
      columns[feature.name] = clinical(flat[:, start], feature, missing)
  return pd.DataFrame(columns)[[spec.label_column] + spec.feature_columns]
