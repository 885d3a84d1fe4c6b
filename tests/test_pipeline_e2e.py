"""The real TFX pipeline under LocalDagRunner, checked through ML Metadata and its artifacts."""

import base64
import glob
import json
import os
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from clinical_dp.example_gen_split import example_gen_splits
from clinical_dp.names import SIGNATURE_INPUTS_FILE, ColumnKeys
from clinical_dp.report_format import json_safe
from clinical_dp.spec import load_spec
from federated import site_data
from pipelines.metadata import open_store, read_outputs
from pipelines.runner import input_fingerprint
from tests import privacy_recompute
from tests.conftest import run_cli
from tests.real_shaped import odd_icu, small_two_centre_trial, write_table

COMPONENTS = {"CsvExampleGen", "StatisticsGen", "SpecSchemaGen", "ExampleValidator",
              "AnomalyGate", "Transform", "GanTrainer", "SyntheticDataGen", "DpClassifierTrainer",
              "Evaluator", "FederatedStep", "EvaluationReport", "ReleasePusher"}
RUN_DIR_CONTENTS = [".clinical-dp-output", "federated", "input", "logs", "metadata.sqlite",
                    "release", "report", "run_args.json", "run_summary.json", "tfx"]
TRAINED_RELEASES = ("generator", "dp_classifier")
# Library output that must reach the run's log only, never the console.
CONSOLE_NOISE = ("cuFFT", "ArtifactQuery", "deprecat", "ERROR:absl", "WARNING", "Traceback")


def _split_examples(examples_uri, split):
  files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
  assert files, f"no files in split {split}"
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _bytes(example, key):
  return example.features.feature[key].bytes_list.value[0].decode()


def _outputs_by_key(output_dir):
  outputs = read_outputs(os.path.join(output_dir, "metadata.sqlite"))
  return {f"{o['component']}.{o['name']}": o for o in outputs}


def _run(data_dir, output, *extra):
  result = run_cli("run", "--data", data_dir / "data.csv", "--spec", data_dir / "spec.yaml",
                   "--output", output, "--fast", *extra)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return result


def _module_run(tmp_path_factory, name, data_dir, *extra):
  output = tmp_path_factory.mktemp(name) / "run"
  return output, _run(data_dir, output, *extra)


def _written(tmp_path_factory, name, table):
  directory = tmp_path_factory.mktemp(name)
  write_table(directory, *table)
  return directory


# Two pipeline runs serve the module (each costs minutes): `clinical-dp run` on the
# odd-named icu table and on the small two-centre trial, both with the non-private twin.
# The TFX CLI's run and the runs that stop early are in tests/test_pipeline_cli_runs.py,
# so that the two modules can run side by side (pytest-xdist, one module per worker).

@pytest.fixture(scope="module")
def odd_icu_dir(tmp_path_factory):
  """The icu table as a hospital export might name it (tests/real_shaped.py)."""
  return _written(tmp_path_factory, "odd_icu", odd_icu())


@pytest.fixture(scope="module")
def icu_run(odd_icu_dir, tmp_path_factory):
  return _module_run(tmp_path_factory, "icu_run", odd_icu_dir, "--non-private-twin",
                     "--seed", "0", "--release-federated", "all")


@pytest.fixture(scope="module")
def small_trial_dir(tmp_path_factory):
  return _written(tmp_path_factory, "small_trial", small_two_centre_trial())


@pytest.fixture(scope="module")
def small_trial_run(small_trial_dir, tmp_path_factory):
  return _module_run(tmp_path_factory, "small_trial_run", small_trial_dir, "--non-private-twin",
                     "--seed", "0")


@pytest.mark.parametrize("run_fixture", ["icu_run", "small_trial_run"])
def test_pipeline_runs_to_the_end_and_records_every_artifact(run_fixture, request):
  output, result = request.getfixturevalue(run_fixture)
  assert "clinical-dp run finished" in result.stdout
  assert sorted(os.listdir(output)) == RUN_DIR_CONTENTS
  outputs = _outputs_by_key(str(output))
  assert {key.split(".")[0] for key in outputs} == COMPONENTS | {"NonPrivateTwinTrainer"}
  assert all(o["execution_state"] == "COMPLETE" for o in outputs.values())
  for key in ("CsvExampleGen.examples", "SpecSchemaGen.schema", "ExampleValidator.anomalies",
              "Transform.transform_graph", "Transform.transformed_examples"):
    assert os.listdir(outputs[key]["uri"]), key
  summary = json.loads((output / "run_summary.json").read_text())
  assert sum(summary["split_rows"].values()) == summary["input"]["rows_used"]
  if run_fixture == "icu_run":  # --fast keeps 600 of its 1500 patients; the trial all
    assert summary["input"]["subsampled"] and summary["input"]["patients_used"] == 600
  else:
    assert not summary["input"]["subsampled"]


