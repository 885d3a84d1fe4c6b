"""`clinical-dp spec draft` (issue 25): a spec drafted from the header and a public library,
which validate accepts once its listed placeholders are filled, and whose bounds and
category lists do not follow the patients' values."""

import os
import unicodedata

import numpy as np
import pandas as pd
import pytest
import yaml

from clinical_dp import spec_draft, variable_library
from clinical_dp.spec import PLACEHOLDER, SpecError, parse_spec
from clinical_dp.validation import validate_table
from tests.conftest import run_cli
from tests.real_shaped import (HOSPITAL_ICU_NAMES, ODD_ICU_NAMES, hospital_export_icu,
                               odd_icu, write_table)


@pytest.fixture(scope="module")
def library():
  return variable_library.load_library()


def test_library_entries_are_sane_and_sourced(library):
  assert len(library.variables) >= 40
  for variable in library.variables:
    assert variable.source.strip(), variable.name
    assert variable.type in ("numeric", "categorical"), variable.name
    if variable.type == "numeric":
      assert variable.units, variable.name
    for unit in variable.units:
      assert unit.min < unit.max, (variable.name, unit.unit)
      assert not (unit.integer and unit.decimals), (variable.name, unit.unit)
  units = {u.unit for v in library.variables for u in v.units}
  assert {"mg/dL", "mmol/L", "bpm"} <= units


def test_library_refuses_a_synonym_of_two_variables(tmp_path):
  entry = {"type": "numeric", "source": "s", "units": [{"unit": "x", "min": 0, "max": 1}]}
  (tmp_path / "lib.yaml").write_text(yaml.safe_dump({"variables": [
      dict(entry, name="a", synonyms=["Heart rate"]),
      dict(entry, name="b", synonyms=["heart-rate"])]}))
  with pytest.raises(ValueError, match="names both a and b"):
    variable_library.load_library(str(tmp_path / "lib.yaml"))


@pytest.mark.parametrize("header, name, unit, assumed", [
    ("Na+ (mmol/L)", "sodium", "mmol/L", False),
    ("Température", "temperature", "°C", True),
    ("Creatinine (umol/L)", "creatinine", "umol/L", False),
    ("Kreatinin", "creatinine", "mg/dL", True),
    ("SpO2 %", "spo2", None, False),
])
def test_headers_match_their_variable_and_unit(library, header, name, unit, assumed):
  match = library.match(header)
  assert match is not None and match.variable.name == name
  if unit is not None:
    assert unicodedata.normalize("NFKC", match.unit.unit).lower() == unit.lower()
    assert match.unit_assumed == assumed


def test_series_are_found_from_names_in_visit_order():
  columns = ["age", "sbp_3m", "sbp_rz", "sbp_1m", "hr_v2", "hr_v10", "hr_v1", "spo2",
             "pao2", "sbp_1w"]
  series = spec_draft.find_series(columns)
  assert series == {"sbp": ["sbp_rz", "sbp_1w", "sbp_1m", "sbp_3m"],
                    "hr": ["hr_v1", "hr_v2", "hr_v10"]}


def _draft(tmp_path, table, name="data", **options):
  data_path, _ = write_table(tmp_path / name, *table)
  return spec_draft.draft_spec(data_path, spec_draft.DraftOptions(**options)), data_path


def _filled(text, values):
  """The draft with each placeholder line's FILL IN replaced by values[column]."""
  raw = yaml.safe_load(text)
  for feature in raw["static"] + raw["series"]:
    for key, value in list(feature.items()):
      if str(value).startswith(PLACEHOLDER) or (
          isinstance(value, list) and str(value[0]).startswith(PLACEHOLDER)):
        feature[key] = values[feature["name"]][key]
  return raw


def test_hospital_export_is_matched_and_validates_once_placeholders_are_filled(tmp_path):
  frame, spec = hospital_export_icu()
  draft, data_path = _draft(tmp_path, (frame, spec))
  modeled = [c for c in frame.columns if c not in (spec.id_column, spec.site_column,
                                                   spec.label_column)]
  assert draft.columns == len(modeled)
  matched = set(draft.matched)
  assert len(matched) / len(modeled) >= 0.9, sorted(set(modeled) - matched)
  assert draft.placeholders == ["Admission type: values (the categories)"]
  with pytest.raises(SpecError, match="static feature 'Admission type': values"):
    parse_spec(draft.text, "draft.yaml")
  public = {f.name: {"values": list(f.values)} for f in spec.static}
  raw = _filled(draft.text, public)
  drafted = parse_spec(yaml.safe_dump(raw, sort_keys=False), "filled.yaml")
  assert (drafted.id_column, drafted.site_column, drafted.label_column) == (
      spec.id_column, spec.site_column, spec.label_column)
  assert (drafted.label_positive, drafted.label_negative) == ("died", "survived")
  assert validate_table(data_path, drafted).ok


