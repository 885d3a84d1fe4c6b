"""Column names a CSV header can hold, and label classes as users write them (issue 12).

Cheap checks over a generated corpus: the one name mapping (clinical_dp/names.py), the
label mapping of validation, the prepared input, the split computed before ExampleGen,
and the TensorFlow signatures that once broke on such names.
"""

import keyword

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from clinical_dp.names import ColumnKeys, _is_safe, user_labels
from clinical_dp.spec import parse_spec, spec_from_dict
from clinical_dp.validation import prepared_table, validate_table, write_prepared_input
from clinical_dp.example_gen_split import example_gen_splits

ODD_NAMES = ["lambda", "class", "type", "id", "heart rate (bpm)", "Température", "größe",
             "2nd-score.v1", "a/b", "a b", "a_b", "%", "SpO2 %", "Age", "age", "AGE",
             "label", "label_xf", "x_xf", "ünïcödé", "日本語", "", "print", "def"]
LABEL_CASES = [  # (YAML for the two classes, CSV cells of the positive and negative class)
    ("label_positive: 1", ("1", "0")),
    ("label_positive: 2\nlabel_negative: 1", ("2", "1")),
    ("label_positive: A\nlabel_negative: P", ("A", "P")),
    ("label_positive: dead\nlabel_negative: alive", ("dead", "alive")),
    ("label_positive: Yes\nlabel_negative: No", ("Yes", "No")),
    ("label_positive: yes\nlabel_negative: no", ("yes", "no")),
    ("label_positive: TRUE\nlabel_negative: FALSE", ("TRUE", "FALSE")),
    ("label_positive: true\nlabel_negative: false", ("true", "false")),
    ("label_positive: 'Y'\nlabel_negative: 'N'", ("Y", "N")),
]


def _odd_spec(names):
  """A spec whose static columns carry the given names (blank ones left out)."""
  names = [n for n in names if n]
  return spec_from_dict({
      "name": "odd", "id_column": "Patient ID", "label_column": "outcome (28-day)",
      "site_column": "Site/Centre",
      "static": [{"name": n, "type": "numeric", "min": 0, "max": 10} for n in names],
      "series": [{"name": "S.B.P", "min": 60, "max": 260, "columns": ["SBP v1", "sbp.v2"]}]})


def test_every_name_gets_a_unique_safe_key_and_maps_back():
  spec = _odd_spec(ODD_NAMES)
  keys = ColumnKeys.for_spec(spec)
  every = spec.required_columns + [s.name for s in spec.series]
  mapped = [keys.key(n) for n in every]
  assert len(set(mapped)) == len(set(every))
  for name, key in zip(every, mapped):
    assert _is_safe(key), (name, key)
    assert key.isidentifier() and not keyword.iskeyword(key) and key == key.lower()
    assert keys.name(key) == name
  # Names that are already safe keep themselves, so plain tables are unchanged.
  assert keys.key("age") == "age" and keys.key("a_b") == "a_b"
  assert keys.key("Age") != keys.key("AGE")
  assert keys.key("Température") == "temperature" and keys.key("größe") == "grosse"


def test_keys_depend_on_the_spec_alone():
  spec = _odd_spec(ODD_NAMES)
  assert ColumnKeys.for_spec(spec) == ColumnKeys.for_spec(parse_spec(spec.to_yaml()))


def test_internal_spec_round_trips_through_yaml_and_is_binary():
  spec = _odd_spec(ODD_NAMES)
  internal = ColumnKeys.for_spec(spec).internal_spec(spec)
  assert (internal.label_positive, internal.label_negative) == (1, 0)
  assert parse_spec(internal.to_yaml()) == internal
  assert all(_is_safe(c) for c in internal.required_columns)


def _table(spec, positive, negative, n=40, seed=0):
  rng = np.random.default_rng(seed)
  frame = pd.DataFrame({spec.id_column: [f"P{i:03d}" for i in range(n)],
                        spec.site_column: rng.choice(["A", "B"], n),
                        spec.label_column: [positive if i % 2 else negative for i in range(n)]})
  for feature in spec.static:
    frame[feature.name] = rng.uniform(0, 10, n).round(2)
  for series in spec.series:
    for column in series.columns:
      frame[column] = rng.uniform(100, 180, n).round(1)
  return frame