def test_console_shows_our_lines_and_the_log_has_the_rest(icu_run):
  """clinical_dp/console.py: a line as each component starts and ends, the federated child's
  lines, the summary; library output (absl, warnings, TF's C++ logs) in logs/pipeline.log."""
  output, result = icu_run
  console = result.stdout + result.stderr
  assert not [noise for noise in CONSOLE_NOISE if noise in console], console[-5000:]
  for component in COMPONENTS:
    assert f"  {component} ...\n" in result.stdout, component
    assert re.search(rf"^  {component} done in \d+ s$", result.stdout, re.MULTILINE), component
  assert "[federated]" in result.stdout and "epsilon so far" in result.stdout
  # The federated child started on the prepared input as the pipeline started and ran
  # beside the chain (components/early_start.py); its lines come in FederatedStep's turn.
  at = result.stdout.index
  started = at("FederatedStep: started beside the chain, on the prepared input")
  adopted = at("FederatedStep: its child started beside the chain")
  assert at("[2/3] running the TFX pipeline") < started < at("  CsvExampleGen ...")
  assert "on the prepared input" in result.stdout[adopted:at("[federated]")]
  assert max(at("  SyntheticDataGen done in"), at("  Evaluator done in")) < at(
      "  FederatedStep ...") < adopted < at("[federated]") < at("  EvaluationReport ...")
  log = (output / "logs" / "pipeline.log").read_text()
  assert "INFO:absl:Component CsvExampleGen is running." in log
  assert "WARNING:absl:" in log and "  CsvExampleGen done in" in log


def test_split_keeps_patients_together_and_test_rows_apart(icu_run, odd_icu_dir):
  output, _ = icu_run
  id_key = ColumnKeys.for_spec(load_spec(str(odd_icu_dir / "spec.yaml"))).key("id")
  uri = _outputs_by_key(str(output))["CsvExampleGen.examples"]["uri"]
  patients = {split: [_bytes(e, id_key) for e in _split_examples(uri, split)]
              for split in ("train", "eval", "test")}
  train, evaluation, test = (set(patients[s]) for s in ("train", "eval", "test"))
  assert not train & test and not evaluation & test and not train & evaluation
  prepared = pd.read_csv(output / "input" / "data.csv", dtype={id_key: str})
  assert sum(len(rows) for rows in patients.values()) == len(prepared)
  repeated = prepared[id_key][prepared[id_key].duplicated()]
  assert len(repeated) > 0, "the check needs patients with several rows"
  for split_patients in patients.values():
    for patient in set(split_patients) & set(repeated):
      assert split_patients.count(patient) == (prepared[id_key] == patient).sum()
  # The transformed test split holds exactly the held-out patients.
  transformed = _outputs_by_key(str(output))["Transform.transformed_examples"]["uri"]
  assert {_bytes(e, id_key) for e in _split_examples(transformed, "test")} == test
  # The pre-flight check knew ExampleGen's split before it ran
  # (clinical_dp/example_gen_split.py).
  text = (output / "input" / "data.csv").read_text()
  predicted = example_gen_splits(prepared, {"train": 8, "eval": 1, "test": 1}, id_key, text)
  for split, split_patients in patients.items():
    assert set(prepared[id_key][predicted == split]) == set(split_patients), split
  # As the pre-flight check calls it: the id column rendered alone.
  assert predicted.equals(example_gen_splits(prepared, {"train": 8, "eval": 1, "test": 1},
                                             id_key))


@pytest.mark.parametrize("run_fixture,data_fixture", [("small_trial_run", "small_trial_dir"),
                                                      ("icu_run", "odd_icu_dir")])
