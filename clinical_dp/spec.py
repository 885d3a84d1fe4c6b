"""Dataset spec: how a user describes a clinical CSV to the pipeline.

The spec names the label, the patient id (the privacy unit), the site, and every
modeled column with public clinical bounds. The bounds validate input and scale
values; they never come from the data, so scaling leaks nothing about patients.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# What a missing modeled value does: "model" keeps the patient and models the hole (every
# modeled column nullable: a public schema input, never inferred from the data); "drop"
# drops the row; "error" refuses the table.
MISSING_POLICIES = ("model", "drop", "error")
MODEL_MISSING = "model"
# Feature keys the pipeline adds when missing values are modeled (trainers/preprocessing.py):
# each static column's indicator, and the series' dropout code (visits observed).
MISSING_SUFFIX = "__missing"
DROPOUT_KEY = "visits__observed"

LabelValue = Union[int, str]
# What `clinical-dp spec draft` writes where only the user can say (the public bounds of a
# column the library does not know, an unknown column's categories); a spec that still
# holds one is refused, naming each.
PLACEHOLDER = "FILL IN"


class SpecError(ValueError):
  """A dataset spec that cannot be used, with the file and the rule broken."""


@dataclasses.dataclass(frozen=True)
class StaticFeature:
  """A baseline covariate: one column per patient row."""
  name: str
  type: str
  min: Optional[float] = None
  max: Optional[float] = None
  integer: bool = False
  values: Tuple[str, ...] = ()
  decimals: Optional[int] = None  # the precision values are reported at (public)

  @property
  def is_categorical(self) -> bool:
    return self.type == CATEGORICAL

  @property
  def rounding(self) -> Optional[int]:
    """Decimals a synthetic value is rounded to (0 for whole numbers), or None."""
    return 0 if self.integer else self.decimals


@dataclasses.dataclass(frozen=True)
class SeriesFeature:
  """A longitudinal measurement in wide format, one column per visit."""
  name: str
  min: float
  max: float
  columns: Tuple[str, ...]
  integer: bool = False
  decimals: Optional[int] = None  # the precision values are reported at (public)

  @property
  def rounding(self) -> Optional[int]:
    """Decimals a synthetic value is rounded to (0 for whole numbers), or None."""
    return 0 if self.integer else self.decimals


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Everything the pipeline needs to know about one clinical table."""
  name: str
  label_column: str
  static: Tuple[StaticFeature, ...] = ()
  series: Tuple[SeriesFeature, ...] = ()
  label_positive: LabelValue = 1
  label_negative: LabelValue = 0
  id_column: Optional[str] = None
  site_column: Optional[str] = None
  missing: str = "drop"
  # Privacy records of DP statistics the spec was written from (`spec draft --dp-bounds`,
  # `spec check`): the release adds each to its total (components/release.py).
  privacy_spent: Tuple[Dict[str, Any], ...] = ()

  @property
  def epsilon_spent(self) -> float:
    """What the DP statistics the spec was written from spent (basic composition)."""
    return float(sum(record["epsilon"] for record in self.privacy_spent))

  @property
  def feature_columns(self) -> List[str]:
    """Modeled input columns, static first, then series in visit order."""
    columns = [feature.name for feature in self.static]
    for feature in self.series:
      columns.extend(feature.columns)
    return columns

  @property
  def required_columns(self) -> List[str]:
    """Every column the CSV must have."""
    columns = [c for c in (self.id_column, self.site_column) if c]
    return columns + [self.label_column] + self.feature_columns

  @property
  def num_visits(self) -> int:
    return len(self.series[0].columns) if self.series else 0

  @property
  def models_missing(self) -> bool:
    """Missing values are kept and modeled (indicators and a dropout code)."""
    return self.missing == MODEL_MISSING

  def to_dict(self) -> Dict[str, Any]:
    """The YAML form, with empty optional fields left out."""
    out: Dict[str, Any] = {"name": self.name}
    if self.id_column:
      out["id_column"] = self.id_column
    out["label_column"] = self.label_column
    out["label_positive"] = self.label_positive
    out["label_negative"] = self.label_negative
    if self.site_column:
      out["site_column"] = self.site_column
    out["missing"] = self.missing
    out["static"] = [_static_to_dict(f) for f in self.static]
    out["series"] = [_series_to_dict(f) for f in self.series]
    if self.privacy_spent:
      out["privacy_spent"] = [dict(record) for record in self.privacy_spent]
    return out

  def to_yaml(self) -> str:
    return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def _static_to_dict(feature: StaticFeature) -> Dict[str, Any]:
  out: Dict[str, Any] = {"name": feature.name, "type": feature.type}
  if feature.is_categorical:
    out["values"] = list(feature.values)
  else:
    out["min"], out["max"] = feature.min, feature.max
    if feature.integer:
      out["integer"] = True
    if feature.decimals is not None:
      out["decimals"] = feature.decimals
  return out


