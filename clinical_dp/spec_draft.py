"""`clinical-dp spec draft`: a dataset spec a user reviews, drafted without private statistics.

What comes from where (the draft's header says the same to its reader):
- bounds, units, `integer` and `decimals`: the public library of clinical variables
  (clinical_dp/variable_library.py), matched by column name; a column it cannot match
  gets placeholders that `validate` refuses (spec.PLACEHOLDER), never the data's minimum
  or maximum, which are statistics of the patients;
- series: from the column names alone (`sbp_1m`, `sbp_2m`, ... or `hr_v1`, `hr_v2`),
  in visit order;
- read from the data, and said so: each column's kind (numeric when every filled cell is
  a number), the coding of a categorical column among the library's public code lists
  (sex, yes / no), and the label's two classes. A column whose values fit no public code
  list gets a placeholder for its categories.
Two tables that differ in one patient's values therefore get the same bounds and
category lists (tests/test_spec_draft.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from clinical_dp.spec import CATEGORICAL, NUMERIC, PLACEHOLDER, SpecError, yaml_flow
from clinical_dp.variable_library import (LIBRARY_PATH, Match, VariableLibrary, load_library,
                                          normal_form, split_unit)

# Column names that usually hold the patient id, the site and the outcome (normal forms).
ID_NAMES = ("id", "patientid", "patient", "subjectid", "subject", "mrn", "pid", "studyid",
            "stayid", "encounterid", "caseid", "admissionid", "patientno", "patientnumber",
            "patno", "patnr", "caseno", "casenumber", "fallnr", "fallnummer")
SITE_NAMES = ("site", "siteid", "hospital", "hospitalid", "centre", "center", "centreid",
              "centerid", "clinic", "institution")
LABEL_NAMES = ("label", "outcome", "target", "death", "died", "mortality", "hospitaldeath",
               "hospitalmortality", "dead")
# Label classes read as the positive one (normal forms).
POSITIVE_WORDS = ("1", "yes", "y", "true", "died", "dead", "death", "deceased", "expired",
                  "positive", "pos", "event", "case", "ja", "oui", "si", "verstorben", "tot",
                  "decede", "fallecido", "muerto")
# A visit token after a series' name: `_1m`, `_v2`, ` visit 3`, `.12`, `_rz` (randomization).
_VISIT = re.compile(
    r"^(?P<stem>.*?[A-Za-z0-9%)\]])(?:[\s_.\-]+(?P<token>(?:v|visit|t|m|mo|month|d|day|w|wk|"
    r"week|h|y)?\s*\d+\s*(?:m|mo|d|w|wk|h|y)?|rz|bl|baseline|base|screening)|(?P<tight>"
    r"(?:v|visit)\d+))$", re.IGNORECASE)
_BASELINE_TOKENS = ("rz", "bl", "baseline", "base", "screening")
_DAYS = {"d": 1.0, "day": 1.0, "w": 7.0, "wk": 7.0, "week": 7.0, "m": 30.44, "mo": 30.44,
         "month": 30.44, "y": 365.25, "h": 1 / 24}


@dataclasses.dataclass(frozen=True)
class DraftOptions:
  label: Optional[str] = None
  id_column: Optional[str] = None
  site_column: Optional[str] = None
  name: Optional[str] = None


@dataclasses.dataclass
class Draft:
  """The drafted spec as YAML text, and what the user must still do."""
  text: str
  columns: int  # modeled columns
  matched: List[str]  # modeled columns whose bounds or codes came from the library
  placeholders: List[str]  # "column: what to fill"
  notes: List[str]
  privacy_record: Optional[Dict] = None  # what --dp-bounds spent, also in the text


def visit_order(token: str) -> float:
  """Where a visit token falls in time: baseline first, then by its number (in days when
  it names a unit: `1w` before `1m`)."""
  token = token.strip().lower()
  if token in _BASELINE_TOKENS:
    return -1.0
  found = re.fullmatch(r"([a-z]*)\s*(\d+)\s*([a-z]*)", token)
  if not found:
    return float("inf")
  unit = found.group(3) or found.group(1)
  return float(found.group(2)) * _DAYS.get(unit, 1.0)


def find_series(columns: Sequence[str]) -> Dict[str, List[str]]:
  """{stem: its columns in visit order} for every name stem that two or more columns share
  with a visit token after it (`sbp_rz`, `sbp_1m`, ... -> `sbp`)."""
  groups: Dict[str, List[Tuple[float, int, str]]] = {}
  stems: Dict[str, str] = {}
  for position, column in enumerate(columns):
    name, _ = split_unit(column)
    found = _VISIT.match(name)
    if not found:
      continue
    token = found.group("token") or found.group("tight")
    stem = found.group("stem").strip(" _.-")
    key = normal_form(stem)
    if not key:
      continue
    stems.setdefault(key, stem)
    groups.setdefault(key, []).append((visit_order(token), position, column))
  return {stems[key]: [column for _, _, column in sorted(members)]
          for key, members in groups.items() if len(members) >= 2}


def _kind(values: pd.Series) -> str:
  """numeric when every filled cell reads as a number, else categorical."""
  filled = values.dropna()
  filled = filled[filled.str.strip() != ""]
  return NUMERIC if pd.to_numeric(filled, errors="coerce").notna().all() else CATEGORICAL


def _distinct(values: pd.Series) -> List[str]:
  filled = values.dropna().str.strip()
  return sorted(set(filled[filled != ""]))


def _coding(distinct: Sequence[str], code_lists: Sequence[Tuple[str, ...]]
            ) -> Optional[List[str]]:
  """The longest public code list (the first of equal length) that holds every distinct
  value (compared case-blind), in the list's order and the table's spelling; None when
  none does. The longest, not the first: of nested lists (sex F / M, F / M / U, ...) the
  first would follow which codes the patients happen to have, so one patient coded U
  would change the draft."""
  spelled = {value.lower(): value for value in distinct}
  for codes in sorted(code_lists, key=len, reverse=True):
    folded = [str(code).lower() for code in codes]
    if set(spelled) <= set(folded):
      return [spelled.get(code, original) for code, original in zip(folded, codes)]
  return None


def _guess(columns: Sequence[str], names: Sequence[str]) -> Optional[str]:
  for column in columns:
    if normal_form(column) in names:
      return column
  return None


def _snake(text: str) -> str:
  return re.sub(r"[^0-9a-z]+", "_", normal_form(text) or text.lower()).strip("_") or "series"


def _numeric_entry(match: Optional[Match], column: str) -> Tuple[Dict, str]:
  """The spec fields of a numeric column (bounds etc.) and the line's comment."""
  if match is None or match.unit is None:
    return ({"min": f"{PLACEHOLDER} public lower bound", "max": f"{PLACEHOLDER} public upper "
             "bound"}, "not in the library: write its public bounds (a data dictionary, the "
            "assay's reportable range, the score's definition), not the data's minimum and "
            "maximum")
  unit = match.unit
  fields: Dict = {"min": _number(unit.min), "max": _number(unit.max)}
  if unit.integer:
    fields["integer"] = True
  elif unit.decimals is not None:
    fields["decimals"] = unit.decimals
  written = unit.unit or "no unit"
  assumed = (f"; unit {written} assumed (the header names none): if the table uses another, "
             f"change the bounds" if match.unit_assumed and len(match.variable.units) > 1 else "")
  return fields, f"{match.variable.name} ({written}){assumed}; {match.variable.source}"