def test_the_federated_child_reads_from_the_prepared_input_what_the_examples_hold(
    run_fixture, data_fixture, request):
  """federated/site_data.py: load_prepared, which lets the child start before ExampleGen,
  gives the very arrays that ExampleGen's examples give (the same rows, split and order),
  and the runner's fingerprint of the input is the one ExampleGen recorded on them, which
  FederatedStep checks before it adopts the child."""
  output, _ = request.getfixturevalue(run_fixture)
  spec = load_spec(request.getfixturevalue(data_fixture) / "spec.yaml")
  examples = _outputs_by_key(str(output))["CsvExampleGen.examples"]["uri"]
  from_examples = site_data.load_examples(examples, spec)
  from_prepared = site_data.load_prepared(str(output / "input" / "data.csv"), spec,
                                          {"train": 8, "eval": 1, "test": 1})
  assert from_prepared.sites == from_examples.sites and len(from_examples.sites) >= 2
  assert from_prepared.feature_names == from_examples.feature_names
  for split in site_data.SPLITS:
    for site in from_examples.sites:
      ours, theirs = from_prepared.splits[split][site], from_examples.splits[split][site]
      for field in ("x", "y", "patient"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field),
                                      err_msg=f"{split} {site} {field}")
      assert ours.num_patients == theirs.num_patients
  recorded = open_store(str(output / "metadata.sqlite")).get_artifacts_by_uri(examples)[0]
  assert input_fingerprint(str(output / "input")) == recorded.custom_properties[
      "input_fingerprint"].string_value


@pytest.mark.parametrize("run_fixture,data_fixture", [("small_trial_run", "small_trial_dir"),
                                                      ("icu_run", "odd_icu_dir")])
def test_synthetic_table_follows_the_spec_and_copies_no_real_row(run_fixture, data_fixture,
                                                                  request):
  output, _ = request.getfixturevalue(run_fixture)
  data_dir = request.getfixturevalue(data_fixture)
  synthetic = output / "release" / "synthetic" / "synthetic.csv"
  # The released table passes the same validation as real input, with nothing dropped.
  result = run_cli("validate", "--data", synthetic, "--spec", data_dir / "spec.yaml")
  assert result.returncode == 0 and "0 would be dropped" in result.stdout, result.stderr
  spec = load_spec(str(data_dir / "spec.yaml"))
  frame = pd.read_csv(synthetic, dtype={spec.label_column: str})
  # The prepared input, under the user's column names again (clinical_dp/names.py).
  real = ColumnKeys.for_spec(spec).to_user(pd.read_csv(output / "input" / "data.csv"))
  assert list(frame.columns) == spec.required_columns
  assert set(frame[spec.label_column]) <= {str(spec.label_positive), str(spec.label_negative)}
  summary = json.loads((output / "run_summary.json").read_text())
  assert len(frame) == summary["split_rows"]["train"]
  assert not set(frame[spec.id_column]) & set(real[spec.id_column].astype(str))
  assert set(frame[spec.site_column]) == {"synthetic"}
  # Label balance: a noisy count of the training labels (noise sd 20 patients).
  positive = (frame[spec.label_column] == str(spec.label_positive)).mean()
  assert abs(positive - real[spec.label_column].mean()) < 0.12
  features = frame[spec.feature_columns].round(4)
  assert not features.merge(real[spec.feature_columns].round(4)).shape[0], "a real row was copied"
  # The Examples artifact holds the same rows for downstream components.
  examples = _outputs_by_key(str(output))["SyntheticDataGen.synthetic_examples"]["uri"]
  assert len(_split_examples(examples, "train")) == len(frame)


