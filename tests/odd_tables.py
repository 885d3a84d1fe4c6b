"""Small, oddly shaped clinical tables for end-to-end and unit tests (issue 12).

Pure NumPy / pandas and seeded: the same arguments give the same table. Each table
comes with its DatasetSpec and has a learnable label (every feature's distribution
shifts with the label), so utility metrics on it mean something. Column names are
simple lowercase ASCII, the label is 1 / 0, and the id column is `pid`; the site
column, when there is one, is `site`.

    frame, spec = odd_table("series_two_visits")
    data_csv, spec_yaml = write_table(directory, frame, spec)

`TABLE_CLASSES` names every shape (a function of `patients` and `seed`);
`odd_table(name, patients=..., seed=...)` builds one. `make_table` is the general
builder behind them, for shapes not listed.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from clinical_dp.spec import DatasetSpec, SeriesFeature, StaticFeature

ID_COLUMN, LABEL_COLUMN, SITE_COLUMN = "pid", "outcome", "site"
DEFAULT_PATIENTS = 300

# Numeric static features the builder can draw: name -> (public min, max, mean, sd, shift by
# label in standard deviations, integer).
_NUMERIC_STATIC = (
    ("age", 18, 110, 62.0, 12.0, 0.8, True),
    ("bmi", 12, 70, 28.0, 5.0, -0.6, False),
    ("egfr", 5, 200, 70.0, 18.0, 0.5, False),
    ("weight", 30, 250, 82.0, 15.0, -0.4, False),
)
# Series the builder can draw: name -> (min, max, baseline mean, baseline sd, change per
# visit for label 1, for label 0, integer).
_SERIES = (
    ("sbp", 60, 260, 140.0, 14.0, -6.0, -1.0, False),
    ("dbp", 30, 150, 80.0, 8.0, -3.0, -0.5, False),
    ("meds", 0, 10, 2.0, 1.0, 0.6, 0.1, True),
)
CONSTANT_STATIC = "unit"     # a numeric static column with one value in every row
CONSTANT_SERIES = "flag"     # a series with one value at every visit of every row


def _categorical_values(count: int) -> Tuple[str, ...]:
  return tuple(f"c{k:02d}" for k in range(count))


def _site_names(sites: int) -> Tuple[str, ...]:
  return tuple(f"s{k:02d}" for k in range(sites))


def make_table(patients: int = DEFAULT_PATIENTS, *, seed: int = 0,
               numeric_static: int = 2, categorical_static: Sequence[int] = (2, 3),
               series: int = 2, visits: int = 4, sites: Optional[int] = 3,
               constant_static: bool = False, constant_series: bool = False,
               rows_per_patient: int = 1, positive_rate: float = 0.5,
               name: str = "odd") -> Tuple[pd.DataFrame, DatasetSpec]:
  """A seeded table and its spec.

  patients: number of distinct patients (ids). numeric_static: how many numeric static
  columns (up to 4); categorical_static: the number of values of each categorical static
  column; series / visits: how many series (up to 3) and visits per series; sites: the
  number of sites (None: no site column), each site getting at least one patient when
  there are enough; constant_static / constant_series add a numeric static column or a
  series whose value never changes; rows_per_patient above 1 gives about a third of the
  patients between 2 and that many rows (readmissions), each row with its own label and
  values, all of a patient's rows at one site.
  """
  if numeric_static > len(_NUMERIC_STATIC) or series > len(_SERIES):
    raise ValueError(f"at most {len(_NUMERIC_STATIC)} numeric static columns and "
                     f"{len(_SERIES)} series")
  if not (numeric_static or categorical_static or series or constant_static or constant_series):
    raise ValueError("a table needs at least one feature")
  rng = np.random.default_rng(seed)
  # Patients and their rows.
  if rows_per_patient > 1:
    extra = np.where(rng.random(patients) < 1 / 3,
                     rng.integers(1, rows_per_patient, patients), 0)
    extra[0] = rows_per_patient - 1  # the bound is reached
  else:
    extra = np.zeros(patients, dtype=int)
  patient = np.repeat(np.arange(patients), 1 + extra)
  n = len(patient)
  table: Dict[str, object] = {ID_COLUMN: [f"p{p:05d}" for p in patient]}
  if sites:
    names = _site_names(sites)
    # Every site gets a patient first (when there are enough), the rest uniformly.
    order = rng.permutation(patients)
    site_of_patient = np.empty(patients, dtype=int)
    site_of_patient[order] = np.concatenate(
        [np.arange(min(sites, patients)),
         rng.integers(0, sites, max(0, patients - sites))])
    table[SITE_COLUMN] = [names[s] for s in site_of_patient[patient]]
  label = (rng.random(n) < positive_rate).astype(np.int64)
  label[:2] = [1, 0]  # both classes present, however small
  table[LABEL_COLUMN] = label
  signed = 2.0 * label - 1.0  # +1 / -1
  frailty = rng.normal(0, 1, patients)[patient]  # a patient effect shared by their rows

  static = []
  for column, lo, hi, mean, sd, shift, integer in _NUMERIC_STATIC[:numeric_static]:
    values = mean + sd * (0.5 * shift * signed + 0.4 * frailty + rng.normal(0, 0.8, n))
    values = np.clip(values, lo, hi)
    table[column] = values.round(0) if integer else values.round(1)
    static.append(StaticFeature(column, "numeric", min=lo, max=hi, integer=integer))
  if constant_static:
    table[CONSTANT_STATIC] = np.full(n, 1.0)
    static.append(StaticFeature(CONSTANT_STATIC, "numeric", min=0, max=10))
  for k, count in enumerate(categorical_static):
    values = _categorical_values(count)
    # Label 1 favours the low codes, label 0 the high ones.
    tilt = np.linspace(1.0, -1.0, count)
    logits = tilt[None, :] * signed[:, None] + rng.gumbel(size=(n, count))
    table[f"cat{k}"] = [values[i] for i in logits.argmax(axis=1)]
    static.append(StaticFeature(f"cat{k}", "categorical", values=values))

  series_features = []
  time = np.arange(visits, dtype=float)
  for column, lo, hi, mean, sd, slope1, slope0, integer in _SERIES[:series]:
    slope = np.where(label == 1, slope1, slope0)
    base = mean + sd * (0.3 * signed + 0.5 * frailty + rng.normal(0, 0.7, n))
    values = (base[:, None] + slope[:, None] * time[None, :]
              + rng.normal(0, 0.3 * sd, (n, visits)))
    values = np.clip(values, lo, hi)
    values = values.round(0) if integer else values.round(1)
    columns = tuple(f"{column}_v{v + 1}" for v in range(visits))
    for v, c in enumerate(columns):
      table[c] = values[:, v]
    series_features.append(SeriesFeature(column, min=lo, max=hi, columns=columns,
                                         integer=integer))
  if constant_series:
    columns = tuple(f"{CONSTANT_SERIES}_v{v + 1}" for v in range(visits))
    for c in columns:
      table[c] = np.full(n, 1.0)
    series_features.append(SeriesFeature(CONSTANT_SERIES, min=0, max=5, columns=columns))

  frame = pd.DataFrame(table)
  for feature in static:
    if not feature.is_categorical and feature.integer:
      frame[feature.name] = frame[feature.name].astype(np.int64)
  for feature in series_features:
    if feature.integer:
      frame[list(feature.columns)] = frame[list(feature.columns)].astype(np.int64)
  spec = DatasetSpec(name=name, id_column=ID_COLUMN, label_column=LABEL_COLUMN,
                     label_positive=1, label_negative=0,
                     site_column=SITE_COLUMN if sites else None, missing="drop",
                     static=tuple(static), series=tuple(series_features))
  return frame, spec


TableFn = Callable[..., Tuple[pd.DataFrame, DatasetSpec]]


def _shape(name: str, **shape) -> TableFn:
  def build(patients: int = DEFAULT_PATIENTS, seed: int = 0):
    return make_table(patients, seed=seed, name=name, **shape)
  build.__name__ = name
  build.__doc__ = f"{name}: {shape}"
  return build


# Every shape of issue 12 that this module covers, by name. Each takes (patients, seed).
TABLE_CLASSES: Dict[str, TableFn] = {
    "mixed": _shape("mixed"),  # the reference: 2 numeric, 2 categorical, 2 series x 4 visits
    "static_only": _shape("static_only", series=0),
    "series_only": _shape("series_only", numeric_static=0, categorical_static=()),
    "series_two_visits": _shape("series_two_visits", series=1, visits=2),
    "series_three_visits": _shape("series_three_visits", series=1, visits=3),
    "categorical_only": _shape("categorical_only", numeric_static=0,
                               categorical_static=(2, 3, 4), series=0),
    "categorical_30": _shape("categorical_30", categorical_static=(30, 2)),
    "constant_columns": _shape("constant_columns", constant_static=True,
                               constant_series=True),
    "repeated_ids": _shape("repeated_ids", rows_per_patient=3),
    "one_site": _shape("one_site", sites=1),
    "two_sites": _shape("two_sites", sites=2),
    "fifty_sites": _shape("fifty_sites", sites=50),
    "no_site": _shape("no_site", sites=None),
}
# The small-table class: the reference shape at these sizes.
SMALL_SIZES = (300, 150, 100, 50)


def odd_table(name: str, patients: int = DEFAULT_PATIENTS, seed: int = 0
              ) -> Tuple[pd.DataFrame, DatasetSpec]:
  """One named shape (see TABLE_CLASSES) at the given number of patients."""
  if name not in TABLE_CLASSES:
    raise ValueError(f"unknown table class {name!r}; choose from {sorted(TABLE_CLASSES)}")
  return TABLE_CLASSES[name](patients=patients, seed=seed)


def write_table(directory: str, frame: pd.DataFrame, spec: DatasetSpec) -> Tuple[str, str]:
  """Writes DIRECTORY/data.csv and DIRECTORY/spec.yaml; returns their paths."""
  os.makedirs(directory, exist_ok=True)
  data_path = os.path.join(directory, "data.csv")
  spec_path = os.path.join(directory, "spec.yaml")
  frame.to_csv(data_path, index=False)
  with open(spec_path, "w", encoding="utf-8") as f:
    f.write(spec.to_yaml())
  return data_path, spec_path


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`python -m tests.odd_tables NAME OUT_DIR [--patients N] [--seed S]`."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("name", choices=sorted(TABLE_CLASSES))
  parser.add_argument("out")
  parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  frame, spec = odd_table(args.name, args.patients, args.seed)
  data_path, spec_path = write_table(args.out, frame, spec)
  print(f"{args.name}: {len(frame)} rows, {frame[ID_COLUMN].nunique()} patients -> "
        f"{data_path}, {spec_path}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