def _series_to_dict(feature: SeriesFeature) -> Dict[str, Any]:
  out: Dict[str, Any] = {"name": feature.name, "min": feature.min, "max": feature.max}
  if feature.integer:
    out["integer"] = True
  if feature.decimals is not None:
    out["decimals"] = feature.decimals
  out["columns"] = list(feature.columns)
  return out


def load_spec(path: str) -> DatasetSpec:
  """Reads and checks a spec file; raises SpecError naming the file and rule."""
  if not os.path.isfile(path):
    raise SpecError(f"{path}: spec file not found")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  return parse_spec(text, source=path)


def parse_spec(text: str, source: str = "<spec>") -> DatasetSpec:
  """Parses spec YAML text; `source` names the file in error messages."""
  try:
    raw = yaml.safe_load(text)
  except yaml.YAMLError as e:
    raise SpecError(f"{source}: not valid YAML: {e}") from e
  if not isinstance(raw, dict):
    raise SpecError(f"{source}: a spec must be a YAML mapping with name, label_column, "
                    "static and/or series")
  for key in ("label_positive", "label_negative"):
    if isinstance(raw.get(key), bool):  # YAML 1.1 reads Yes / No / TRUE / off as booleans
      raw[key] = _label_as_written(text, key)
  return spec_from_dict(raw, source)


class _NoBooleanLoader(yaml.SafeLoader):
  """Reads every plain scalar that YAML 1.1 would call a boolean as the text written."""


_NoBooleanLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _label_as_written(text: str, key: str) -> str:
  """A label class as the spec spells it (`Yes`, `TRUE`), as the CSV cells do."""
  return str(yaml.load(text, Loader=_NoBooleanLoader)[key])


