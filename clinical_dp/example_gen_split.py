"""The train / eval / test split that CsvExampleGen will make, computed before it runs.

ExampleGen assigns a row by SHA-256 of a partition key modulo the total hash buckets:
the deterministic serialization of the patient id feature (`partition_feature_name`),
or of the whole tf.Example when there is no id column. The key is the tf.Example
wire format of the prepared CSV's cells as tfx_bsl's CSV decoder types them (a column
is INT if every cell is an int64, else FLOAT if every cell is a number, else bytes),
so it can be written out here without TensorFlow. Knowing the split in advance lets
`run` refuse a table whose splits could not be trained or scored, before the pipeline
starts, and the federated step's child start on the prepared CSV while ExampleGen runs
(federated/site_data.py: load_prepared). It lives here, outside pipelines/, because the
federated runtime imports it too. tests/test_pipeline_e2e.py checks it against
ExampleGen's real output.
"""

from __future__ import annotations

import bisect
import csv
import functools
import hashlib
import io
import struct
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
INT, FLOAT, STRING = 0, 1, 2


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # negative int64s are ten bytes, as protobuf writes them
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _cell_type(cell: str) -> int:
  if not cell:
    return INT  # empty cells do not raise the column's type (UNKNOWN in tfx_bsl)
  try:
    return INT if _INT64_MIN <= int(cell) <= _INT64_MAX else STRING
  except ValueError:
    try:
      float(cell)
    except ValueError:
      return STRING
    return FLOAT


def column_types(rows: Sequence[Sequence[str]], width: int) -> List[int]:
  types = [INT] * width
  for row in rows:
    for i, cell in enumerate(row):
      types[i] = max(types[i], _cell_type(cell))
  return types


def feature_bytes(cell: str, kind: int) -> bytes:
  """tf.train.Feature of one CSV cell, serialized (bytes_list 1, float_list 2, int64_list 3;
  numeric lists are packed). An empty cell is a feature with an empty list of its
  column's kind, as CsvExampleGen writes it."""
  if not cell:
    return _field({INT: 3, FLOAT: 2}.get(kind, 1), b"")
  if kind == INT:
    return _field(3, _field(1, _varint(int(cell))))
  if kind == FLOAT:
    return _field(2, _field(1, struct.pack("<f", np.float32(float(cell)))))
  return _field(1, _field(1, cell.encode("utf-8")))


def _map_order(a: bytes, b: bytes) -> int:
  """The order of deterministic map serialization (protobuf's upb runtime, as installed):
  bytewise on the common prefix; when one key is a prefix of the other, the longer first."""
  common = min(len(a), len(b))
  if a[:common] != b[:common]:
    return -1 if a[:common] < b[:common] else 1
  return len(b) - len(a)


def example_bytes(header: Sequence[str], row: Sequence[str], types: Sequence[int]) -> bytes:
  """tf.train.Example with one feature per column, serialized deterministically."""
  named = sorted(zip((name.encode("utf-8") for name in header), row, types),
                 key=functools.cmp_to_key(lambda x, y: _map_order(x[0], y[0])))
  entries = b"".join(_field(1, _field(1, name) + _field(2, feature_bytes(cell, kind)))
                     for name, cell, kind in named)
  return _field(1, entries)


def example_gen_splits(prepared: pd.DataFrame, buckets: Dict[str, int], partition_column=None,
                       csv_text: str = "") -> pd.Series:
  """The split name of each row of the prepared table, as CsvExampleGen assigns it.

  `buckets` maps split names to hash buckets in order (train 8, eval 1, test 1);
  `csv_text` is the prepared CSV as written (rendered from `prepared` when empty). With
  a partition column only that column is rendered: its cells and its type are all the
  key depends on (rendering and typing all 46 columns of a million rows took 130 s)."""
  rendered = prepared if partition_column is None else prepared[[partition_column]]
  text = csv_text or rendered.to_csv(index=False, float_format="%.6f")
  reader = csv.reader(io.StringIO(text))
  header = next(reader)
  rows = list(reader)
  types = column_types(rows, len(header))
  edges = list(np.cumsum(list(buckets.values())))
  names = list(buckets)
  if partition_column is not None:
    index = header.index(partition_column)
    keys = [feature_bytes(row[index], types[index]) for row in rows]
  else:
    keys = [example_bytes(header, row, types) for row in rows]
  assigned = [names[bisect.bisect(edges, int(hashlib.sha256(k).hexdigest(), 16) % edges[-1])]
              for k in keys]
  return pd.Series(assigned, index=prepared.index)
