"""Checks a clinical CSV against its dataset spec, and prepares the pipeline input.

Every finding names the file, the column and the rule, with a row count and the
first offending lines, so a data manager can fix the source table. The input file
is only ever read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from clinical_dp.files import write_atomically
from clinical_dp.names import ColumnKeys
from clinical_dp.spec import DatasetSpec

MISSING_MARKERS = ("", "NA", "N/A", "NaN", "nan", "NULL", "null", "None")
_EXAMPLE_LINES = 5


@dataclasses.dataclass(frozen=True)
class Finding:
  """One broken rule: which column, which rule, how many rows, where."""
  file: str
  column: str
  rule: str
  rows: int = 0
  lines: tuple = ()
  detail: str = ""

  def __str__(self) -> str:
    where = f"{self.file}: column '{self.column}'" if self.column else f"{self.file}"
    text = f"{where}: {self.rule}"
    if self.rows:
      text += f" ({self.rows} row{'s' if self.rows != 1 else ''}"
      if self.lines:
        text += ", first at line " + ", ".join(str(n) for n in self.lines)
      text += ")"
    if self.detail:
      text += f"; {self.detail}"
    return text


class InvalidInputError(ValueError):
  """The table breaks its spec; carries every finding."""

  def __init__(self, findings: List[Finding]):
    self.findings = findings
    super().__init__("\n".join(str(f) for f in findings))


@dataclasses.dataclass
class ValidationReport:
  """The outcome of checking one table."""
  file: str
  rows: int
  complete_rows: int
  findings: List[Finding]
  table: Optional[pd.DataFrame] = None  # typed rows kept; None when invalid
  rows_with_holes: int = 0  # kept rows with a missing modeled value (missing: model)

  @property
  def ok(self) -> bool:
    return not self.findings

  @property
  def dropped_rows(self) -> int:
    return self.rows - self.complete_rows


def _lines(mask: pd.Series) -> tuple:
  # Line 1 of the file is the header, so data row i sits on line i + 2.
  return tuple(int(i) + 2 for i in np.flatnonzero(mask.to_numpy())[:_EXAMPLE_LINES])


_CHUNK_ROWS = 100_000


class _TextColumns:
  """A CSV's cells as stripped text, kept as Arrow strings (a few bytes a cell) and handed
  out one column at a time as a pandas Series of str, as `pd.read_csv(dtype=str)` gives
  it. Held as Python strings, a million-row table's cells took 2.4 GB, and twice that
  while they were stripped; the checks need only one column's at a time."""

  def __init__(self, columns: Dict[str, "pa.ChunkedArray"], rows: int):
    self._columns = columns
    self.columns = pd.Index(list(columns))
    self.index = pd.RangeIndex(rows)

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, column: str) -> pd.Series:
    return pd.Series(self._columns[column].to_numpy(), index=self.index, name=column,
                     dtype=object)


def _read_raw(path: str):
  """The file's cells as stripped text: a _TextColumns in the pipeline's runtime, a
  DataFrame of str where there is no Arrow (the federated runtime)."""
  if not os.path.exists(path):
    raise InvalidInputError([Finding(path, "", "file not found")])
  if os.path.isdir(path):
    raise InvalidInputError([Finding(path, "", "is a directory, expected a CSV file")])
  if os.path.getsize(path) == 0:
    raise InvalidInputError([Finding(path, "", "file is empty (no header, no rows)")])
  try:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
  except ImportError:
    pa = None
  try:
    if pa is None:
      raw = pd.read_csv(path, dtype=str, keep_default_na=False)
      rows = len(raw)
    else:
      parts: Dict[str, list] = {}
      rows = 0
      for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=_CHUNK_ROWS):
        rows += len(chunk)
        for column in chunk.columns:
          parts.setdefault(column, []).append(_trimmed(chunk[column]))
  except (pd.errors.ParserError, UnicodeDecodeError) as e:
    raise InvalidInputError([Finding(path, "", f"not a readable CSV file: {e}")]) from e
  except pd.errors.EmptyDataError as e:
    raise InvalidInputError([Finding(path, "", "file is empty (no header, no rows)")]) from e
  if not rows:
    raise InvalidInputError([Finding(path, "", "file has a header but no data rows")])
  if pa is None:
    return raw.apply(lambda column: column.str.strip())
  return _TextColumns({c: pa.chunked_array(p, pa.large_string()) for c, p in parts.items()},
                      rows)