def test_released_models_carry_privacy_records_within_budget(icu_run):
  output, result = icu_run
  summary = json.loads((output / "run_summary.json").read_text())
  privacy = summary["privacy"]
  federated = {f"federated/{m}" for m in os.listdir(output / "federated" / "models")}
  assert set(privacy["artifacts"]) == {*TRAINED_RELEASES, "synthetic"} | federated
  for key in (*TRAINED_RELEASES, "synthetic"):
    record = json.loads((output / "release" / key / "privacy_record.json").read_text())
    assert 0 < record["epsilon"] <= record["target_epsilon"] == 1.0
    # Patients with several rows: Poisson sampling and the patient-level group bound.
    assert record["delta"] == 1e-5 and record["sampling"] == "poisson"
    assert record["max_rows_per_patient"] > 1 and record["unit"] == "patient"
    assert record["selection"].startswith("none")
  generator = json.loads((output / "release/generator/privacy_record.json").read_text())
  assert generator["label_count_noise_multiplier"] > 0 and 0 < generator["positive_rate"] < 1
  # The copula's marginals, correlation (issue 13) and binning scales (issue 24) are
  # charged with the DP steps.
  assert len(generator["released_noise_multipliers"]) == 3
  # Released together: every trained artifact is accounted for one patient added or
  # removed (dp_fedavg too, with its site's update moving by 2 clips), so all add up
  # (basic composition); the synthetic table is post-processing of the generator.
  together = privacy["all_released_together"]
  trained = [k for k in privacy["artifacts"] if k != "synthetic"]
  assert together["relation"] == "one patient added or removed"
  assert sorted(together["artifacts"]) == sorted(trained)
  assert "other_relations" not in together
  assert together["epsilon"] == pytest.approx(
      sum(privacy["artifacts"][k]["epsilon"] for k in trained))
  # An outside reviewer's recomputation of every released record from its own fields.
  for key, record in privacy["artifacts"].items():
    assert record["relation"] == "one patient added or removed", key
    assert privacy_recompute.recomputed_epsilon(record) <= record["epsilon"] * 1.001, key
  assert "one patient added or removed" in (output / "release" / "PRIVACY.md").read_text()
  assert "epsilon so far" in result.stdout and "steps/s" in result.stdout
  # The non-private twin exists for comparison but is not among the released models.
  twin = os.path.join(_outputs_by_key(str(output))["NonPrivateTwinTrainer.model"]["uri"],
                      "Format-Serving")
  assert os.path.isfile(os.path.join(twin, "saved_model.pb"))
  assert os.path.isfile(os.path.join(twin, "NOT_PRIVATE"))
  assert not os.path.exists(os.path.join(twin, "privacy_record.json"))
  assert not (output / "release" / "NonPrivateTwinTrainer").exists()


def randomness_of_every_record(release):
  """Each released privacy record's `randomness` line, and the federated ones' seeds."""
  records = [json.loads(path.read_text()) for path in release.rglob("privacy_record.json")]
  return [r["randomness"] for r in records], [r["config"]["seed"] for r in records
                                               if "config" in r]


def test_an_explicit_seed_is_named_in_every_record(small_trial_run):
  """The module's runs take --seed 0 so that their figures reproduce; the records say so,
  lest a reader take the noise for unpredictable (tests/test_pipeline_cli_runs.py: a run
  without one)."""
  output, _ = small_trial_run
  randomness, federated_seeds = randomness_of_every_record(output / "release")
  assert randomness and all(r.startswith("drawn from seed 0, given to reproduce the run")
                            for r in randomness)
  assert federated_seeds and set(federated_seeds) == {0}


def _release_files(release):
  return sorted(os.path.relpath(os.path.join(d, f), release)
                for d, _, names in os.walk(release) for f in names)


def release_holds_only_recorded_artifacts(run_dir):
  """release/ holds PRIVACY.md, privacy.json and one directory per artifact with a privacy
  record: the synthetic table, the generator, the DP classifier, the DP federated models
  chosen for release (of those federated.simulate exported into FederatedStep's output;
  PRIVACY.md names the others). Returns its files."""
  release = os.path.join(run_dir, "release")
  privacy = json.loads(open(os.path.join(release, "privacy.json")).read())
  federated = os.path.join(_outputs_by_key(run_dir)["FederatedStep.federated_results"]["uri"],
                           "models")
  trained = ({f"federated/{m}" for m in os.listdir(federated)} if os.path.isdir(federated)
             else set())
  withheld = set(privacy["not_released"])
  assert withheld <= trained
  expected = {"synthetic", *TRAINED_RELEASES} | (trained - withheld)
  assert set(privacy["artifacts"]) == expected
  files = _release_files(release)
  # GAN training checkpoints (the discriminator among them) never reach the release.
  assert not [f for f in files if os.path.basename(f) == "progress.json" or
              os.path.basename(f).startswith("ckpt-")], files
  for name in files:
    assert name in ("PRIVACY.md", "privacy.json") or any(
        name.startswith(artifact + "/") for artifact in expected), name
  for artifact in expected:
    assert os.path.isfile(os.path.join(release, artifact, "privacy_record.json")), artifact
  assert sorted(f for f in files if f.startswith("synthetic/")) == [
      "synthetic/privacy_record.json", "synthetic/synthetic.csv"]
  text = open(os.path.join(release, "PRIVACY.md"), encoding="utf-8").read()
  for artifact in expected:
    assert f"### {artifact}\n" in text, artifact
  together = privacy["all_released_together"]
  assert f"Per patient (one patient added or removed): epsilon {together['epsilon']:.3f}" in text
  for artifact in withheld:
    assert f"### {artifact}\n" not in text and artifact in privacy["federated"]
  return files