def spec_from_dict(raw: Dict[str, Any], source: str = "<spec>") -> DatasetSpec:
  """Builds a DatasetSpec from its dictionary form, checking every rule."""
  known = {"name", "id_column", "label_column", "label_positive", "label_negative",
           "site_column", "missing", "static", "series", "privacy_spent"}
  unknown = sorted(set(raw) - known)
  if unknown:
    raise SpecError(f"{source}: unknown key(s) {unknown}; allowed keys are {sorted(known)}")
  unfilled = _placeholders(raw)
  if unfilled:
    raise SpecError(f"{source}: the draft's placeholders are not filled yet: "
                    + "; ".join(unfilled) + ". Write public values (a data dictionary, an "
                    "assay's reportable range, a score's definition), never the data's own "
                    "minimum, maximum or rare categories")
  name = _required_str(raw, "name", source)
  label_column = _required_str(raw, "label_column", source)
  label_positive = raw.get("label_positive", 1)
  if "label_negative" in raw:
    label_negative = raw["label_negative"]
  elif label_positive == 1:
    label_negative = 0
  else:
    raise SpecError(f"{source}: label_positive is {label_positive!r}; then label_negative must "
                    "name the other class")
  if label_positive == label_negative:
    raise SpecError(f"{source}: label_positive and label_negative are both {label_positive!r}")
  missing = raw.get("missing", "drop")
  if missing not in MISSING_POLICIES:
    raise SpecError(f"{source}: missing must be one of {list(MISSING_POLICIES)}, got {missing!r}")
  static = tuple(_parse_static(item, i, source) for i, item in enumerate(_list(raw, "static", source)))
  series = tuple(_parse_series(item, i, source) for i, item in enumerate(_list(raw, "series", source)))
  if not static and not series:
    raise SpecError(f"{source}: the spec names no features; give at least one of static or series")
  visit_counts = {len(s.columns) for s in series}
  if len(visit_counts) > 1:
    raise SpecError(f"{source}: every series must have the same number of visit columns, got "
                    + ", ".join(f"{s.name}: {len(s.columns)}" for s in series))
  spec = DatasetSpec(
      name=name, label_column=label_column, static=static, series=series,
      label_positive=label_positive, label_negative=label_negative,
      id_column=_optional_str(raw, "id_column", source),
      site_column=_optional_str(raw, "site_column", source), missing=missing,
      privacy_spent=_privacy_spent(raw, source))
  names = spec.required_columns + [s.name for s in series if s.name not in spec.feature_columns]
  duplicates = sorted({c for c in names if names.count(c) > 1}
                      | ({f.name for f in static} & {s.name for s in series}))
  if duplicates:
    raise SpecError(f"{source}: column(s) {duplicates} named more than once in the spec")
  if spec.models_missing:
    reserved = sorted(c for c in names if c.endswith(MISSING_SUFFIX) or c == DROPOUT_KEY)
    if reserved:
      raise SpecError(f"{source}: column(s) {reserved} use a name that 'missing: model' "
                      f"reserves (names ending in '{MISSING_SUFFIX}', '{DROPOUT_KEY}'); rename "
                      "them in the CSV and the spec")
  return spec


# What a record of privacy_spent must state for the release to add it in.
PRIVACY_RECORD_FIELDS = ("epsilon", "delta", "unit", "relation", "accountant", "purpose")


def _privacy_spent(raw: Dict[str, Any], source: str) -> Tuple[Dict[str, Any], ...]:
  records = raw.get("privacy_spent") or []
  if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
    raise SpecError(f"{source}: privacy_spent must be a list of privacy records (mappings)")
  for index, record in enumerate(records):
    missing = [key for key in PRIVACY_RECORD_FIELDS if record.get(key) is None]
    if missing:
      raise SpecError(f"{source}: privacy_spent[{index}] lacks {missing}; keep the record as "
                      "the command that spent it wrote it")
    epsilon, delta = record["epsilon"], record["delta"]
    if not (isinstance(epsilon, (int, float)) and epsilon > 0 and math.isfinite(epsilon)
            and isinstance(delta, (int, float)) and 0 <= delta < 1):
      raise SpecError(f"{source}: privacy_spent[{index}] states epsilon {epsilon!r} and delta "
                      f"{delta!r}; a record needs a finite positive epsilon and delta in [0, 1)")
  return tuple(records)


def yaml_flow(value: Any) -> str:
  """One YAML line for a mapping or a scalar (quoted where YAML would misread it)."""
  text = yaml.safe_dump([value], default_flow_style=True, sort_keys=False,
                        allow_unicode=True, width=10 ** 6).strip()
  return text[1:-1]


def with_privacy_record(text: str, record: Dict[str, Any], source: str = "<spec>") -> str:
  """The spec text with `record` appended to its privacy_spent, comments kept: the list is
  the spec's last key (a draft writes it last), or it is started at the end."""
  raw = yaml.safe_load(text) or {}
  item = "- " + yaml_flow(record)
  body = text if text.endswith("\n") else text + "\n"
  if "privacy_spent" not in raw:
    return body + "privacy_spent:\n" + item + "\n"
  keys = [line.split(":")[0] for line in body.splitlines()
          if line[:1].isalpha() or line[:1] == "_"]
  if keys[-1] != "privacy_spent":
    raise SpecError(f"{source}: privacy_spent is not the spec's last key, so a record cannot "
                    "be appended to it without rewriting the file; move it to the end")
  return body + item + "\n"