# What str.strip() strips: every character whose str.isspace() is true.
_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003"
               "\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _trimmed(column: pd.Series):
  """column.str.strip() as an Arrow array, through Arrow's trim of the same characters
  (15 of a million-row table's 31 s of validation went to the strip in Python)."""
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel
  return pc.utf8_trim(pa.array(column.to_numpy(), pa.large_string()), characters=_WHITESPACE)


def validate_table(path: str, spec: DatasetSpec) -> ValidationReport:
  """Checks the CSV at `path` against `spec`; never modifies the file.

  Returns a report whose `table` holds the typed rows kept (label mapped to 0/1; with
  `missing: model` every row with a label, holes as NaN / <NA>, else complete cases) when the table is valid; otherwise `findings` lists every broken rule.
  """
  try:
    raw = _read_raw(path)
  except InvalidInputError as e:
    return ValidationReport(path, 0, 0, e.findings)
  findings: List[Finding] = []
  absent = [c for c in spec.required_columns if c not in raw.columns]
  for column in absent:
    findings.append(Finding(path, column, "column named in the spec is missing from the file",
                            detail=f"the file has columns {list(raw.columns)[:12]}"
                            + (" ..." if len(raw.columns) > 12 else "")))
  if findings:
    return ValidationReport(path, len(raw), 0, findings)

  typed = pd.DataFrame(index=raw.index)
  missing = pd.DataFrame(index=raw.index)
  for column in spec.required_columns:
    missing[column] = raw[column].isin(MISSING_MARKERS)

  for key in (spec.id_column, spec.site_column):
    if key:
      if missing[key].any():
        findings.append(Finding(path, key, "identifier is empty", int(missing[key].sum()),
                                _lines(missing[key])))
      typed[key] = raw[key]

  typed[spec.label_column] = _check_label(raw, missing, spec, path, findings)
  for feature in spec.static:
    if feature.is_categorical:
      typed[feature.name] = _check_categorical(raw, missing, feature, path, findings)
    else:
      typed[feature.name] = _check_numeric(raw, missing, feature.name, feature.min, feature.max,
                                           feature.integer, path, findings)
  for series in spec.series:
    for column in series.columns:
      typed[column] = _check_numeric(raw, missing, column, series.min, series.max,
                                     series.integer, path, findings)

  rows = len(raw)
  del raw  # the cells as text: the typed columns hold what is needed from here
  modeled = [spec.label_column] + spec.feature_columns
  # with missing values modeled only the label must be present: it cannot be imputed
  incomplete = missing[[spec.label_column] if spec.models_missing else modeled].any(axis=1)
  if spec.missing == "error" and incomplete.any():
    columns = [c for c in modeled if missing[c].any()]
    for column in columns:
      findings.append(Finding(path, column, "missing value and the spec says missing: error",
                              int(missing[column].sum()), _lines(missing[column])))
  complete_rows = int((~incomplete).sum())
  if not findings and complete_rows == 0:
    findings.append(Finding(path, "", "no rows left after dropping rows with missing "
                            + ("labels" if spec.models_missing else "values"), rows))
  if findings:
    return ValidationReport(path, rows, complete_rows, findings)
  # a copy of a million rows only where some are dropped
  table = typed.loc[~incomplete].reset_index(drop=True) if incomplete.any() else typed
  whole = [c for s in spec.series if s.integer for c in s.columns]
  whole += [f.name for f in spec.static if f.integer]
  for column in whole:  # nullable integers keep their holes empty in the prepared CSV
    table[column] = table[column].astype("Int64" if table[column].hasnans else np.int64)
  table[spec.label_column] = table[spec.label_column].astype(np.int64)
  holes = int(missing.loc[~incomplete, spec.feature_columns].any(axis=1).sum())
  return ValidationReport(path, rows, complete_rows, findings, table, holes)