def test_release_holds_the_recorded_artifacts_and_no_real_patient(icu_run, odd_icu_dir):
  """No file of release/ holds a real patient id (text files and SavedModel bytes
  alike), and no synthetic row equals a real one."""
  output, result = icu_run
  files = release_holds_only_recorded_artifacts(str(output))
  assert any(f.startswith("federated/") for f in files)  # the icu table has four sites
  spec = load_spec(str(odd_icu_dir / "spec.yaml"))
  real = pd.read_csv(odd_icu_dir / "data.csv", dtype={spec.id_column: str})
  ids = set(real[spec.id_column])
  assert all(len(i) >= 6 for i in ids)  # long enough that a hit is not a coincidence
  id_pattern = re.compile(rb"P\d{6}")  # the simulator's ids (clinical_dp/simulators/icu.py)
  assert {i.encode() for i in ids} >= set(id_pattern.findall(
      (odd_icu_dir / "data.csv").read_bytes()))
  for name in files:
    content = (output / "release" / name).read_bytes()
    leaked = {m.decode() for m in id_pattern.findall(content)} & ids
    assert not leaked, f"release/{name} holds real patient ids {sorted(leaked)[:3]}"
  synthetic = pd.read_csv(output / "release" / "synthetic" / "synthetic.csv",
                          dtype={spec.id_column: str, spec.label_column: str})
  columns = spec.feature_columns + [spec.label_column]
  rows = real[columns].astype({spec.label_column: str}).round(4)
  assert not synthetic[columns].round(4).merge(rows).shape[0], "a real row is in release/"
  # The console and the summary end by pointing at release/.
  assert result.stdout.rstrip().splitlines()[-1].startswith(
      f"  share     {output / 'release'}: only this folder may be shared")
  summary = json.loads((output / "run_summary.json").read_text())
  assert list(summary)[-1] == "share" and summary["share"]["release"] == str(output / "release")


def test_public_report_is_made_from_the_release_alone(icu_run):
  """`clinical-dp report --public`: the synthetic table's own statistics and the privacy
  records of release/; no real patient id, and the release's guarantees as written."""
  output, _ = icu_run
  result = run_cli("report", "--public", output, "--out", output.parent / "public",
                   timeout=300)
  assert result.returncode == 0, result.stderr
  report = json.loads((output.parent / "public" / "report.json").read_text())
  privacy = json.loads((output / "release" / "privacy.json").read_text())
  assert report["privacy"] == privacy
  synthetic = pd.read_csv(output / "release" / "synthetic" / "synthetic.csv")
  assert report["synthetic_patients"] == len(synthetic)
  page = (output.parent / "public" / "report.html").read_text(encoding="utf-8")
  assert page.index("May be published.") < page.index("<h1>")
  assert not re.search(r"P\d{6}", page + json.dumps(report))  # real ids look like P000123


REPORT_FIELDS = (["privacy.epsilon", "privacy.delta", "privacy.unit",
                  "utility.shuffled_label_control.auroc", "fidelity.correlation_spearman",
                  "attack.membership_auroc", "attack.attacks_compared",
                  "attack.positive_control_auroc",
                  "disclosure.dcr_ratio", "disclosure.exact_copies",
                  # the icu spec models its missing labs (issue 24)
                  "missingness.max_rate_error", "missingness.co_missingness_error",
                  "missingness.pattern_tvd", "utility.complete_case_real.rows_kept",
                  "utility.missing_value_rule"]
                 + [f"utility.{source}.{model}.auroc" for source in ("real", "synthetic")
                    for model in ("lr", "rf", "svm", "knn")])


def _field(report, dotted):
  value = report
  for key in dotted.split("."):
    value = value[key]
  return value


