"""Transform's preprocessing_fn, built from the dataset spec.

Scaling uses only the spec's public clinical bounds and categorical encoding only
the spec's vocabulary: no tf.Transform analyzer touches the data, so nothing fed
to DP training depends on patients through preprocessing.

With `missing: model` (spec.models_missing) every modeled column may be empty, and the
holes are imputed by public rules only (tft analyzers such as tft.mean are exact
statistics of the patients, so they are never used):
- a static column gains an indicator, a one-hot [observed, missing] under the key
  missing_key(name); a missing number is filled with 0 (its public lower bound), a
  missing category is all zeros;
- the series share one dropout code under DROPOUT_KEY: a one-hot of the number of
  visits up to the last one where any series is observed (0 ... visits), so monotone
  dropout is one ordinal code; each series is filled forward from its last observed
  visit (and backward before its first one, 0 where it has none), which also fills an
  intermittent hole (imputed, not modeled).
The same rule runs on real and synthetic tables (features.encode_table), so every model
and every score treats them alike.
"""

from typing import Any, Dict, List, Tuple

import tensorflow as tf

from clinical_dp.spec import DROPOUT_KEY, MISSING_SUFFIX, DatasetSpec, spec_from_dict

LABEL_KEY = "label_xf"
SPEC_KEY = "spec"
# {feature key: column name in the user's table}, for the models' documented inputs.
COLUMN_NAMES_KEY = "column_names"


def transformed_name(name: str) -> str:
  return f"{name}_xf"


def missing_key(name: str) -> str:
  """The feature key of a static column's missingness indicator."""
  return f"{name}{MISSING_SUFFIX}"


def _dense(tensor: tf.Tensor) -> tf.Tensor:
  """The schema makes every column a required scalar, which arrives as [batch, 1]."""
  return _with_presence(tensor)[0]


def _with_presence(tensor: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """A scalar column -> (values [batch], present [batch] bool). A nullable column arrives
  as a SparseTensor without its empty cells (whose values become 0 / ""); outside TFX
  (features.encode_table) a missing number is NaN and a missing text "" ."""
  if isinstance(tensor, tf.SparseTensor):
    shape = tf.stack([tensor.dense_shape[0], 1])  # [batch, 0] when the batch has no value
    values = tf.sparse.to_dense(tf.SparseTensor(tensor.indices, tensor.values, shape))
    present = tf.sparse.to_dense(tf.SparseTensor(
        tensor.indices, tf.ones_like(tensor.indices[:, 0], tf.bool), shape), False)
    return tf.reshape(values, [-1]), tf.reshape(present, [-1])
  values = tf.reshape(tensor, [-1])
  if values.dtype.is_floating:
    present = tf.logical_not(tf.math.is_nan(values))
    return tf.where(present, values, tf.zeros_like(values)), present
  if values.dtype == tf.string:
    return values, tf.not_equal(values, "")
  return values, tf.ones_like(values, tf.bool)


def _indicator(present: tf.Tensor) -> tf.Tensor:
  """[observed, missing] one-hot."""
  return tf.one_hot(tf.cast(tf.logical_not(present), tf.int32), 2)


def _fill_series(values: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
  """(batch, visits) with holes -> each hole the last observed value before it, or the
  first one after it when none is before (0 when the row has none)."""
  visits = values.shape[1]
  none = tf.fill(tf.shape(values[:, 0]), -1)
  last, before = [], none
  for visit in range(visits):
    before = tf.where(present[:, visit], visit, before)
    last.append(before)
  first, after = [None] * visits, none
  for visit in reversed(range(visits)):
    after = tf.where(present[:, visit], visit, after)
    first[visit] = after
  source = tf.where(tf.stack(last, 1) >= 0, tf.stack(last, 1), tf.stack(first, 1))
  filled = tf.gather(values, tf.maximum(source, 0), batch_dims=1)
  return tf.where(source >= 0, filled, tf.zeros_like(filled))


def visits_observed(present: tf.Tensor) -> tf.Tensor:
  """(batch, visits) presence -> the number of visits up to the last observed one."""
  visits = present.shape[1]
  weights = tf.range(1, visits + 1)[None, :]
  return tf.reduce_max(tf.where(present, weights, 0), axis=1)


def _scale(tensor: tf.Tensor, low: float, high: float) -> tf.Tensor:
  scaled = (tf.cast(tensor, tf.float32) - low) / (high - low)
  return tf.clip_by_value(scaled, 0.0, 1.0)


def _one_hot(tensor: tf.Tensor, values: List[str]) -> tf.Tensor:
  if tensor.dtype != tf.string:
    tensor = tf.strings.as_string(tensor)
  vocabulary = tf.constant(values, dtype=tf.string)
  return tf.cast(tf.equal(tensor[:, None], vocabulary[None, :]), tf.float32)


def transform_features(inputs: Dict[str, tf.Tensor], spec: DatasetSpec) -> Dict[str, tf.Tensor]:
  """Maps raw columns to model inputs: scaled numbers, one-hot categories, series matrices."""
  outputs: Dict[str, tf.Tensor] = {}
  for feature in spec.static:
    column, present = _with_presence(inputs[feature.name])
    if feature.is_categorical:
      encoded = _one_hot(column, list(feature.values))
      encoded = encoded * tf.cast(present, tf.float32)[:, None]
    else:
      encoded = tf.where(present, _scale(column, feature.min, feature.max), 0.0)
    outputs[transformed_name(feature.name)] = encoded
    if spec.models_missing:
      outputs[transformed_name(missing_key(feature.name))] = _indicator(present)
  any_present = []
  for series in spec.series:
    columns = [_with_presence(inputs[c]) for c in series.columns]
    values = tf.stack([_scale(v, series.min, series.max) for v, _ in columns], axis=1)
    present = tf.stack([p for _, p in columns], axis=1)
    outputs[transformed_name(series.name)] = _fill_series(values, present)
    any_present.append(present)
  if spec.models_missing and spec.series:
    observed = visits_observed(tf.reduce_any(tf.stack(any_present), axis=0))
    outputs[transformed_name(DROPOUT_KEY)] = tf.one_hot(observed, spec.num_visits + 1)
  outputs[LABEL_KEY] = tf.cast(_dense(inputs[spec.label_column]), tf.int64)
  for key in (spec.id_column, spec.site_column):
    if key and key in inputs:  # tables made outside the pipeline may lack them
      outputs[key] = _dense(inputs[key])
  return outputs


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict[str, Any]
                     ) -> Dict[str, tf.Tensor]:
  """tf.Transform entry point; the spec travels in Transform's custom_config."""
  return transform_features(inputs, spec_from_dict(custom_config[SPEC_KEY]))