def load_valid_table(data_path: str, spec: DatasetSpec) -> ValidationReport:
  """Validates the CSV against the spec; raises InvalidInputError listing every finding."""
  report = validate_table(data_path, spec)
  if not report.ok:
    raise InvalidInputError(report.findings)
  return report


def _names_class(values: pd.Series, label) -> pd.Series:
  """Cells that name the class `label`; numeric labels also match 1.0 for 1."""
  mask = values == str(label)
  if isinstance(label, (int, float)) and not isinstance(label, bool):
    mask |= pd.to_numeric(values, errors="coerce") == label
  return mask


def _check_label(raw, missing, spec: DatasetSpec, path: str, findings: List[Finding]) -> pd.Series:
  column = spec.label_column
  values = raw[column]
  present = ~missing[column]
  is_positive = _names_class(values, spec.label_positive)
  is_negative = _names_class(values, spec.label_negative)
  unknown = present & ~is_positive & ~is_negative
  if unknown.any():
    seen = sorted(values[unknown].unique())[:5]
    findings.append(Finding(path, column, f"label value is neither class "
                            f"({spec.label_positive!r} positive, {spec.label_negative!r} negative)",
                            int(unknown.sum()), _lines(unknown), f"unknown values {seen}"))
  return is_positive.astype(np.int64).where(present)


def _check_categorical(raw, missing, feature, path: str, findings: List[Finding]) -> pd.Series:
  values = raw[feature.name]
  unknown = ~missing[feature.name] & ~values.isin(feature.values)
  if unknown.any():
    seen = sorted(values[unknown].unique())[:5]
    findings.append(Finding(path, feature.name, f"value not among the spec's categories "
                            f"{list(feature.values)}", int(unknown.sum()), _lines(unknown),
                            f"unknown values {seen}"))
  return values.where(~missing[feature.name])


def _check_numeric(raw, missing, column: str, lo: float, hi: float, integer: bool, path: str,
                   findings: List[Finding]) -> pd.Series:
  values = pd.to_numeric(raw[column], errors="coerce")
  present = ~missing[column]
  text = present & values.isna()
  if text.any():
    seen = sorted(raw[column][text].unique())[:5]
    findings.append(Finding(path, column, "text in a numeric column", int(text.sum()),
                            _lines(text), f"values {seen}"))
  number = present & values.notna()
  out_of_range = number & ((values < lo) | (values > hi))
  if out_of_range.any():
    findings.append(Finding(path, column, f"value outside the spec's bounds [{lo:g}, {hi:g}]",
                            int(out_of_range.sum()), _lines(out_of_range),
                            f"seen {values[out_of_range].min():g} to {values[out_of_range].max():g}"))
  if integer:
    fractional = number & (values != np.round(values))
    if fractional.any():
      findings.append(Finding(path, column, "non-integer value where the spec says integer",
                              int(fractional.sum()), _lines(fractional)))
  return values.astype(np.float64).where(present)


def prepared_table(table: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
  """A validated, typed table as the pipeline ingests it: the spec's columns under the
  pipeline's feature keys (clinical_dp/names.py), the label as 1 / 0."""
  return ColumnKeys.for_spec(spec).to_internal(table[spec.required_columns])


def write_prepared_input(table: pd.DataFrame, spec: DatasetSpec, out_dir: str) -> str:
  """Writes `prepared_table` as the pipeline's input CSV, atomically. Float columns keep
  a decimal point so that ExampleGen types them as floats, as the schema says."""
  columns = prepared_table(table, spec)
  return write_atomically(os.path.join(out_dir, "data.csv"),
                          lambda tmp: columns.to_csv(tmp, index=False, float_format="%.6f"))