def test_the_report_adopts_the_references_it_would_have_computed(icu_run, odd_icu_dir):
  """components/report_references.py: the real table's models and the DP baselines,
  computed beside the chain and adopted by the report, are what the report computes
  itself from the same examples, configuration, budget and table size."""
  from components import evaluation_report  # pylint: disable=g-import-not-at-top
  from tfx.utils import path_utils  # pylint: disable=g-import-not-at-top
  from trainers import dp_training  # pylint: disable=g-import-not-at-top
  output, result = icu_run
  at = result.stdout.index
  started = at("EvaluationReport's references: started beside the chain, now that "
               "ExampleGen's examples are written")
  assert at("  CsvExampleGen done in") < started < at("  StatisticsGen ...")
  assert at("  EvaluationReport ...") < at(
      "EvaluationReport: its references started beside the chain")
  report = json.loads((output / "report" / "report.json").read_text())
  assert "utility models, DP Gaussian copula (beside the chain)" in report["step_seconds"]
  store = open_store(str(output / "metadata.sqlite"))
  config_json, = [e.custom_properties["report_config"].string_value
                  for e in store.get_executions() if "report_config" in e.custom_properties]
  outputs = _outputs_by_key(str(output))
  spec = load_spec(odd_icu_dir / "spec.yaml")
  generator = dp_training.read_privacy_record(
      path_utils.serving_model_path(outputs["GanTrainer.model"]["uri"]))
  synthetic = pd.read_csv(os.path.join(outputs["SyntheticDataGen.synthetic_examples"]["uri"],
                                       "synthetic.csv"))
  here = evaluation_report.compute_references(
      evaluation_report.RealSplits.read(outputs["CsvExampleGen.examples"]["uri"], spec), spec,
      evaluation_report.ReportConfig.from_json(config_json),
      evaluation_report.baseline_budget(generator), len(synthetic), log=lambda line: None)
  as_written = lambda value: json.loads(json.dumps(json_safe(value)))
  # Equal but for the last bits of a float sum (NumPy's SIMD sums follow the arrays'
  # alignment in memory, which differs from process to process).
  _assert_nested_close(as_written(here.real_utility), report["utility"]["real"])
  _assert_nested_close(as_written(here.baselines), report["baselines"])


def _assert_nested_close(ours, theirs, where="", rel=1e-9):
  if isinstance(ours, dict) and isinstance(theirs, dict):
    assert sorted(ours) == sorted(theirs), where
    for key in ours:
      _assert_nested_close(ours[key], theirs[key], f"{where}/{key}", rel)
  elif isinstance(ours, list) and isinstance(theirs, list):
    assert len(ours) == len(theirs), where
    for i, (a, b) in enumerate(zip(ours, theirs)):
      _assert_nested_close(a, b, f"{where}[{i}]", rel)
  elif isinstance(ours, float) and isinstance(theirs, float):
    assert ours == pytest.approx(theirs, rel=rel, abs=1e-12), where
  else:
    assert ours == theirs, where


def test_report_has_every_documented_field_and_run_prints_its_headline(icu_run):
  output, result = icu_run
  report = json.loads((output / "report" / "report.json").read_text())
  for field in REPORT_FIELDS:
    assert _field(report, field) is not None, field
  # Readmissions: patients and their rows are counted apart.
  assert re.match(r"Real data, split by patient: \d+ patients \(\d+ rows\) for training",
                  report["data_note"])
  for model in ("lr", "rf", "svm", "knn"):
    assert 0.0 <= report["utility"]["synthetic"][model]["auroc"] <= 1.0
    assert report["utility"]["real"][model]["auroc"] > 0.65, model  # real data is learnable
  assert abs(report["utility"]["shuffled_label_control"]["auroc"] - 0.5) < 0.15
  assert report["privacy"]["epsilon"] <= 1.0 and report["privacy"]["delta"] == 1e-5
  assert report["privacy"]["unit"].startswith("patient")
  assert report["disclosure"]["exact_copies"] == 0
  # The DP baselines beside the released table, scored by the same code (issue 13).
  for name, statistics in (("copula", ["marginals", "correlation"]),
                           ("marginals", ["marginals"])):
    baseline = report["baselines"][name]
    assert baseline["released"] is False
    assert baseline["privacy"]["epsilon"] <= 1.0 and baseline["privacy"]["delta"] == 1e-5
    assert baseline["privacy"]["statistics"] == statistics
    assert set(baseline["utility"]) == set(report["utility"]) - {
        "dp_models", "complete_case_real", "missing_value_rule"}
    assert set(baseline["fidelity"]) == set(report["fidelity"])
  # Positive control: the copula keeps correlation structure that independent columns lose.
  assert (report["baselines"]["copula"]["fidelity"]["correlation_spearman"]
          > report["baselines"]["marginals"]["fidelity"]["correlation_spearman"])
  assert report["headline"]["baselines"]["status"] in ("beats baselines", "behind a baseline",
                                                       "level with a baseline")
  # The AUROC ratios are compared over paired draws: the same test resamples for each table.
  # (a baseline on this tiny table can sample one label class only: it has no draws then)
  draws = lambda use: use["synthetic"]["lr"].get("auroc_bootstrap")
  paired = [name for name in ("copula", "marginals")
            if draws(report["baselines"][name]["utility"])]
  assert paired, report["baselines"]["copula"]["utility"]["synthetic"]["lr"]
  for name in paired:
    assert len(draws(report["utility"])) == len(draws(report["baselines"][name]["utility"]))
    assert report["headline"]["baselines"]["comparisons"][name]["difference_ci"]
  assert set(report["fidelity"]["saturation"]) >= {"max_synthetic", "max_real", "columns"}
  assert report["fidelity"]["trajectory_error"] is not None
  summary = json.loads((output / "run_summary.json").read_text())
  html_path = summary["report"]["html"]
  assert html_path == str(output / "report" / "report.html")
  assert f"report    {html_path}" in result.stdout
  assert "strongest membership attack AUROC" in result.stdout
  assert "federated" in summary["results"]
  # Each sub-step of the report says its seconds on the console and keeps them; those of
  # the references computed beside the chain are marked so (components/report_references.py).
  steps = report["step_seconds"]
  for step in ("utility models, real training table", "utility models, released table",
               "shuffled-label control, released table", "fidelity, released table",
               "utility models, DP Gaussian copula", "attacks, dp_classifier", "figures"):
    assert steps.get(step, steps.get(f"{step} (beside the chain)", -1)) >= 0, step
    assert re.search(rf"  EvaluationReport: {re.escape(step)}: \d+ s\n", result.stdout), step