def test_odd_headers_get_placeholders_not_guesses(tmp_path):
  frame, spec = odd_icu(patients=200)
  draft, _ = _draft(tmp_path, (frame, spec))
  unmatched = {line.split(":")[0] for line in draft.placeholders}
  assert {"2nd-score.v1", "class", "type", "größe"} <= unmatched
  assert draft.notes  # the id / site / label columns were guessed, and it says so
  print(f"odd names: {len(draft.matched)} of {draft.columns} matched")


def test_drafted_bounds_and_categories_do_not_follow_one_patient(tmp_path):
  """Two tables that differ in one patient (one left out, one with extreme values put in)
  give the same draft; the data's own minimum and maximum differ (the control)."""
  frame, spec = hospital_export_icu()
  neighbour = frame.iloc[1:].copy()
  extreme = frame.iloc[[0]].copy()
  extreme[HOSPITAL_ICU_NAMES["creatinine"]] = 14.9
  extreme[HOSPITAL_ICU_NAMES["age"]] = 99
  extreme[HOSPITAL_ICU_NAMES["patient_id"]] = "P-new"
  extreme[HOSPITAL_ICU_NAMES["sex"]] = "U"  # a code of the public list no one else has
  neighbour = pd.concat([neighbour, extreme], ignore_index=True)
  first, _ = _draft(tmp_path / "a", (frame, spec))
  second, _ = _draft(tmp_path / "b", (neighbour, spec))
  assert first.text == second.text
  column = HOSPITAL_ICU_NAMES["creatinine"]
  assert frame[column].max() != neighbour[column].max()  # a data-read bound would move


def test_cli_drafts_refuses_to_overwrite_and_validate_names_the_placeholders(tmp_path):
  frame, spec = hospital_export_icu(patients=100)
  data_path, _ = write_table(tmp_path / "t", frame, spec)
  out = tmp_path / "spec.yaml"
  result = run_cli("spec", "draft", "--data", data_path, "--out", out,
                   "--label", "Hospital mortality")
  assert result.returncode == 0, result.stderr
  assert "placeholder(s) to fill" in result.stdout and "Admission type" in result.stdout
  again = run_cli("spec", "draft", "--data", data_path, "--out", out)
  assert again.returncode == 2 and "--force" in again.stderr
  refused = run_cli("validate", "--data", data_path, "--spec", out)
  assert refused.returncode == 2
  assert "placeholders are not filled" in refused.stderr and "Admission type" in refused.stderr
  missing = run_cli("spec", "draft", "--data", data_path, "--out", tmp_path / "x.yaml",
                    "--label", "no such column")
  assert missing.returncode == 2 and "--label 'no such column' is not a column" in missing.stderr
  assert not os.path.exists(tmp_path / "x.yaml")


def test_a_zero_one_column_is_drafted_categorical(tmp_path):
  frame = pd.DataFrame({"id": range(40), "died": np.arange(40) % 2,
                        "on_dialysis": (np.arange(40) % 3 == 0).astype(int),
                        "heart_rate": 60 + np.arange(40)})
  path = tmp_path / "t.csv"
  frame.to_csv(path, index=False)
  raw = yaml.safe_load(spec_draft.draft_spec(str(path)).text)
  kinds = {f["name"]: f for f in raw["static"]}
  assert kinds["on_dialysis"]["type"] == "categorical"
  assert [str(v) for v in kinds["on_dialysis"]["values"]] == ["0", "1"]
  assert kinds["heart_rate"]["type"] == "numeric" and kinds["heart_rate"].get("integer")
  assert raw["label_column"] == "died" and raw["id_column"] == "id"


def test_dp_bounds_fill_the_placeholders_and_record_their_charge(tmp_path):
  """--dp-bounds answers for exactly the columns that had placeholders, in one mechanism
  whose record the draft carries (the release adds it: tests/test_spec_draft_run.py)."""
  from trainers import dp_spec_statistics  # pylint: disable=g-import-not-at-top
  frame, spec = odd_icu(patients=1500)
  plain, _ = _draft(tmp_path / "plain", (frame, spec), label=spec.label_column)
  config = dp_spec_statistics.DpSpecConfig(epsilon=1.0, seed=0)
  def estimator(table, numeric, categorical, id_column):
    return dp_spec_statistics.draft_estimates(table, numeric, categorical, config, id_column)
  data_path, _ = write_table(tmp_path / "dp", frame, spec)
  draft = spec_draft.draft_spec(data_path, spec_draft.DraftOptions(label=spec.label_column),
                                estimator=estimator)
  assert plain.privacy_record is None and "privacy_spent" not in plain.text
  asked = {line.split(":")[0] for line in plain.placeholders}
  assert set(draft.privacy_record["columns"]) == asked
  assert not draft.placeholders, draft.placeholders
  raw = yaml.safe_load(draft.text)
  assert raw["privacy_spent"] == [draft.privacy_record]
  assert "DP estimates" in draft.text.splitlines()[2]
  assert parse_spec(draft.text).privacy_spent == (draft.privacy_record,)
