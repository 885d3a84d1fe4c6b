"""From a hospital's export to a release in the three commands of the README (issue 25):
`spec draft --dp-bounds`, `spec check`, `run`; validate accepts the draft with nothing
filled by hand, and PRIVACY.md's total includes what drafting and checking spent."""

import json

import pytest
import yaml

from clinical_dp.spec import parse_spec
from tests.conftest import run_cli
from tests.real_shaped import hospital_export_icu, write_table

DRAFT_EPSILON, CHECK_EPSILON = 2.0, 1.0


@pytest.fixture(scope="module")
def drafted_run(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("drafted")
  data_path, _ = write_table(tmp_path / "export", *hospital_export_icu())
  spec_path, output = tmp_path / "spec.yaml", tmp_path / "run"
  steps = {
      "draft": ("spec", "draft", "--data", data_path, "--out", spec_path, "--dp-bounds",
                str(DRAFT_EPSILON), "--seed", "0"),
      "check": ("spec", "check", "--data", data_path, "--spec", spec_path, "--epsilon",
                str(CHECK_EPSILON), "--seed", "0"),
      "validate": ("validate", "--data", data_path, "--spec", spec_path),
      "run": ("run", "--data", data_path, "--spec", spec_path, "--output", output, "--fast",
              "--no-federated", "--seed", "0")}
  results = {}
  for step, args in steps.items():
    results[step] = run_cli(*args)
    assert results[step].returncode == 0, (step, results[step].stdout, results[step].stderr)
  return spec_path, output, results


def test_the_draft_needs_no_hand_filling_and_the_run_completes(drafted_run):
  spec_path, output, results = drafted_run
  assert "placeholder" not in results["draft"].stdout
  assert "spent epsilon 2" in results["draft"].stdout
  assert "recorded under privacy_spent" in results["check"].stdout
  spec = parse_spec(spec_path.read_text(), str(spec_path))
  admission = next(f for f in spec.static if f.name == "Admission type")
  assert set(admission.values) == {"cardiac", "other", "respiratory", "sepsis", "surgical"}
  assert [r["purpose"] for r in spec.privacy_spent] == ["spec draft --dp-bounds", "spec check"]
  # the icu export has readmissions: both mechanisms' sensitivity counts two rows a patient
  assert [r["max_rows_per_patient"] for r in spec.privacy_spent] == [2, 2]
  assert "clinical-dp run finished" in results["run"].stdout
  assert "the spec was written from DP statistics" in results["run"].stdout


def test_privacy_total_includes_what_drafting_and_checking_spent(drafted_run):
  spec_path, output, _ = drafted_run
  release = output / "release"
  privacy = json.loads((release / "privacy.json").read_text())
  artifacts = privacy["artifacts"]
  assert artifacts["spec"]["epsilon"] == pytest.approx(DRAFT_EPSILON + CHECK_EPSILON)
  trained = ("generator", "dp_classifier", "spec")
  together = privacy["all_released_together"]
  assert together["epsilon"] == pytest.approx(sum(artifacts[a]["epsilon"] for a in trained))
  assert together["artifacts"] == sorted(trained)
  report = json.loads((output / "report" / "report.json").read_text())
  assert report["privacy"]["all_released_together"]["epsilon"] == pytest.approx(
      together["epsilon"])  # the report's total is the release's
  markdown = (release / "PRIVACY.md").read_text()
  assert f"epsilon {together['epsilon']:.3f} at delta" in markdown
  assert "| spec | 3.000 |" in markdown
  released_spec = parse_spec((release / "spec" / "spec.yaml").read_text())
  assert released_spec == parse_spec(spec_path.read_text())
  assert yaml.safe_load((release / "spec" / "spec.yaml").read_text())["privacy_spent"]