class _Page(HTMLParser):
  def __init__(self):
    super().__init__()
    self.tags, self.images, self.links, self.text = [], [], [], []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    self.tags.append(tag)
    if tag == "img":
      self.images.append(attrs.get("src", ""))
    self.links += [v for k, v in attrs.items() if k in ("href", "src") and v and tag != "img"]

  def handle_data(self, data):
    self.text.append(data)


def test_report_html_is_self_contained_with_the_headline_first(icu_run):
  output, _ = icu_run
  page = _Page()
  page.feed((output / "report" / "report.html").read_text())
  assert not {"script", "link", "iframe"} & set(page.tags) and not page.links
  assert len(page.images) >= 3  # utility, correlation, attacks; trajectories need series
  for src in page.images:
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
  text = " ".join(page.text)
  # The first words: not for release, computed from the real patients, data owner only.
  assert page.tags[:5] == ["html", "head", "meta", "title", "style"] and page.tags[5:8] == [
      "body", "p", "strong"]
  first = text.split("Synthetic data and DP models for")[0]
  for words in ("Not for release.", "computed from the real patients",
                "not differentially private", "for the data owner only", "release/"):
    assert words in first, words
  report = json.loads((output / "report" / "report.json").read_text())
  assert list(report)[0] == "not_for_release"
  assert report["not_for_release"].startswith("Not for release.")
  order = [text.index(heading) for heading in (
      "Is the synthetic data useful?", "How private is it?", "Utility: train on synthetic",
      "Fidelity: do synthetic", "Privacy audit", "Synthetic-record disclosure",
      "Federated learning", "Full privacy record")]
  assert order == sorted(order)


def test_evaluator_scores_the_dp_classifier_and_its_twin_by_slice(icu_run, odd_icu_dir):
  output, _ = icu_run
  site = load_spec(str(odd_icu_dir / "spec.yaml")).site_column
  report = json.loads((output / "report" / "report.json").read_text())
  models = report["utility"]["dp_models"]
  assert set(models) == {"DP classifier", "non-private twin"}
  summary = json.loads((output / "run_summary.json").read_text())
  for result in models.values():
    slices = result["slices"]
    assert slices["overall"]["examples"] == summary["split_rows"]["test"]
    assert {"sex=F", "sex=M"} <= set(slices) and any(k.startswith(f"{site}=") for k in slices)
    assert sum(v["examples"] for k, v in slices.items() if k.startswith("sex=")) == \
        slices["overall"]["examples"]
    assert 0.5 < slices["overall"]["auroc"] <= 1.0


# Issue 12's table of real-shaped inputs that once failed mid-pipeline, one test each.

