"""The generator as a SavedModel whose signature returns patients in clinical units.

Undoing the scaling needs only the spec's public bounds and vocabularies, which
are baked into the graph; nothing about real patients is stored besides the DP-trained
generator weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from clinical_dp.spec import DROPOUT_KEY, DatasetSpec
from trainers import features, gan

SIGNATURE = "generate"
# Patients per call of the signature: a call holds all its patients' activations, about
# 25 kB each on the sprint table (2 GB for 80 000 in one call). Patients are independent
# draws, so calls of this size give the same distribution in about 125 MB.
GENERATE_CHUNK = 5_000


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
    flat = features.flat_features(outputs)
    holes = features.missing_cells(flat, self._layout)
    no_hole = tf.zeros_like(labels[:, 0], tf.bool)
    columns = {self._spec.label_column: tf.gather(self._label_values, labels[:, 0])}
    for index, feature in enumerate(self._spec.series):
      for visit, column in enumerate(feature.columns):
        missing = holes[DROPOUT_KEY][:, visit] if DROPOUT_KEY in holes else no_hole
        values = _unscale(flat[:, visit * self._layout.num_series + index], feature)
        columns[column] = tf.where(missing, np.nan, values)
    offsets = self._layout.block_offsets()
    for feature in self._spec.static:
      start, missing = offsets[feature.name], holes.get(feature.name, no_hole)
      if feature.is_categorical:
        block = flat[:, start:start + len(feature.values)]
        values = tf.gather(self._vocabularies[feature.name], tf.argmax(block, axis=1))
        columns[feature.name] = tf.where(missing, "", values)  # an empty cell
      else:
        columns[feature.name] = tf.where(missing, np.nan, _unscale(flat[:, start], feature))
    return columns


def export_generator(generator: tf.keras.Model, spec: DatasetSpec, latent_dim: int,
                     export_dir: str) -> str:
  module = GeneratorModule(generator, spec, latent_dim)
  tf.saved_model.save(module, export_dir, signatures={SIGNATURE: module.generate})
  return export_dir


def load_generator(export_dir: str):
  """The exported generator's sampling signature, for generate_table."""
  return tf.saved_model.load(export_dir).signatures[SIGNATURE]


def generate_table(generator, spec: DatasetSpec, num_patients: int,
                   positive_rate: float = 0.5) -> pd.DataFrame:
  """A table in the input's columns and units from an exported generator: its export
  directory, or its signature from load_generator (loaded once for many tables)."""
  signature = load_generator(generator) if isinstance(generator, str) else generator
  columns = [spec.label_column] + spec.feature_columns
  chunks = []
  for start in range(0, num_patients or 1, GENERATE_CHUNK):  # one call for no patients
    outputs = signature(
        num_patients=tf.constant(min(GENERATE_CHUNK, num_patients - start), tf.int32),
        positive_rate=tf.constant(positive_rate, tf.float32))
    chunks.append(pd.DataFrame({c: outputs[c].numpy() for c in columns}))
  frame = pd.concat(chunks, ignore_index=True)
  for column in frame.columns:
    if frame[column].dtype == object:
      frame[column] = frame[column].str.decode("utf-8").replace("", None)
  integers = [f.name for f in spec.static if f.integer and not f.is_categorical]
  integers += [c for s in spec.series if s.integer for c in s.columns]
  for column in integers:  # nullable where the generator left a hole
    frame[column] = frame[column].astype("Int64" if frame[column].hasnans else "int64")
  # float32 holds 1.1 as 1.10000002: round again in float64 for the CSV
  reported = [([f.name], f.decimals) for f in spec.static if not f.is_categorical]
  reported += [(list(s.columns), s.decimals) for s in spec.series]
  for names, decimals in reported:
    if decimals:
      frame[names] = frame[names].astype("float64").round(decimals)
  return frame
