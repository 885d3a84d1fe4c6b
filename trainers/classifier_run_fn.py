"""TFX Trainer entry point for the DP classifier: `run_fn` on Transform's output.

custom_config carries the dataset spec ("spec"), ClassifierConfig overrides
("classifier"), the privacy budget ("budget"), whether the model is private
("private", default true) and, optionally, an explicit seed ("seed"; without it, a
secret one). The model (serving_model_dir) answers on raw clinical
features: its signatures apply the Transform graph, so serving cannot drift from
training. The non-private twin is the same run_fn with "private" false, run by a
Trainer of its own so that TFX's Evaluator can compare the two; it is never released
and its directory says so instead of carrying a privacy record.
"""

import dataclasses
import os

import tensorflow as tf
import tensorflow_transform as tft

from clinical_dp import secret_seed
from clinical_dp.spec import DatasetSpec, spec_from_dict
from trainers import classifier, dp_training, features
from trainers.preprocessing import COLUMN_NAMES_KEY, SPEC_KEY

CLASSIFIER_KEY = "classifier"
BUDGET_KEY = "budget"
PRIVATE_KEY = "private"
NOT_PRIVATE_FILE = "NOT_PRIVATE"
FEATURES_SIGNATURE = "predict_features"


class ClassifierModule(tf.Module):
  """The Keras classifier behind the Transform graph, with two serving signatures."""

  def __init__(self, model: tf.keras.Model, transform_output: tft.TFTransformOutput,
               spec: DatasetSpec):
    super().__init__()
    self.model = model
    self.transform_layer = transform_output.transform_features_layer()
    self._spec = spec
    raw_spec = transform_output.raw_feature_spec()
    # Columns the model does not use (label, id, site) are fed as placeholders, so the
    # Transform graph runs whole; their outputs are ignored.
    self._raw_spec = raw_spec
    self._feature_spec = {c: raw_spec[c] for c in spec.feature_columns}

  def _predict(self, raw):
    batch = tf.shape(next(iter(raw.values())))[0]
    complete = dict(raw)
    for column, feature in self._raw_spec.items():
      if column not in complete:
        complete[column] = tf.zeros([batch] + list(feature.shape), feature.dtype)
      elif (isinstance(feature, tf.io.VarLenFeature)
            and not isinstance(complete[column], tf.SparseTensor)):
        complete[column] = _holes_dropped(complete[column], feature.dtype)
    transformed = self.transform_layer(complete)
    logit = self.model(features.flat_features(features.network_inputs(transformed, self._spec)))
    return {"logit": logit, "probability": tf.sigmoid(logit)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
  def serve_examples(self, serialized):
    """Serialized tf.Examples with the raw clinical feature columns (TFX and TFMA style)."""
    return self._predict(tf.io.parse_example(serialized, self._feature_spec))

  def features_signature(self):
    """One tensor per raw feature column, shaped [batch, 1] as in the Examples; with
    missing values modeled a hole is NaN in a number (a nullable integer column is then
    taken as float32), "" in a text column."""
    specs = {column: tf.TensorSpec([None] + list(getattr(feature, "shape", [1])),
                                   _signature_dtype(feature), name=column)
             for column, feature in self._feature_spec.items()}
    return tf.function(lambda **raw: self._predict(raw)).get_concrete_function(**specs)


def _signature_dtype(feature) -> tf.DType:
  """A nullable integer column is sent as float32, so that NaN can mark its holes."""
  if isinstance(feature, tf.io.VarLenFeature) and feature.dtype.is_integer:
    return tf.float32
  return feature.dtype


def _holes_dropped(dense: tf.Tensor, dtype: tf.DType) -> tf.SparseTensor:
  """A [batch, 1] column with NaN or "" for its holes -> the SparseTensor of `dtype` a
  nullable column arrives as from tf.Examples (trainers/preprocessing.py reads its holes)."""
  if dense.dtype.is_floating:
    present = tf.logical_not(tf.math.is_nan(dense))
  elif dense.dtype == tf.string:
    present = tf.not_equal(dense, "")
  else:
    present = tf.ones_like(dense, tf.bool)
  indices = tf.where(present)
  values = tf.gather_nd(dense, indices)
  if dtype.is_integer and values.dtype.is_floating:
    values = tf.cast(tf.round(values), dtype)
  return tf.SparseTensor(indices, values, tf.shape(dense, tf.int64))


def export_classifier(model: tf.keras.Model, transform_output: tft.TFTransformOutput,
                      spec: DatasetSpec, export_dir: str) -> str:
  module = ClassifierModule(model, transform_output, spec)
  tf.saved_model.save(module, export_dir, signatures={
      "serving_default": module.serve_examples.get_concrete_function(),
      FEATURES_SIGNATURE: module.features_signature()})
  return export_dir


def run_fn(fn_args) -> None:
  """Trains the DP classifier (or its non-private twin) on the train split."""
  custom = fn_args.custom_config or {}
  spec = spec_from_dict(custom[SPEC_KEY])
  private = bool(custom.get(PRIVATE_KEY, True))
  config = dataclasses.replace(classifier.ClassifierConfig(),
                               **{**custom.get(CLASSIFIER_KEY, {}), "private": private})
  budget = dp_training.PrivacyBudget(**custom.get(BUDGET_KEY, {}))
  transform_output = tft.TFTransformOutput(fn_args.transform_output)
  transformed = features.load_transformed(fn_args.train_files, fn_args.transform_output)
  inputs, labels = features.layout_arrays(transformed, spec)
  x, y = features.flatten_inputs(inputs), labels.reshape(-1)
  max_rows = features.max_rows_per_patient(transformed, spec.id_column)
  model, record = classifier.train_classifier(x, y, config, budget,
                                              seed=custom.get(dp_training.SEED_KEY),
                                              max_rows_per_patient=max_rows)
  export_classifier(model, transform_output, spec, fn_args.serving_model_dir)
  features.write_signature_inputs(
      fn_args.serving_model_dir, custom.get(COLUMN_NAMES_KEY, {}),
      {FEATURES_SIGNATURE: spec.feature_columns,
       "serving_default (tf.Example feature keys)": spec.feature_columns})
  if not private:
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, NOT_PRIVATE_FILE), "w") as f:
      f.write("non-private twin for comparison only: no privacy guarantee; never release\n")
    return
  dp_training.write_privacy_record(
      fn_args.serving_model_dir, record, model=f"dp_{config.kind}_classifier",
      target_epsilon=budget.target_epsilon,
      randomness=secret_seed.describe(custom.get(dp_training.SEED_KEY)),
      noise_multiplier_source=("configured" if config.noise_multiplier is not None
                               else "solved for the target epsilon"),
      classifier_config=dict(dataclasses.asdict(config), batch_size=record.batch_size))
