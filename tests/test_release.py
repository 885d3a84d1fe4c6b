"""ReleasePusher's core (components/release.py) on small artifact directories, without a
pipeline: what goes out, the composed total, PRIVACY.md, and the refusals."""

import json
import os

import pytest

from clinical_dp import sensitivity
from components import release
from federated import config as federated_config
from trainers import accounting
from tests.conftest import run_cli
from trainers.dp_training import PRIVACY_RECORD_FILE

CSV = ("patient_id,sbp,sex,label\n" + "".join(
    f"synthetic-{i:06d},{110 + 5 * i}.0,{'FM'[i % 2]},{i % 2}\n" for i in range(1, 9)))


def _record(epsilon, unit="patient", **extra):
  plan = accounting.PrivacyPlan(num_examples=100, batch_size=10, noise_multiplier=1.0,
                                epochs=1, delta=1e-5, max_rows_per_patient=2)
  return {**accounting.compute_epsilon(plan).to_dict(), "epsilon": epsilon, "unit": unit,
          "selection": "none: the model after the last planned step is released", **extra}


def _artifact(directory, files, record):
  os.makedirs(directory, exist_ok=True)
  for name, text in files.items():
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      f.write(text)
  if record is not None:
    with open(os.path.join(directory, PRIVACY_RECORD_FILE), "w", encoding="utf-8") as f:
      json.dump(record, f)
  return str(directory)


@pytest.fixture
def pipeline_outputs(tmp_path):
  """Directories laid out as the pipeline's outputs: the synthetic Examples artifact (CSV,
  record and a split the release leaves behind), two models, and federated results."""
  synthetic = _artifact(tmp_path / "synthetic", {"synthetic.csv": CSV}, _record(0.9))
  _artifact(tmp_path / "synthetic" / "Split-train", {"examples.gz": "rows"}, None)
  generator = _artifact(tmp_path / "generator", {"saved_model.pb": "g"}, _record(0.9))
  _artifact(tmp_path / "generator" / "variables", {"variables.index": "v"}, None)
  classifier = _artifact(tmp_path / "classifier", {"saved_model.pb": "c"}, _record(0.8))
  federated = tmp_path / "federated"
  _artifact(federated, {"federated.json": "{}"}, None)
  _artifact(federated / "models" / "dopamine", {"saved_model.pb": "d"},
            _record(2.0, algorithm="dopamine", sampling="poisson"))
  _artifact(federated / "models" / "dp_fedavg", {"saved_model.pb": "f"},
            _record(3.0, unit="site (client level)", algorithm="dp_fedavg",
                    relation=sensitivity.SITE_RELATION))
  return synthetic, generator, classifier, str(federated)


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, names in os.walk(root) for f in names)


def test_release_holds_exactly_the_recorded_artifacts_and_privacy_md(pipeline_outputs,
                                                                     tmp_path):
  destination = str(tmp_path / "run" / "release")
  found = release.candidates(*pipeline_outputs)
  privacy = release.write_release(found, destination, "odd", federated_ran=True)
  assert _files(destination) == sorted([
      "PRIVACY.md", "privacy.json",
      "synthetic/synthetic.csv", "synthetic/privacy_record.json",
      "generator/saved_model.pb", "generator/privacy_record.json",
      "generator/variables/variables.index",
      "dp_classifier/saved_model.pb", "dp_classifier/privacy_record.json",
      "federated/dopamine/saved_model.pb", "federated/dopamine/privacy_record.json",
      "federated/dp_fedavg/saved_model.pb", "federated/dp_fedavg/privacy_record.json"])
  # Basic composition per patient; the synthetic table is post-processing of the generator;
  # a guarantee under another relation (a site added or removed) is stated beside the
  # total, not added to it.
  together = privacy["all_released_together"]
  assert together["epsilon"] == pytest.approx(0.9 + 0.8 + 2.0)
  assert together["delta"] == pytest.approx(3e-5)
  assert together["artifacts"] == ["dp_classifier", "federated/dopamine", "generator"]
  assert "synthetic" in together["post_processing"]
  assert together["relation"] == "one patient added or removed"
  other = together["other_relations"][sensitivity.SITE_RELATION]
  assert other["artifacts"] == ["federated/dp_fedavg"]
  assert other["epsilon"] == pytest.approx(3.0)
  assert json.loads(open(os.path.join(destination, "privacy.json")).read()) == privacy
  text = open(os.path.join(destination, "PRIVACY.md"), encoding="utf-8").read()
  assert "epsilon 3.700 at delta 3e-05" in text
  for name in ("synthetic", "generator", "dp_classifier", "federated/dopamine",
               "federated/dp_fedavg"):
    assert f"### {name}\n" in text
  for what in ("- unit: patient", "- delta: 1e-05", "- accountant: rdp", "- sampling: poisson",
               "- selection on real data: none", "post-processing of the generator",
               "one site added or removed: epsilon 3.000", "Federated learning ran",
               "Per patient (one patient added or removed): epsilon 3.700",
               "- neighbouring relation: one patient added or removed (adding or removing "
               "one patient"):
    assert what in text, what


def test_a_second_release_replaces_the_first_and_a_run_without_federated_says_so(
    pipeline_outputs, tmp_path):
  destination = str(tmp_path / "release")
  release.write_release(release.candidates(*pipeline_outputs), destination, "odd", True)
  found = release.candidates(*pipeline_outputs[:3], None)
  privacy = release.write_release(found, destination, "odd", federated_ran=False)
  assert not os.path.exists(os.path.join(destination, "federated"))
  assert "other_relations" not in privacy["all_released_together"]
  assert privacy["federated"].startswith("was not run")
  assert "Federated learning was not run" in open(os.path.join(destination, "PRIVACY.md")).read()


