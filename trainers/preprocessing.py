"""Transform's preprocessing_fn, built from the dataset spec.

Scaling uses only the spec's public clinical bounds and categorical encoding only
the spec's vocabulary: no tf.Transform analyzer touches the data, so nothing fed
to DP training depends on patients through preprocessing.
"""

from typing import Any, Dict, List

import tensorflow as tf

from clinical_dp.spec import DatasetSpec, spec_from_dict

LABEL_KEY = "label_xf"
SPEC_KEY = "spec"
# {feature key: column name in the user's table}, for the models' documented inputs.
COLUMN_NAMES_KEY = "column_names"


def transformed_name(name: str) -> str:
  return f"{name}_xf"


def _dense(tensor: tf.Tensor) -> tf.Tensor:
  """The schema makes every column a required scalar, which arrives as [batch, 1]."""
  if isinstance(tensor, tf.SparseTensor):
    tensor = tf.sparse.to_dense(tensor)
  return tf.reshape(tensor, [-1])


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
    column = _dense(inputs[feature.name])
    if feature.is_categorical:
      outputs[transformed_name(feature.name)] = _one_hot(column, list(feature.values))
    else:
      outputs[transformed_name(feature.name)] = _scale(column, feature.min, feature.max)
  for series in spec.series:
    visits = [_scale(_dense(inputs[c]), series.min, series.max) for c in series.columns]
    outputs[transformed_name(series.name)] = tf.stack(visits, axis=1)
  outputs[LABEL_KEY] = tf.cast(_dense(inputs[spec.label_column]), tf.int64)
  for key in (spec.id_column, spec.site_column):
    if key and key in inputs:  # tables made outside the pipeline may lack them
      outputs[key] = _dense(inputs[key])
  return outputs


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict[str, Any]
                     ) -> Dict[str, tf.Tensor]:
  """tf.Transform entry point; the spec travels in Transform's custom_config."""
  return transform_features(inputs, spec_from_dict(custom_config[SPEC_KEY]))
