"""Batched reading of ExampleGen's records against reading them one by one."""

import numpy as np
import pandas as pd
import tensorflow as tf

from clinical_dp import example_tables


def _example(values: dict) -> bytes:
  """A tf.Example as CsvExampleGen writes one: an empty cell has no feature."""
  feature = {}
  for key, value in values.items():
    if value is None:
      continue
    if isinstance(value, str):
      feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    elif isinstance(value, int):
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    else:
      feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _one_by_one(files, keys) -> pd.DataFrame:
  """The reference: each record's first value of each key, None where it has none."""
  rows = []
  for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
    features = tf.train.Example.FromString(record).features.feature
    row = {}
    for key in keys:
      kind = features[key].WhichOneof("kind") if key in features else None
      values = getattr(features[key], kind).value if kind else []
      value = values[0] if len(values) else None
      row[key] = value.decode("utf-8") if isinstance(value, bytes) else value
    rows.append(row)
  return pd.DataFrame(rows, columns=keys)


def _write(path, rows) -> str:
  with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
    for row in rows:
      writer.write(_example(row))
  return str(path)


def test_batches_give_the_table_that_reading_record_by_record_gives(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  rows = [{"age": int(rng.integers(18, 90)),  # whole numbers, never missing
           "creatinine": None if rng.random() < 0.2 else float(np.float32(rng.lognormal())),
           "visits": None if rng.random() < 0.1 else int(rng.integers(0, 5)),
           "Größe (cm)": None if i < 30 else "groß",  # missing in every early record
           "never": None}
          for i in range(50)]
  files = [_write(tmp_path / "a.gz", rows[:23]), _write(tmp_path / "b.gz", rows[23:])]
  keys = list(rows[0])
  monkeypatch.setattr(example_tables, "_BATCH", 7)  # batches that span both files
  expected = _one_by_one(files, keys)
  table = example_tables.read_example_table(files, keys)
  pd.testing.assert_frame_equal(table.drop(columns="never"), expected.drop(columns="never"))
  assert table["never"].isna().all() and table["age"].dtype == np.int64
  assert table["visits"].dtype == np.float64 and table["visits"].isna().sum() == \
      sum(r["visits"] is None for r in rows)
  # For a CSV: whole numbers with holes stay whole numbers.
  nullable = example_tables.read_example_table(files, keys, nullable_integers=True)
  assert str(nullable["visits"].dtype) == "Int64"
  assert "3.0" not in nullable[["visits"]].to_csv(index=False)
  assert nullable["age"].dtype == np.int64  # no hole: plain int64


def test_a_table_serializes_to_the_examples_written_row_by_row():
  """Grouped Arrow encoding against one tf.Example per row built in Python, as CsvExampleGen
  writes them: int64 for whole numbers (nullable ones too), float32 for the rest, UTF-8
  bytes for text, and no feature for an empty cell (not an empty one)."""
  rng = np.random.default_rng(1)
  n = 60
  frame = pd.DataFrame({
      "age": rng.integers(18, 90, n),
      "creatinine": np.where(rng.random(n) < 0.3, np.nan, rng.lognormal(size=n).round(2)),
      "visits": pd.array(np.where(rng.random(n) < 0.2, None, rng.integers(0, 5, n)),
                         dtype="Int64"),
      "Größe (cm)": np.where(rng.random(n) < 0.5, None, "groß"),
  })
  frame.loc[7, ["creatinine", "visits", "Größe (cm)"]] = [np.nan, pd.NA, None]
  frame.loc[9, :] = [None] * 4  # no cell at all: an Example without features
  frame = frame.astype({"age": "Int64"})
  expected = [_example({k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                        for k, v in row.items()}) for row in frame.to_dict("records")]
  got = example_tables.serialized_examples(frame.set_index(np.arange(100, 100 + n)))
  assert len(got) == n
  for i, (want, have) in enumerate(zip(expected, got)):
    assert tf.train.Example.FromString(have) == tf.train.Example.FromString(want), i
  assert "creatinine" not in tf.train.Example.FromString(got[7]).features.feature
  assert got[9] == tf.train.Example(features=tf.train.Features()).SerializeToString()


def test_the_reports_member_records_are_the_rows_its_table_holds(tmp_path):
  """records_at keeps the split's serialized records at the sampled positions, in the
  order read_split gives the rows (files and records as globbed and written)."""
  from clinical_dp.spec import parse_spec  # pylint: disable=g-import-not-at-top
  from components import evaluation_report  # pylint: disable=g-import-not-at-top
  spec = parse_spec("""
name: tiny
label_column: died
id_column: patient_id
static:
  - {name: age, type: numeric, min: 0, max: 120}
""")
  split = tmp_path / "Split-train"
  split.mkdir()
  rows = [{"patient_id": f"p{i}", "age": float(20 + i), "died": i % 2} for i in range(40)]
  _write(split / "data-00000-of-00002.gz", rows[:25])
  _write(split / "data-00001-of-00002.gz", rows[25:])
  table = evaluation_report.read_split(str(tmp_path), "train", spec)
  positions = np.array([39, 0, 24, 25, 7])
  records = evaluation_report.records_at(str(tmp_path), "train", positions)
  for position, record in zip(positions, records):
    features = tf.train.Example.FromString(record).features.feature
    assert features["patient_id"].bytes_list.value[0].decode() == \
        table["patient_id"].iloc[position]