def _number(value: float):
  return int(value) if float(value).is_integer() else float(value)


def draft_spec(data_path: str, options: DraftOptions = DraftOptions(),
               library: Optional[VariableLibrary] = None, estimator=None) -> Draft:
  """The draft for the CSV at data_path (SpecError naming the file where it cannot be read
  or the given columns are not in it).

  `estimator(frame, numeric, categorical, id_column)`, when given, answers for the
  placeholders with DP estimates (trainers/dp_spec_statistics.draft_estimates: `numeric`
  is {spec name: its columns}, `categorical` a list of columns) and returns them with
  their privacy record, which the draft writes under `privacy_spent`."""
  library = library or load_library()
  try:
    frame = pd.read_csv(data_path, dtype=str, keep_default_na=True)
  except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise SpecError(f"{data_path}: cannot read the table: {e}") from e
  columns = list(frame.columns)
  if frame.empty:
    raise SpecError(f"{data_path}: the table has a header but no rows; a draft reads each "
                    "column's kind from its values")
  for flag, given in (("--label", options.label), ("--id", options.id_column),
                      ("--site", options.site_column)):
    if given is not None and given not in columns:
      raise SpecError(f"{data_path}: {flag} {given!r} is not a column; the header has "
                      f"{columns}")
  id_column = options.id_column or _guess(columns, ID_NAMES)
  site_column = options.site_column or _guess(columns, SITE_NAMES)
  label = options.label or _guess(columns, LABEL_NAMES)
  notes: List[str] = []
  for role, column, given in (("id", id_column, options.id_column),
                              ("site", site_column, options.site_column),
                              ("label", label, options.label)):
    if column and not given:
      notes.append(f"the {role} column {column!r} was chosen by its name: check it")
  roles = {c for c in (id_column, site_column, label) if c}
  modeled = [c for c in columns if c not in roles]
  kinds = {c: _kind(frame[c]) for c in modeled}

  series = {stem: members for stem, members in find_series(modeled).items()
            if all(kinds[c] == NUMERIC for c in members)}
  visit_counts = Counter(len(members) for members in series.values())
  if len(visit_counts) > 1:
    keep = visit_counts.most_common(1)[0][0]
    for stem, members in list(series.items()):
      if len(members) != keep:
        notes.append(f"series {stem!r} has {len(members)} visits, others {keep}: a spec's "
                     "series share their visits, so its columns are static here")
        del series[stem]
  in_series = {c for members in series.values() for c in members}

  matched: List[str] = []
  static: List[_Entry] = []
  left_out: List[str] = []
  for column in modeled:
    if column in in_series:
      continue
    match = library.match(column)
    if kinds[column] == NUMERIC and not (match and match.variable.type == CATEGORICAL):
      distinct = _distinct(frame[column])
      binary = _coding(distinct, library.code_lists.get("yes_no", [])) if (
          match is None and distinct and set(distinct) <= {"0", "1"}) else None
      if not distinct:
        notes.append(f"column {column!r} has no values: it is drafted numeric; its kind is "
                     "yours to say")
      if binary is not None:
        static.append(_Entry(
            {"name": column, "type": CATEGORICAL, "values": binary},
            "only 0 and 1 in the table (read from the data): a yes / no column is "
            "categorical; make it numeric if it counts something"))
        continue
      fields, comment = _numeric_entry(match, column)
      static.append(_Entry({"name": column, "type": NUMERIC, **fields}, comment, [column]))
      if match:
        matched.append(column)
      continue
    distinct = _distinct(frame[column])
    lists = (list(match.variable.code_lists) if match else []) + library.code_lists.get(
        "yes_no", [])
    coding = _coding(distinct, lists)
    if coding is not None:
      source = match.variable.source if match else "a public yes / no coding"
      static.append(_Entry({"name": column, "type": CATEGORICAL, "values": coding},
                           f"coding read from the data among public code lists; {source}"))
      if match:
        matched.append(column)
      continue
    if kinds[column] == CATEGORICAL and len(distinct) > max(50, len(frame) // 2):
      left_out.append(column)
      continue
    static.append(_Entry(
        {"name": column, "type": CATEGORICAL, "values": [f"{PLACEHOLDER} the categories"]},
        "write its categories as a public code list or data dictionary gives them (a rare "
        "category a patient reveals is private)", [column]))
  for column in left_out:
    notes.append(f"column {column!r} left out: it looks like free text, dates or an id (its "
                 "values are mostly distinct); add it with public categories to model it")

  series_entries: List[_Entry] = []
  for stem, members in series.items():
    match = library.match(stem) or library.match(members[0])
    if match and match.variable.type == CATEGORICAL:
      match = None
    _, unit_text = split_unit(members[0])
    if match is not None and unit_text is not None:
      match = library.match(f"{stem} ({unit_text})") or match
    fields, comment = _numeric_entry(match, stem)
    series_entries.append(_Entry({"name": _snake(stem), **fields, "columns": members}, comment,
                                 members))
    if match:
      matched.extend(members)

  record = None
  if estimator is not None:
    record = _fill_with_dp(frame, static + series_entries, estimator, id_column, notes)
  placeholders = [entry.placeholder() for entry in static + series_entries
                  if entry.placeholder()]
  label_lines = _label_lines(frame, label, placeholders, notes)
  name = options.name or _snake(os.path.splitext(os.path.basename(data_path))[0])
  read = ("no minimum, maximum or quantile of the patients was read." if record is None else
          "other bounds and categories are DP estimates, charged below (privacy_spent).")
  header = [
      f"# Drafted by `clinical-dp spec draft` from {os.path.basename(data_path)} on "
      f"{datetime.date.today().isoformat()}. Review every line before a run.",
      "# Bounds, units, integer and decimals come from the public library of clinical "
      "variables",
      f"# ({os.path.relpath(LIBRARY_PATH, os.path.dirname(os.path.dirname(LIBRARY_PATH)))}, "
      f"source on each line); {read}",
      "# Read from the data: the header, each column's kind (numeric / categorical), the "
      "coding of",
      "# categorical columns among public code lists, and the label's two classes.",
      f"# '{PLACEHOLDER} ...': only you can say; `clinical-dp validate` refuses the spec until "
      "each is filled.",
  ] + [f"# Note: {note}." for note in notes]
  body = [f"name: {yaml_flow(name)}"]
  if id_column:
    body.append(f"id_column: {yaml_flow(id_column)}")
  body += label_lines
  if site_column:
    body.append(f"site_column: {yaml_flow(site_column)}")
  body.append("missing: model  # keep patients with holes and model them (or drop / error)")
  body += (["static:"] + [e.line() for e in static]) if static else ["static: []"]
  body += (["series:"] + [e.line() for e in series_entries]) if series_entries else [
      "series: []"]
  if record is not None:
    body += [f"# The DP estimates above spent epsilon {record['epsilon']:g} at delta "
             f"{record['delta']:g} of the patients' privacy: the release adds it to its "
             "total (PRIVACY.md). Keep this record while the spec holds any of them.",
             "privacy_spent:", f"- {yaml_flow(record)}"]
  columns_modeled = len(modeled) - len(left_out)
  return Draft("\n".join(header + body) + "\n", columns_modeled, matched, placeholders, notes,
               record)


@dataclasses.dataclass
class _Entry:
  """One static column or series of the draft: its spec fields and the line's comment;
  `columns` are the table's columns it reads when it still holds placeholders."""
  fields: Dict
  comment: str
  columns: List[str] = dataclasses.field(default_factory=list)

  def unfilled(self) -> List[str]:
    return [key for key, value in self.fields.items()
            if str(value[0] if isinstance(value, list) and value else value
                   ).startswith(PLACEHOLDER)]

  def placeholder(self) -> Optional[str]:
    unfilled = self.unfilled()
    if not unfilled:
      return None
    if "values" in unfilled:
      return f"{self.fields['name']}: values (the categories)"
    prefix = "series " if "columns" in self.fields else ""
    return f"{prefix}{self.fields['name']}: min and max (public bounds)"

  def line(self) -> str:
    return f"- {yaml_flow(self.fields)}  # {self.comment}"


def _fill_with_dp(frame: pd.DataFrame, entries: List[_Entry], estimator, id_column,
                  notes: List[str]) -> Dict:
  """Fills the entries' placeholders with the estimator's DP bounds and categories (one
  mechanism for all of them); returns its privacy record."""
  numeric = {e.fields["name"]: e.columns for e in entries if "min" in e.unfilled()}
  categorical = [e.columns[0] for e in entries if "values" in e.unfilled()]
  estimates = estimator(frame, numeric, categorical, id_column)
  for entry in entries:
    name = entry.fields["name"]
    if name in estimates.bounds:
      entry.fields["min"], entry.fields["max"] = map(_number, estimates.bounds[name])
      entry.comment = ("bounds from DP estimates (spec draft --dp-bounds, privacy_spent "
                       "below): narrow them to public limits if a data dictionary has them")
    elif entry.columns and entry.columns[0] in estimates.categories:
      entry.fields["values"] = estimates.categories[entry.columns[0]]
      entry.comment = ("categories from a DP thresholded histogram (privacy_spent below): a "
                       "rare category is left out, so rows holding one fail validate; add it "
                       "only from a public code list")
  missed = [e.fields["name"] for e in entries if e.unfilled() and (
      e.fields["name"] in numeric or (e.columns and e.columns[0] in categorical))]
  if missed:
    notes.append(f"no DP estimate passed the noise for {missed} (too few patients for this "
                 "epsilon): fill them by hand")
  return estimates.record


def _label_lines(frame: pd.DataFrame, label: Optional[str], placeholders: List[str],
                 notes: List[str]) -> List[str]:
  """The label's lines: its column and two classes (read from the data, said so)."""
  if label is None:
    placeholders.append("label_column (the outcome column; or give --label)")
    return [f"label_column: {PLACEHOLDER} the outcome column",
            f"label_positive: {PLACEHOLDER} the positive class",
            f"label_negative: {PLACEHOLDER} the negative class"]
  classes = _distinct(frame[label])
  lines = [f"label_column: {yaml_flow(label)}"]
  if len(classes) != 2:
    placeholders.append(f"{label}: label_positive and label_negative (the table has "
                        f"{len(classes)} distinct values, a label needs two)")
    return lines + [f"label_positive: {PLACEHOLDER} the positive class",
                    f"label_negative: {PLACEHOLDER} the negative class"]
  positive = [c for c in classes if normal_form(c) in POSITIVE_WORDS]
  if len(positive) != 1:
    notes.append(f"which of the label's classes {classes} is the positive one is a guess: "
                 "check label_positive")
    positive = [classes[1]]
  negative = [c for c in classes if c != positive[0]]
  return lines + [f"label_positive: {_label_value(positive[0])}  # classes read from the data",
                  f"label_negative: {_label_value(negative[0])}"]


def _label_value(text: str) -> str:
  """A class as YAML that reads back as the CSV cell: 1 stays 1, `yes` stays the word."""
  return text if re.fullmatch(r"-?\d+", text) else yaml_flow(text) if not text.lower() in (
      "yes", "no", "true", "false", "on", "off", "y", "n") else f"'{text}'"