def test_row1_python_keywords_and_builtins_as_column_names(icu_run, odd_icu_dir):
  """`lambda`, `class`, `type`, `id`: the DP classifier's signatures take them under safe
  keys, documented beside the model, and serve the held-out patients."""
  output, _ = icu_run
  spec = load_spec(str(odd_icu_dir / "spec.yaml"))
  keys = ColumnKeys.for_spec(spec)
  outputs = _outputs_by_key(str(output))
  assert all(o["execution_state"] == "COMPLETE" for o in outputs.values())
  documented = json.loads((output / "release" / "dp_classifier" / SIGNATURE_INPUTS_FILE)
                          .read_text())["predict_features"]
  assert documented == {c: keys.key(c) for c in spec.feature_columns}
  assert {"lambda", "class", "type"} <= set(documented) and documented["lambda"] != "lambda"
  model = tf.saved_model.load(str(output / "release" / "dp_classifier"))
  examples = _split_examples(outputs["CsvExampleGen.examples"]["uri"], "test")
  probability = model.signatures["serving_default"](
      examples=tf.constant([e.SerializeToString() for e in examples]))["probability"]
  assert probability.shape == (len(examples), 1)


def test_row2_string_label_classes_with_a_site_column(small_trial_run, small_trial_dir):
  """Arms named `A` / `P` through every component: the federated step (two centres) and
  TFMA's Evaluator (with the twin) run, and synthetic.csv names the arms as the input."""
  output, _ = small_trial_run
  spec = load_spec(str(small_trial_dir / "spec.yaml"))
  assert (spec.label_positive, spec.label_negative) == ("A", "P")
  outputs = _outputs_by_key(str(output))
  assert {"FederatedStep", "Evaluator", "NonPrivateTwinTrainer"} <= {
      key.split(".")[0] for key in outputs}
  assert all(o["execution_state"] == "COMPLETE" for o in outputs.values())
  federated = json.loads((output / "federated" / "federated.json").read_text())
  assert len(federated["sites"]) == 2
  synthetic = pd.read_csv(output / "release" / "synthetic" / "synthetic.csv", dtype=str)
  assert set(synthetic["treat"]) <= {"A", "P"} and len(set(synthetic["treat"])) == 2
  report = json.loads((output / "report" / "report.json").read_text())
  slices = report["utility"]["dp_models"]["DP classifier"]["slices"]
  assert any(name.startswith("centre=") for name in slices)
  assert set(report["fidelity"]["label_rate"]) == {"real", "synthetic"}


def test_row3_a_small_trial_trains_with_batches_fitted_to_it(small_trial_run):
  """100 patients, every one kept (its spec models the visits missed after dropout): each
  DP trainer's batch is at most its training rows and the privacy record follows the
  batch that ran."""
  output, result = small_trial_run
  summary = json.loads((output / "run_summary.json").read_text())
  train_rows = summary["split_rows"]["train"]
  assert summary["input"]["patients_used"] == 100 and train_rows < 100
  for artifact in TRAINED_RELEASES:
    record = json.loads((output / "release" / artifact / "privacy_record.json").read_text())
    assert record["batch_size"] <= record["num_examples"] == train_rows
    assert record["epsilon"] <= 1.0
  assert "training with batch" in result.stdout


def test_row4_renamed_columns_come_back_unchanged_in_every_output(icu_run, odd_icu_dir):
  """`heart rate (bpm)`, `Température`, `2nd-score.v1`: the federated models' raw-column
  signature, the report and synthetic.csv speak the user's names."""
  output, _ = icu_run
  spec = load_spec(str(odd_icu_dir / "spec.yaml"))
  keys = ColumnKeys.for_spec(spec)
  renamed = ["heart rate (bpm)", "Température", "2nd-score.v1"]
  for model in (output / "federated" / "models").iterdir():
    documented = json.loads((model / SIGNATURE_INPUTS_FILE).read_text())["predict_raw"]
    assert documented == {c: keys.key(c) for c in spec.feature_columns}
    signature = tf.saved_model.load(str(model)).signatures["predict_raw"]
    assert set(signature.structured_input_signature[1]) == set(documented.values())
  report = json.loads((output / "report" / "report.json").read_text())
  assert set(renamed) <= set(report["fidelity"]["marginals"])
  assert set(renamed) <= set(pd.read_csv(output / "release" / "synthetic" /
                                         "synthetic.csv").columns)
  assert "Température" in (output / "report" / "report.html").read_text(encoding="utf-8")
