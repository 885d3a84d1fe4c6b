"""Bad input through the CLI: clear message (file, column, rule), non-zero exit,
input untouched, and no output directory that looks like a finished run."""

import os

import pandas as pd
import pytest

from tests.conftest import file_digest, run_cli

EXIT_INVALID = 2


def _write_broken(sprint_dir, tmp_path, breaker):
  frame = pd.read_csv(sprint_dir / "data.csv", dtype=str, keep_default_na=False)
  breaker(frame)
  path = tmp_path / "broken.csv"
  frame.to_csv(path, index=False)
  return path


def _set(column, row, value):
  def breaker(frame):
    frame.loc[row, column] = value
  return breaker


BREAKERS = {
    "missing column": (lambda f: f.drop(columns=["sbp_6m"], inplace=True), "sbp_6m",
                       "missing from the file"),
    "text in numeric": (_set("age", 3, "sixty"), "age", "text in a numeric column"),
    "above bound": (_set("sbp_12m", 5, "400"), "sbp_12m", "outside the spec's bounds [60, 260]"),
    "below bound": (_set("egfr", 0, "-3"), "egfr", "outside the spec's bounds"),
    "fractional integer": (_set("meds_3m", 2, "1.5"), "meds_3m", "non-integer"),
    "unknown label": (_set("intensive", 4, "maybe"), "intensive", "label value is neither class"),
    "unknown category": (_set("sex", 1, "X"), "sex", "not among the spec's categories"),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_broken_table_is_refused(case, command, sprint_dir, tmp_path):
  breaker, column, rule = BREAKERS[case]
  data = _write_broken(sprint_dir, tmp_path, breaker)
  digest = file_digest(data)
  output = tmp_path / "run"
  args = ["--data", data, "--spec", sprint_dir / "spec.yaml"]
  if command == "run":
    args += ["--output", output, "--fast"]
  result = run_cli(command, *args)
  assert result.returncode == EXIT_INVALID, result.stdout + result.stderr
  assert str(data) in result.stderr
  assert f"column '{column}'" in result.stderr
  assert rule in result.stderr
  assert file_digest(data) == digest
  assert not output.exists()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_missing_and_empty_files(command, sprint_dir, tmp_path):
  empty = tmp_path / "empty.csv"
  empty.write_text("")
  header_only = tmp_path / "header.csv"
  header_only.write_text("patient_id,site,intensive\n")
  for path, rule in ((tmp_path / "absent.csv", "file not found"), (empty, "file is empty"),
                     (header_only, "no data rows")):
    args = ["--data", path, "--spec", sprint_dir / "spec.yaml"]
    if command == "run":
      args += ["--output", tmp_path / "run"]
    result = run_cli(command, *args)
    assert result.returncode == EXIT_INVALID, result.stderr
    assert str(path) in result.stderr and rule in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, rule", [("name: [", "not valid YAML"),
                                        ("name: x\nlabel_column: intensive\n",
                                         "names no features")])
def test_bad_spec_is_refused(text, rule, sprint_dir, tmp_path):
  spec = tmp_path / "spec.yaml"
  spec.write_text(text)
  for command in ("validate", "run"):
    args = ["--data", sprint_dir / "data.csv", "--spec", spec]
    if command == "run":
      args += ["--output", tmp_path / "run"]
    result = run_cli(command, *args)
    assert result.returncode == EXIT_INVALID
    assert str(spec) in result.stderr and rule in result.stderr


def test_every_finding_is_reported_at_once(sprint_dir, tmp_path):
  def breaker(frame):
    frame.loc[0, "age"] = "old"
    frame.loc[1, "dbp_rz"] = "999"
    frame.loc[2, "race"] = "martian"
  data = _write_broken(sprint_dir, tmp_path, breaker)
  result = run_cli("validate", "--data", data, "--spec", sprint_dir / "spec.yaml")
  assert result.returncode == EXIT_INVALID
  for column, line in (("age", 2), ("dbp_rz", 3), ("race", 4)):
    assert f"column '{column}'" in result.stderr
    assert f"line {line}" in result.stderr


def test_valid_table_passes_and_counts_dropped_rows(sprint_dir):
  result = run_cli("validate", "--data", sprint_dir / "data.csv", "--spec",
                   sprint_dir / "spec.yaml")
  assert result.returncode == 0, result.stderr
  assert "valid against spec 'sprint_like'" in result.stdout
  # the simulated trial's spec models its missing visits: every patient with a label kept
  assert "with missing values, modeled" in result.stdout
  assert "0 would be dropped for a missing label" in result.stdout


def test_missing_policy_error_refuses_incomplete_rows(sprint_dir, tmp_path):
  spec = tmp_path / "spec.yaml"
  spec.write_text((sprint_dir / "spec.yaml").read_text().replace("missing: model",
                                                                 "missing: error"))
  result = run_cli("validate", "--data", sprint_dir / "data.csv", "--spec", spec)
  assert result.returncode == EXIT_INVALID
  assert "missing value and the spec says missing: error" in result.stderr


def test_foreign_output_directory_is_not_overwritten(sprint_dir, tmp_path):
  output = tmp_path / "precious"
  output.mkdir()
  (output / "notes.txt").write_text("mine")
  result = run_cli("run", "--data", sprint_dir / "data.csv", "--spec", sprint_dir / "spec.yaml",
                   "--output", output, "--fast")
  assert result.returncode == EXIT_INVALID
  assert "not made by clinical-dp" in result.stderr
  assert os.listdir(output) == ["notes.txt"]


def test_an_unknown_federated_release_is_refused_before_anything_runs(sprint_dir, tmp_path):
  output = tmp_path / "run"
  result = run_cli("run", "--data", sprint_dir / "data.csv", "--spec", sprint_dir / "spec.yaml",
                   "--output", output, "--fast", "--release-federated", "dopamine,fedavg")
  assert result.returncode == EXIT_INVALID
  assert "--release-federated takes DP federated algorithms" in result.stderr
  assert "not one of them: fedavg" in result.stderr
  assert not output.exists()


def test_cells_are_stripped_of_exactly_what_str_strip_strips():
  """Arrow's trim (the pipeline runtime) with validation's character set against Python's
  str.strip (the federated runtime's path): every whitespace character, inner spaces kept."""
  import sys  # pylint: disable=g-import-not-at-top
  from clinical_dp import validation  # pylint: disable=g-import-not-at-top
  assert validation._WHITESPACE == "".join(  # pylint: disable=protected-access
      c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
  cells = ["", " ", " 12.5 ", "\t7\n", "\x1cF\x1f", "\u3000M\xa0", "a b", "  Größe ",
           "\u200bx\u200b", "1,5"]  # U+200B is not whitespace: kept
  column = pd.Series(cells * 3, name="c")
  assert validation._trimmed(column).to_pylist() == column.str.strip().tolist()  # pylint: disable=protected-access