@pytest.mark.parametrize("label_yaml, cells", LABEL_CASES)
def test_label_classes_as_written_map_to_one_and_zero(tmp_path, label_yaml, cells):
  spec = parse_spec(f"name: t\nlabel_column: Outcome\n{label_yaml}\n"
                    "static: [{name: x, type: numeric, min: 0, max: 10}]\n")
  assert (str(spec.label_positive), str(spec.label_negative)) == cells
  path = tmp_path / "data.csv"
  pd.DataFrame({"Outcome": [cells[0], cells[1], cells[0]], "x": [1, 2, 3]}).to_csv(
      path, index=False)
  report = validate_table(str(path), spec)
  assert report.ok, report.findings
  assert report.table["Outcome"].tolist() == [1, 0, 1]
  assert user_labels(report.table["Outcome"], spec).astype(str).tolist() == [
      cells[0], cells[1], cells[0]]
  # The spec written back (e.g. for the pipeline's components) keeps the same classes.
  assert parse_spec(spec.to_yaml()).label_positive == spec.label_positive


def test_a_label_value_that_is_neither_class_is_refused(tmp_path):
  spec = parse_spec("name: t\nlabel_column: y\nlabel_positive: Yes\nlabel_negative: No\n"
                    "static: [{name: x, type: numeric, min: 0, max: 10}]\n")
  path = tmp_path / "data.csv"
  pd.DataFrame({"y": ["Yes", "True"], "x": [1, 2]}).to_csv(path, index=False)
  finding = validate_table(str(path), spec).findings[0]
  assert finding.column == "y" and "neither class" in finding.rule and "True" in finding.detail


def test_prepared_input_has_keys_binary_labels_and_the_input_untouched(tmp_path):
  spec = _odd_spec(ODD_NAMES)
  source = tmp_path / "odd.csv"
  _table(spec, "died", "survived").to_csv(source, index=False)
  spec = spec_from_dict({**spec.to_dict(), "label_positive": "died",
                         "label_negative": "survived"})
  before = source.read_bytes()
  report = validate_table(str(source), spec)
  assert report.ok, report.findings
  written = pd.read_csv(write_prepared_input(report.table, spec, str(tmp_path / "input")))
  keys = ColumnKeys.for_spec(spec)
  assert list(written.columns) == [keys.key(c) for c in spec.required_columns]
  assert set(written[keys.key(spec.label_column)]) == {0, 1}
  assert source.read_bytes() == before


@pytest.mark.parametrize("with_id", [True, False])
def test_split_is_by_patient_and_deterministic(with_id):
  spec = _odd_spec(["age"])
  table = _table(spec, 1, 0, n=300)
  if not with_id:
    spec = spec_from_dict({k: v for k, v in spec.to_dict().items() if k != "id_column"})
    table = table.drop(columns=["Patient ID"])
  prepared = prepared_table(table, spec)
  key = ColumnKeys.for_spec(spec).key(spec.id_column) if with_id else None
  buckets = {"train": 8, "eval": 1, "test": 1}
  first = example_gen_splits(prepared, buckets, key)
  assert first.equals(example_gen_splits(prepared, buckets, key))
  shares = first.value_counts(normalize=True)
  assert 0.7 < shares["train"] < 0.9 and shares["test"] > 0.04 and shares["eval"] > 0.04


def test_tensorflow_signatures_accept_every_key(tmp_path):
  """The failures of issue 12: a Python keyword as a keyword argument (the classifier's
  features signature) and non-ASCII names in a SavedModel signature (federated)."""
  spec = _odd_spec(ODD_NAMES)
  internal = ColumnKeys.for_spec(spec).internal_spec(spec)
  specs = {c: tf.TensorSpec([None, 1], tf.float32, name=c) for c in internal.feature_columns}
  module = tf.Module()
  module.f = tf.function(lambda **raw: {"sum": tf.add_n(list(raw.values()))})
  concrete = module.f.get_concrete_function(**specs)
  tf.saved_model.save(module, str(tmp_path), signatures={"s": concrete})
  loaded = tf.saved_model.load(str(tmp_path)).signatures["s"]
  assert set(loaded.structured_input_signature[1]) == set(internal.feature_columns)


@pytest.mark.parametrize("name", ["lambda", "Température"])
def test_the_raw_names_themselves_break_a_signature(tmp_path, name):
  """The control for the test above: without the mapping, TensorFlow refuses them."""
  names = [name, name.upper()] if name != "lambda" else [name]
  module = tf.Module()
  module.f = tf.function(lambda **raw: {"sum": tf.add_n(list(raw.values()))})
  with pytest.raises((ValueError, TypeError, SyntaxError)):
    concrete = module.f.get_concrete_function(
        **{n: tf.TensorSpec([None, 1], tf.float32, name=n) for n in names})
    tf.saved_model.save(module, str(tmp_path), signatures={"s": concrete})
