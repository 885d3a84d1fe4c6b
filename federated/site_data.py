"""Loads a clinical table into per-site, per-split feature matrices.

Three sources, the same rules as the pipeline:
  a CSV + dataset spec (checked with the pipeline's own validation, which decides which
    rows are kept: complete-case rows, or with `missing: model` every row with a label;
    patients split 8:1:1 train / eval / test by a hash of the patient id, so all rows
    of a patient land in one split);
  a pipeline Examples directory (CsvExampleGen output: `Split-train/`, `Split-eval/`,
    `Split-test/` of GZIP TFRecords of raw tf.Examples), whose split is ExampleGen's
    patient hash split; each split goes through the same validation;
  the pipeline's prepared input (the CSV CsvExampleGen reads), split as ExampleGen will
    split it (clinical_dp/example_gen_split.py), so that the federated step can start
    while ExampleGen runs: the same rows, the same split and, in the canonical row order
    below, the same arrays as ExampleGen's examples give
    (tests/test_pipeline_e2e.py compares them).
Each split's rows are put in one canonical order (`_canonical_order`), whatever the
source: ExampleGen's shards hold them in no fixed order, and the seeded draws of
training depend on it.
Features are scaled by the spec's public bounds and one-hot encoded over the spec's
categories (as trainers/preprocessing.py does): nothing here depends on the data's
statistics, so preprocessing costs no privacy. With `missing: model` the holes follow
trainers/preprocessing.py's public rule too (its module docstring): a missing number is
0, a missing category all zeros, each static column gains a "<name> missing" column,
each series is filled from its nearest observed visit (earlier first) and the series
share a one-hot dropout code "visits observed=<k>". The rule is re-implemented here in
NumPy because the federated runtime cannot import TensorFlow Transform;
tests/test_federated_encode_equivalence.py holds the two to the same values. The test
split is only ever used for the final evaluation.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from clinical_dp.example_gen_split import example_gen_splits
from clinical_dp.example_tables import read_example_table
from clinical_dp.names import ColumnKeys
from clinical_dp.spec import DatasetSpec, SpecError, load_spec, parse_spec
from clinical_dp.validation import InvalidInputError, validate_table

SPLITS = ("train", "eval", "test")
_HASH_BUCKETS = {"train": 8, "eval": 1, "test": 1}  # the pipeline's SplitConfig


class DataError(ValueError):
  """Input that cannot be used: one line naming the file, column or rule."""


@dataclasses.dataclass(frozen=True)
class SiteData:
  """One site's rows of one split, as model inputs."""
  x: np.ndarray             # [rows, features] float32 in [0, 1]
  y: np.ndarray             # [rows] float32 0/1
  patient: np.ndarray       # [rows] int32 patient index within this site and split
  num_patients: int

  @property
  def rows(self) -> int:
    return int(self.x.shape[0])

  def max_rows_per_patient(self) -> int:
    return int(np.bincount(self.patient).max()) if self.rows else 0


@dataclasses.dataclass(frozen=True)
class FederatedData:
  """Every site's train, eval and test data, with where it came from."""
  sites: Tuple[str, ...]
  splits: Dict[str, Dict[str, SiteData]]   # split -> site -> data
  feature_names: Tuple[str, ...]
  source: str
  spec_name: str

  def pooled(self, split: str) -> SiteData:
    parts = [self.splits[split][s] for s in self.sites if self.splits[split][s].rows]
    offsets = np.cumsum([0] + [p.num_patients for p in parts])
    return SiteData(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                    np.concatenate([p.patient + o for p, o in zip(parts, offsets)]).astype(
                        np.int32), int(offsets[-1]))

  def summary(self) -> Dict:
    return {"source": self.source, "spec": self.spec_name, "features": len(self.feature_names),
            "rows": {split: {s: self.splits[split][s].rows for s in self.sites}
                     for split in SPLITS},
            "patients": {split: {s: self.splits[split][s].num_patients for s in self.sites}
                         for split in SPLITS}}


def read_spec(path: Optional[str] = None, text: Optional[str] = None) -> DatasetSpec:
  try:
    spec = load_spec(path) if path else parse_spec(text, source="--spec-yaml")
  except SpecError as e:
    raise DataError(str(e)) from e
  if not spec.site_column:
    raise DataError(f"{path or '--spec-yaml'}: the spec names no site_column; federated "
                    "learning needs the site of each row")
  return spec


def feature_names(spec: DatasetSpec) -> Tuple[str, ...]:
  """One name per column of `encode`, in its order."""
  names: List[str] = []
  for feature in spec.static:
    if feature.is_categorical:
      names += [f"{feature.name}={value}" for value in feature.values]
    else:
      names.append(feature.name)
    if spec.models_missing:
      names.append(f"{feature.name} missing")
  for series in spec.series:
    names += list(series.columns)
  if spec.models_missing and spec.series:
    names += [f"visits observed={k}" for k in range(spec.num_visits + 1)]
  return tuple(names)


