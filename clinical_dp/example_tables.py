"""ExampleGen's GZIP TFRecords of tf.Examples read back as a table, in batches, and a
table serialized as tf.Examples the way CsvExampleGen writes them.

The report and the federated step both read the raw splits. Parsing record by record in
Python took 11 s for 80 000 patients (two minutes a split at a million); batches of
records through tf.io.parse_example take about a tenth of that. The table is what
reading each record's values one by one would give: a feature's first value, None
(NaN in a numeric column) where a record has none, strings decoded from UTF-8, and the
column types pandas infers from those values (whole numbers stay int64 unless a value
is missing).

Writing: building one tf.train.Example per row in Python took 13 s for 80 000 synthetic
patients; `serialized_examples` hands each group of rows with the same empty cells to
tfx_bsl's C++ encoder as one Arrow batch.
"""

from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

_BATCH = 8192
_KIND_SCAN = 10_000  # records read to learn each feature's kind (float, int or bytes)


def _kinds(files: Sequence[str], keys: Sequence[str]) -> Dict[str, str]:
  """Each key's value kind ("float_list", "int64_list", "bytes_list") as the first records
  that hold it store it; keys with no value in those records read as floats (all missing)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  kinds: Dict[str, str] = {}
  dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP").take(_KIND_SCAN)
  for record in dataset.as_numpy_iterator():
    features = tf.train.Example.FromString(record).features.feature
    for key in keys:
      if key not in kinds and key in features:
        kind = features[key].WhichOneof("kind")
        if kind and len(getattr(features[key], kind).value):
          kinds[key] = kind
    if len(kinds) == len(keys):
      break
  return {key: kinds.get(key, "float_list") for key in keys}


def _column(values: np.ndarray, present: np.ndarray, kind: str) -> np.ndarray:
  """One batch of one feature: its first values, with the missing ones as None / NaN."""
  if kind == "bytes_list":
    decoded = np.array([v.decode("utf-8") for v in values], dtype=object)
    decoded[~present] = None
    return decoded
  if present.all():
    return values
  return np.where(present, values.astype(np.float64), np.nan)


def read_example_table(files: Sequence[str], keys: List[str],
                       nullable_integers: bool = False) -> pd.DataFrame:
  """The records of `files` as a table with one column per feature key in `keys`, in file
  and record order. nullable_integers: a whole-number column with a missing value is
  pandas' "Int64" (written to CSV as whole numbers), not float64."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  files = list(files)
  kinds = _kinds(files, keys)
  dtypes = {"float_list": tf.float32, "int64_list": tf.int64, "bytes_list": tf.string}
  feature_spec = {key: tf.io.VarLenFeature(dtypes[kinds[key]]) for key in keys}
  parts: Dict[str, List[np.ndarray]] = {key: [] for key in keys}
  for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(_BATCH):
    rows = int(batch.shape[0])
    for key, sparse in tf.io.parse_example(batch, feature_spec).items():
      indices = sparse.indices.numpy()
      first = indices[:, 1] == 0  # each record's first value
      values = (np.full(rows, b"", dtype=object) if kinds[key] == "bytes_list"
                else np.zeros(rows, sparse.values.dtype.as_numpy_dtype))
      present = np.zeros(rows, bool)
      values[indices[first, 0]] = sparse.values.numpy()[first]
      present[indices[first, 0]] = True
      parts[key].append(_column(values, present, kinds[key]))
  table = pd.DataFrame({key: np.concatenate(parts[key]) if parts[key] else [] for key in keys},
                       columns=keys)
  # As pandas infers them from Python values: float32 features as float64, a numeric
  # column with a missing value as float64, strings as object.
  for key in keys:
    if kinds[key] == "float_list":
      table[key] = table[key].astype(np.float64)
    elif kinds[key] == "int64_list" and nullable_integers and table[key].isna().any():
      table[key] = table[key].astype("Int64")
  return table


def _arrow_values(column: pd.Series):
  """One value per row, typed as CsvExampleGen types a CSV column: whole numbers int64,
  other numbers float32, anything else UTF-8 bytes."""
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  if pd.api.types.is_integer_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
    return pa.array(column.to_numpy(np.int64))
  if pd.api.types.is_float_dtype(column.dtype):
    return pa.array(column.to_numpy(np.float64), pa.float64()).cast(pa.float32())
  return pa.array([str(v).encode("utf-8") for v in column], pa.binary())


def serialized_examples(frame: pd.DataFrame) -> List[bytes]:
  """One serialized tf.Example per row, in row order, each feature named by its column
  and holding the cell's one value; an empty cell has no feature (as CsvExampleGen
  writes it), so rows are encoded in groups that share their empty cells."""
  # The pipeline runtime's (the federated runtime, which reads with this module, has none).
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  from tfx_bsl.coders import example_coder  # pylint: disable=import-outside-toplevel
  frame = frame.reset_index(drop=True)
  present = frame.notna().to_numpy()
  patterns, group = np.unique(present, axis=0, return_inverse=True)
  group = np.asarray(group).reshape(-1)
  order = np.argsort(group, kind="stable")
  bounds = np.searchsorted(group[order], np.arange(len(patterns) + 1))
  # A row of empty cells: an Example whose (empty) features are set, as written by hand.
  serialized: List[bytes] = [b"\n\x00"] * len(frame)
  for pattern, start, end in zip(patterns, bounds[:-1], bounds[1:]):
    rows = order[start:end]
    columns = [c for c, kept in zip(frame.columns, pattern) if kept]
    if not columns:
      continue
    offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32))
    batch = pa.RecordBatch.from_arrays(
        [pa.ListArray.from_arrays(offsets, _arrow_values(frame[c].iloc[rows]))
         for c in columns], [str(c) for c in columns])
    for row, example in zip(rows, example_coder.RecordBatchToExamples(batch)):
      serialized[row] = example
  return serialized