def _placeholders(raw: Dict[str, Any]) -> List[str]:
  """Where the spec still holds a draft's placeholder: `static feature 'x': min`."""
  def is_placeholder(value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v.startswith(PLACEHOLDER) for v in values)

  found = [key for key in ("label_column", "label_positive", "label_negative")
           if is_placeholder(raw.get(key))]
  for kind, label in (("static", "static feature"), ("series", "series")):
    items = raw.get(kind)
    for item in items if isinstance(items, list) else []:
      if isinstance(item, dict):
        found += [f"{label} '{item.get('name')}': {key}" for key, value in item.items()
                  if is_placeholder(value)]
  return found


def _required_str(raw: Dict[str, Any], key: str, source: str) -> str:
  value = raw.get(key)
  if not isinstance(value, str) or not value:
    raise SpecError(f"{source}: '{key}' is required and must be a non-empty string")
  return value


def _optional_str(raw: Dict[str, Any], key: str, source: str) -> Optional[str]:
  if raw.get(key) is None:
    return None
  return _required_str(raw, key, source)


def _list(raw: Dict[str, Any], key: str, source: str) -> Sequence[Any]:
  value = raw.get(key) or []
  if not isinstance(value, list):
    raise SpecError(f"{source}: '{key}' must be a list")
  return value


def _bounds(item: Dict[str, Any], where: str) -> Tuple[float, float]:
  lo, hi = item.get("min"), item.get("max")
  for key, value in (("min", lo), ("max", hi)):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise SpecError(f"{where}: '{key}' is required and must be a number, got {value!r}")
  if lo >= hi:
    raise SpecError(f"{where}: min ({lo}) must be below max ({hi})")
  return float(lo), float(hi)


def _parse_static(item: Any, index: int, source: str) -> StaticFeature:
  where = f"{source}: static[{index}]"
  if not isinstance(item, dict):
    raise SpecError(f"{where}: each static feature must be a mapping with name and type")
  name = _required_str(item, "name", where)
  where = f"{source}: static feature '{name}'"
  kind = item.get("type")
  if kind == NUMERIC:
    lo, hi = _bounds(item, where)
    integer = bool(item.get("integer", False))
    return StaticFeature(name=name, type=NUMERIC, min=lo, max=hi, integer=integer,
                         decimals=_decimals(item, integer, where))
  if kind == CATEGORICAL:
    values = item.get("values")
    if not isinstance(values, list) or len(values) < 2:
      raise SpecError(f"{where}: a categorical feature needs 'values' with at least two entries")
    as_text = tuple(str(v) for v in values)
    if len(set(as_text)) != len(as_text):
      raise SpecError(f"{where}: 'values' has duplicates: {list(as_text)}")
    return StaticFeature(name=name, type=CATEGORICAL, values=as_text)
  raise SpecError(f"{where}: type must be '{NUMERIC}' or '{CATEGORICAL}', got {kind!r}")


def _parse_series(item: Any, index: int, source: str) -> SeriesFeature:
  where = f"{source}: series[{index}]"
  if not isinstance(item, dict):
    raise SpecError(f"{where}: each series must be a mapping with name, min, max and columns")
  name = _required_str(item, "name", where)
  where = f"{source}: series '{name}'"
  lo, hi = _bounds(item, where)
  columns = item.get("columns")
  if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
    raise SpecError(f"{where}: 'columns' must be a non-empty list of column names in visit order")
  integer = bool(item.get("integer", False))
  return SeriesFeature(name=name, min=lo, max=hi, columns=tuple(columns), integer=integer,
                       decimals=_decimals(item, integer, where))


def _decimals(item: Dict[str, Any], integer: bool, where: str) -> Optional[int]:
  """The optional `decimals`: how many decimals the values are reported with (a lab's
  reporting step, public), which synthetic values are rounded to."""
  value = item.get("decimals")
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 6:
    raise SpecError(f"{where}: 'decimals' must be a whole number from 0 to 6, got {value!r}")
  if integer and value:
    raise SpecError(f"{where}: 'decimals: {value}' contradicts 'integer: true'")
  return value