def test_only_the_chosen_federated_models_are_released_and_the_rest_named(pipeline_outputs,
                                                                         tmp_path):
  destination = str(tmp_path / "release")
  found, withheld = release.select_federated(release.candidates(*pipeline_outputs),
                                             ["dopamine"])
  assert withheld == ["federated/dp_fedavg"]
  privacy = release.write_release(found, destination, "odd", True, withheld)
  assert not os.path.exists(os.path.join(destination, "federated", "dp_fedavg"))
  assert os.path.isfile(os.path.join(destination, "federated", "dopamine", "saved_model.pb"))
  assert privacy["not_released"] == ["federated/dp_fedavg"]
  assert "other_relations" not in privacy["all_released_together"]  # its guarantee is not owed
  text = open(os.path.join(destination, "PRIVACY.md"), encoding="utf-8").read()
  assert "### federated/dp_fedavg" not in text
  assert "federated/dp_fedavg were trained for the report's comparison and are not " \
         "released" in text
  # None: the total is the pipeline's own artifacts.
  found, withheld = release.select_federated(release.candidates(*pipeline_outputs), [])
  privacy = release.write_release(found, destination, "odd", True, withheld)
  assert privacy["all_released_together"]["epsilon"] == pytest.approx(0.9 + 0.8)
  assert not os.path.exists(os.path.join(destination, "federated"))


@pytest.mark.parametrize("text, expected", [
    ("dopamine", ("dopamine",)), (" central_dp, dopamine,dopamine ", ("central_dp", "dopamine")),
    ("all", federated_config.DP_ALGORITHMS), ("none", ())])
def test_release_federated_takes_dp_algorithms_all_or_none(text, expected):
  assert federated_config.federated_release(text) == expected


@pytest.mark.parametrize("text", ["fedavg", "dopamine,centralized", "", "Dopamine"])
def test_release_federated_refuses_what_is_not_a_dp_algorithm(text):
  with pytest.raises(ValueError, match="--release-federated takes DP federated algorithms"):
    federated_config.federated_release(text)


def test_an_artifact_without_a_privacy_record_is_refused_and_named(pipeline_outputs,
                                                                   tmp_path):
  synthetic, generator, _, federated = pipeline_outputs
  # The non-private twin carries NOT_PRIVATE instead of a record.
  twin = _artifact(tmp_path / "twin", {"saved_model.pb": "t", "NOT_PRIVATE": "never"}, None)
  destination = tmp_path / "release"
  with pytest.raises(release.UnrecordedArtifactError,
                     match=r"dp_classifier \(no privacy_record.json in .*twin\)"):
    release.write_release(release.candidates(synthetic, generator, twin, federated),
                          str(destination), "odd", True)
  assert not destination.exists()  # nothing is written when one artifact is refused
  # A record that states no finite epsilon (a non-private reference) is refused too.
  _artifact(tmp_path / "federated" / "models" / "fedavg", {"saved_model.pb": "x"},
            _record(float("inf"), unit="none (not private)"))
  with pytest.raises(release.UnrecordedArtifactError, match=r"federated/fedavg .*no finite"):
    release.write_release(release.candidates(*pipeline_outputs), str(destination), "odd",
                          True)
  assert not destination.exists()


def test_a_destination_holding_other_files_is_refused(pipeline_outputs, tmp_path):
  destination = tmp_path / "bucket"
  _artifact(destination, {"somebody_elses.csv": "x"}, None)
  with pytest.raises(release.ReleaseDestinationError, match="not an earlier release"):
    release.write_release(release.candidates(*pipeline_outputs), str(destination), "odd",
                          True)
  assert os.listdir(destination) == ["somebody_elses.csv"]


def test_public_report_reads_the_release_alone(pipeline_outputs, tmp_path):
  """`clinical-dp report --public RUN_DIR`: the synthetic table's own statistics and the
  privacy records, from release/ only (the real table beside it is never read)."""
  run_dir = tmp_path / "run"
  release.write_release(release.candidates(*pipeline_outputs), str(run_dir / "release"),
                        "odd", True)
  _artifact(run_dir / "input", {"data.csv": "patient_id,sbp,sex,label\nP000001,987.5,X,1\n"},
            None)
  result = run_cli("report", "--public", run_dir, timeout=120)
  assert result.returncode == 0, result.stderr
  report = json.loads((run_dir / "public_report" / "report.json").read_text())
  assert report["public"].startswith("May be published.")
  assert report["synthetic_patients"] == 8
  assert report["columns"]["sbp"]["max"] == 150.0
  assert report["columns"]["sex"]["shares"] == {"F": 0.5, "M": 0.5}
  assert "patient_id" not in report["columns"]  # one per row: nothing to say
  assert report["privacy"] == json.loads((run_dir / "release" / "privacy.json").read_text())
  page = (run_dir / "public_report" / "report.html").read_text()
  assert page.index("May be published.") < page.index("<h1>")
  for real in ("P000001", "987.5", ">X<"):
    assert real not in page and real not in json.dumps(report)
  # No release (a run that did not finish): exit 2, saying so.
  result = run_cli("report", "--public", tmp_path / "unfinished", timeout=120)
  assert result.returncode == 2 and "no complete release" in result.stderr
