"""The generator as a SavedModel whose signature returns patients in clinical units.

Undoing the scaling needs only the spec's public bounds and vocabularies, which
are baked into the graph; nothing about real patients is stored besides the DP-trained
generator weights.
"""

from __future__ import annotations

import pandas as pd
import tensorflow as tf

from clinical_dp.spec import DatasetSpec
from trainers import gan

SIGNATURE = "generate"


def _unscale(values: tf.Tensor, feature) -> tf.Tensor:
  """[0, 1] -> clinical units, rounded to the feature's reporting precision."""
  clinical = feature.min + tf.clip_by_value(values, 0.0, 1.0) * (feature.max - feature.min)
  if feature.rounding is None:
    return clinical
  step = 10.0 ** feature.rounding
  return tf.round(clinical * step) / step


def _label_values(spec: DatasetSpec) -> tf.Tensor:
  negative, positive = spec.label_negative, spec.label_positive
  if isinstance(negative, int) and isinstance(positive, int):
    return tf.constant([negative, positive], tf.int64)
  return tf.constant([str(negative), str(positive)])


class GeneratorModule(tf.Module):
  """Wraps the Keras generator with the spec's decoding."""

  def __init__(self, generator: tf.keras.Model, spec: DatasetSpec, latent_dim: int):
    super().__init__()
    self.generator = generator
    self._spec = spec
    self._layout = gan.PatientLayout.from_spec(spec)
    self._latent_dim = latent_dim
    self._label_values = _label_values(spec)
    self._vocabularies = {f.name: tf.constant(list(f.values)) for f in spec.static
                          if f.is_categorical}

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="num_patients"),
                                tf.TensorSpec([], tf.float32, name="positive_rate")])
  def generate(self, num_patients, positive_rate):
    latent = tf.random.normal(tf.stack([num_patients, self._latent_dim]))
    labels = tf.cast(tf.random.uniform(tf.stack([num_patients, 1])) < positive_rate, tf.int32)
    outputs = self.generator([latent, labels], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    columns = {self._spec.label_column: tf.gather(self._label_values, labels[:, 0])}
    if self._layout.has_series:
      series = outputs[0]
      for index, feature in enumerate(self._spec.series):
        for visit, column in enumerate(feature.columns):
          columns[column] = _unscale(series[:, visit, index], feature)
    if self._layout.has_static:
      static, offset = outputs[-1], 0
      numeric = [f for f in self._spec.static if not f.is_categorical]
      for feature in numeric:
        columns[feature.name] = _unscale(static[:, offset], feature)
        offset += 1
      for feature in self._spec.static:
        if feature.is_categorical:
          block = static[:, offset:offset + len(feature.values)]
          columns[feature.name] = tf.gather(self._vocabularies[feature.name],
                                            tf.argmax(block, axis=1))
          offset += len(feature.values)
    return columns


def export_generator(generator: tf.keras.Model, spec: DatasetSpec, latent_dim: int,
                     export_dir: str) -> str:
  module = GeneratorModule(generator, spec, latent_dim)
  tf.saved_model.save(module, export_dir, signatures={SIGNATURE: module.generate})
  return export_dir


def generate_table(export_dir: str, spec: DatasetSpec, num_patients: int,
                   positive_rate: float = 0.5) -> pd.DataFrame:
  """Loads an exported generator and returns a table in the input's columns and units."""
  signature = tf.saved_model.load(export_dir).signatures[SIGNATURE]
  outputs = signature(num_patients=tf.constant(num_patients, tf.int32),
                      positive_rate=tf.constant(positive_rate, tf.float32))
  columns = [spec.label_column] + spec.feature_columns
  frame = pd.DataFrame({c: outputs[c].numpy() for c in columns})
  for column in frame.columns:
    if frame[column].dtype == object:
      frame[column] = frame[column].str.decode("utf-8")
  integers = [f.name for f in spec.static if f.integer and not f.is_categorical]
  integers += [c for s in spec.series if s.integer for c in s.columns]
  frame[integers] = frame[integers].astype("int64")
  # float32 holds 1.1 as 1.10000002: round again in float64 for the CSV
  reported = [([f.name], f.decimals) for f in spec.static if not f.is_categorical]
  reported += [(list(s.columns), s.decimals) for s in spec.series]
  for names, decimals in reported:
    if decimals:
      frame[names] = frame[names].astype("float64").round(decimals)
  return frame