def encode(table: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
  """Scaled numbers and one-hot categories, by the spec's bounds and values only.

  Holes (NaN, <NA>, None) are encoded as trainers/preprocessing.py encodes them. The
  pipeline's indicator is a one-hot [observed, missing]; here it is only its "missing"
  column, since "observed" is its complement and would add nothing to a model with a
  bias but a second coordinate for the DP clipping norm to spend on."""
  columns = []
  for feature in spec.static:
    values = table[feature.name]
    present = values.notna().to_numpy()
    if feature.is_categorical:
      text = values.astype(str).to_numpy()
      columns += [((text == v) & present).astype(np.float32) for v in feature.values]
    else:
      columns.append(np.where(present, _scale(values, feature.min, feature.max), 0.0))
    if spec.models_missing:
      columns.append((~present).astype(np.float32))
  observed = []
  for series in spec.series:
    cells = table[list(series.columns)]
    present = cells.notna().to_numpy()
    scaled = np.stack([_scale(cells[c], series.min, series.max) for c in series.columns], 1)
    columns += list(_fill_series(scaled, present).T)
    observed.append(present)
  if spec.models_missing and spec.series:
    # the visits up to the last one where any series is observed, as one ordinal code
    visits = np.arange(1, spec.num_visits + 1)
    count = np.where(np.any(observed, axis=0), visits, 0).max(axis=1)
    columns += list(np.eye(spec.num_visits + 1, dtype=np.float32)[count].T)
  return np.stack(columns, axis=1).astype(np.float32)


def _fill_series(values: np.ndarray, present: np.ndarray) -> np.ndarray:
  """(rows, visits) with holes -> each hole the last observed value before it, or the
  first one after it when none is before (0 when the row has none). A complete table
  passes unchanged, so a spec without `missing: model` encodes as it always did."""
  visits = np.arange(values.shape[1])
  last = np.maximum.accumulate(np.where(present, visits, -1), axis=1)
  ahead = np.where(present, visits, values.shape[1])[:, ::-1]
  first = np.minimum.accumulate(ahead, axis=1)[:, ::-1]
  first = np.where(first < values.shape[1], first, -1)
  source = np.where(last >= 0, last, first)
  filled = np.take_along_axis(values, np.maximum(source, 0), axis=1)
  return np.where(source >= 0, filled, np.float32(0.0)).astype(np.float32)


def _scale(values: pd.Series, low: float, high: float) -> np.ndarray:
  """In float32 as the pipeline's TensorFlow does, so both give the same bits; a hole
  becomes NaN, for the caller to replace."""
  numbers = values.astype(np.float64).to_numpy().astype(np.float32)
  scaled = (numbers - np.float32(low)) / np.float32(high - low)
  return np.clip(scaled, np.float32(0.0), np.float32(1.0))


def patient_split(patient_ids: pd.Series) -> pd.Series:
  """train / eval / test by a hash of the patient id (8:1:1 buckets, as the pipeline)."""
  total = sum(_HASH_BUCKETS.values())
  def bucket(pid: str) -> str:
    value = int.from_bytes(hashlib.sha256(pid.encode("utf-8")).digest()[:8], "big") % total
    for split, size in _HASH_BUCKETS.items():
      if value < size:
        return split
      value -= size
    raise AssertionError("unreachable")
  unique = pd.Series(patient_ids.unique())
  return patient_ids.map(dict(zip(unique, unique.map(bucket))))


def _validated(path: str, spec: DatasetSpec) -> pd.DataFrame:
  report = validate_table(path, spec)
  if not report.ok:
    first = str(report.findings[0])
    more = len(report.findings) - 1
    raise DataError(first + (f" (and {more} more finding{'s' * (more > 1)})" if more else ""))
  return report.table


def _ids(table: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
  # Without an id column every row is its own patient (the spec says so).
  if spec.id_column:
    return table[spec.id_column].astype(str)
  return pd.Series([f"row-{i}" for i in range(len(table))], index=table.index)


def load_csv(path: str, spec: DatasetSpec) -> FederatedData:
  """A user's table, checked against the user's spec, then under the pipeline's feature
  keys and the label as 1 / 0 (clinical_dp/names.py), as ExampleGen's rows are."""
  keys = ColumnKeys.for_spec(spec)
  internal = keys.internal_spec(spec)
  table = keys.to_internal(_validated(path, spec))
  split = patient_split(_ids(table, internal))
  return _assemble({s: table[split == s] for s in SPLITS}, internal, source=path)


def load_prepared(path: str, spec: DatasetSpec, buckets: Dict[str, int]) -> FederatedData:
  """The pipeline's prepared input (feature keys, label 1 / 0: pipelines/input_selection.py)
  split by `buckets` (split name -> hash buckets, in order) as CsvExampleGen splits it:
  by the patient id's cells as the file holds them, or by whole rows without an id column."""
  internal = ColumnKeys.for_spec(spec).internal_spec(spec)
  if list(buckets) != list(SPLITS):
    raise DataError(f"--split-buckets: splits {list(buckets)}; expected {list(SPLITS)}")
  table = _validated(path, internal)
  cells = pd.read_csv(path, usecols=[internal.id_column or 0], dtype=str,
                      keep_default_na=False)
  if len(cells) != len(table):
    raise DataError(f"{path}: {len(cells) - len(table)} of its rows fail validation; the "
                    "prepared input holds only rows the run validated")
  if internal.id_column:
    split = example_gen_splits(cells, buckets, internal.id_column)
  else:
    with open(path, encoding="utf-8") as f:
      split = example_gen_splits(cells, buckets, csv_text=f.read())
  split.index = table.index
  return _assemble({s: table[split == s] for s in SPLITS}, internal, source=path)


def _example_rows(files: List[str], keys: List[str]) -> pd.DataFrame:
  """The records' `keys` that some record holds (a column no record holds is absent, as
  in a CSV without it); whole numbers with holes stay whole numbers in the CSV."""
  frame = read_example_table(files, keys, nullable_integers=True)
  return frame.loc[:, frame.notna().any().to_numpy()]


def load_examples(directory: str, spec: DatasetSpec) -> FederatedData:
  """Reads ExampleGen's splits (feature keys, label 1 / 0: the pipeline's prepared input);
  each is validated against the user's spec under those keys, like a CSV."""
  spec = ColumnKeys.for_spec(spec).internal_spec(spec)
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: Examples directory not found")
  tables = {}
  with tempfile.TemporaryDirectory() as tmp:
    for split in SPLITS:
      files = sorted(glob.glob(os.path.join(directory, f"Split-{split}", "*")))
      if not files:
        raise DataError(f"{directory}: no Split-{split}/ files; expected ExampleGen output with "
                        f"splits {list(SPLITS)}")
      frame = _example_rows(files, list(spec.required_columns))
      if frame.empty:
        raise DataError(f"{directory}/Split-{split}: no examples")
      if spec.models_missing:  # a column empty in every example of a split is a hole, not absent
        frame = frame.reindex(columns=list(frame.columns)
                              + [c for c in spec.feature_columns if c not in frame.columns])
      csv = os.path.join(tmp, f"{split}.csv")
      frame.to_csv(csv, index=False)
      try:
        tables[split] = _validated(csv, spec)
      except DataError as e:
        raise DataError(f"{directory}/Split-{split}: {str(e).split(': ', 1)[1]}") from e
  return _assemble(tables, spec, source=directory)


def _canonical_order(table: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
  """The rows sorted by patient id (unique ids: by nothing else), else by every column,
  numbers compared as the float32 they are encoded as: read from ExampleGen's float32
  features or from the CSV's decimals, the same rows then come in the same order."""
  columns = [c for c in spec.required_columns if c in table.columns]
  if spec.id_column and table[spec.id_column].is_unique:
    columns = [spec.id_column]
  keys = pd.DataFrame({c: (table[c].astype(np.float32) if table[c].dtype.kind == "f"
                           else table[c]) for c in columns})
  order = keys.reset_index(drop=True).sort_values(columns, kind="stable").index
  return table.iloc[order.to_numpy()]


def _assemble(tables: Dict[str, pd.DataFrame], spec: DatasetSpec, source: str) -> FederatedData:
  sites = sorted(set().union(*(t[spec.site_column].astype(str) for t in tables.values())))
  if len(sites) < 2:
    raise DataError(f"{source}: column '{spec.site_column}' has {len(sites)} site(s); "
                    "federated learning needs at least 2")
  if tables["train"].empty or tables["test"].empty:
    raise DataError(f"{source}: the train or test split is empty; too few patients")
  if spec.id_column:
    every = pd.concat(list(tables.values()))
    spread = every.groupby(every[spec.id_column].astype(str))[spec.site_column].nunique()
    if (spread > 1).any():
      raise DataError(f"{source}: column '{spec.id_column}': {int((spread > 1).sum())} "
                      f"patient(s) have rows at several sites (e.g. {spread[spread > 1].index[0]}); "
                      "per-site accounting needs each patient at one site")
  splits: Dict[str, Dict[str, SiteData]] = {}
  for split, table in tables.items():
    table = _canonical_order(table, spec)
    splits[split] = {}
    site_of_row = table[spec.site_column].astype(str)
    for site in sites:
      part = table[site_of_row == site]
      codes, uniques = pd.factorize(_ids(part, spec))
      splits[split][site] = SiteData(
          encode(part, spec) if len(part) else np.zeros((0, len(feature_names(spec))),
                                                        np.float32),
          part[spec.label_column].to_numpy(np.float32), codes.astype(np.int32), len(uniques))
  return FederatedData(tuple(sites), splits, feature_names(spec), source, spec.name)
