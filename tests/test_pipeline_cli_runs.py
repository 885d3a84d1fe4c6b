"""The same pipeline through the TFX CLI, and runs that must stop early: data anomalies
before Transform, a plan over budget before anything is written, a failing component
named in one line. tests/test_pipeline_e2e.py holds the `clinical-dp run` runs; the two
modules run side by side under pytest-xdist."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from clinical_dp.simulators import simulate
from clinical_dp.validation import validate_table, write_prepared_input
from components.anomaly_gate import DataAnomaliesError
from pipelines.config import build_config
from pipelines.metadata import read_outputs
from tests import privacy_recompute
from tests.conftest import PROJECT_ROOT, run_cli
from tests.test_pipeline_e2e import (COMPONENTS, _bytes, _outputs_by_key, _split_examples,
                                     randomness_of_every_record,
                                     release_holds_only_recorded_artifacts)


@pytest.fixture(scope="module")
def tfx_cli_run(sprint_dir, tmp_path_factory):
  """`tfx pipeline create` and `tfx run create` on the SPRINT-like table (--fast)."""
  tmp_path = tmp_path_factory.mktemp("tfx_cli")
  env = dict(os.environ, LOCAL_HOME=str(tmp_path / "tfx_home"),
             CLINICAL_DP_DATA=str(sprint_dir / "data.csv"),
             CLINICAL_DP_SPEC=str(sprint_dir / "spec.yaml"),
             CLINICAL_DP_OUTPUT=str(tmp_path / "run"), CLINICAL_DP_FAST="1")
  tfx_cli = os.path.join(os.path.dirname(sys.executable), "tfx")
  for args in (["pipeline", "create", "--engine=local",
                "--pipeline_path=pipelines/local_runner.py"],
               ["run", "create", "--engine=local", "--pipeline_name=clinical-dp"]):
    result = subprocess.run([tfx_cli, *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return tmp_path


def test_tfx_cli_runs_the_same_pipeline(tfx_cli_run):
  assert os.path.isdir(tfx_cli_run / "tfx_home" / "clinical-dp")
  outputs = _outputs_by_key(str(tfx_cli_run / "run"))
  assert {key.split(".")[0] for key in outputs} == COMPONENTS
  assert all(o["execution_state"] == "COMPLETE" for o in outputs.values())


def test_tfx_cli_run_writes_the_release(tfx_cli_run, sprint_dir):
  """ReleasePusher runs under the TFX CLI too: release/ in the run directory, with the
  artifacts that carry privacy records and nothing of the real patients' ids."""
  run_dir = tfx_cli_run / "run"
  files = release_holds_only_recorded_artifacts(str(run_dir))
  # The table has five sites; all DP algorithms train, the default releases Dopamine's.
  assert {f.split("/")[1] for f in files if f.startswith("federated/")} == {"dopamine"}
  privacy = json.loads((run_dir / "release" / "privacy.json").read_text())
  # An outside reviewer's recomputation of every released record from its own fields
  # (tests/privacy_recompute.py) is never above the stated epsilon.
  for key, record in privacy["artifacts"].items():
    assert record["relation"] == "one patient added or removed", key
    assert privacy_recompute.recomputed_epsilon(record) <= record["epsilon"] * 1.001, key
  assert privacy["not_released"] == [
      "federated/central_dp", "federated/cyclical", "federated/dp_fedavg", "federated/local_dp"]
  # The simulator's ids (clinical_dp/simulators/sprint.py).
  ids = set(re.findall(rb"S\d{5}", (sprint_dir / "data.csv").read_bytes()))
  assert len(ids) > 1000
  for name in files:
    leaked = set(re.findall(rb"S\d{5}", (run_dir / "release" / name).read_bytes())) & ids
    assert not leaked, f"release/{name} holds real patient ids {sorted(leaked)[:3]}"


def test_without_a_seed_the_noise_comes_from_secret_seeds_released_nowhere(tfx_cli_run):
  """A run given no seed (as every real one): each trainer draws a secret seed, every
  record says so, the federated records' seed is null, and the seed the GAN kept for a
  resume stays beside its checkpoints, outside release/."""
  run_dir = tfx_cli_run / "run"
  randomness, federated_seeds = randomness_of_every_record(run_dir / "release")
  assert federated_seeds and set(federated_seeds) == {None}
  assert len(randomness) > len(federated_seeds) and all(
      r == "drawn from a secret seed made for this run and never released" for r in randomness)
  text = (run_dir / "release" / "PRIVACY.md").read_text(encoding="utf-8")
  assert text.count("randomness (batches, noise): drawn from a secret seed") == len(randomness)
  kept = [p.relative_to(run_dir) for p in run_dir.rglob("seed.json")]
  assert kept and all(p.parts[0] == "checkpoints" for p in kept), kept


def test_transformed_examples_follow_the_spec(tfx_cli_run):
  uri = _outputs_by_key(str(tfx_cli_run / "run"))["Transform.transformed_examples"]["uri"]
  example = _split_examples(uri, "train")[0]
  features = example.features.feature
  assert len(features["sbp_xf"].float_list.value) == 12
  assert len(features["race_xf"].float_list.value) == 4
  assert sum(features["race_xf"].float_list.value) == 1.0
  assert 0.0 <= features["age_xf"].float_list.value[0] <= 1.0
  assert features["label_xf"].int64_list.value[0] in (0, 1)
  assert _bytes(example, "patient_id").startswith("S")


def test_dp_classifier_serves_raw_clinical_features(tfx_cli_run):
  """Both signatures apply the Transform graph to raw columns and agree with each other."""
  outputs = _outputs_by_key(str(tfx_cli_run / "run"))
  model = tf.saved_model.load(os.path.join(outputs["DpClassifierTrainer.model"]["uri"],
                                           "Format-Serving"))
  test_uri = outputs["CsvExampleGen.examples"]["uri"]
  examples = _split_examples(test_uri, "test")
  serialized = tf.constant([e.SerializeToString() for e in examples])
  probability = model.signatures["serving_default"](examples=serialized)["probability"].numpy()
  assert probability.shape == (len(examples), 1)
  assert ((probability > 0) & (probability < 1)).all()
  features = model.signatures["predict_features"]
  inputs = {}
  holes = 0
  for name, spec in features.structured_input_signature[1].items():
    # an absent value (a hole the spec models) is NaN in a number, "" in a text
    hole = "" if spec.dtype == tf.string else float("nan")
    values = [next((getattr(e.features.feature[name], kind).value[0]
                    for kind in ("float_list", "int64_list", "bytes_list")
                    if getattr(e.features.feature[name], kind).value), hole)
              for e in examples]
    holes += sum(v == "" or v != v for v in values)
    inputs[name] = tf.constant(values, spec.dtype)[:, None]
  assert holes  # the simulated trial's dropouts reach the model with their holes
  np.testing.assert_allclose(features(**inputs)["probability"].numpy(), probability, rtol=1e-5)


def test_anomalies_stop_the_pipeline_before_transform(tmp_path):
  """Data that bypass the CLI's checks still cannot reach Transform."""
  from tfx import v1 as tfx
  from pipelines.pipeline import create_pipeline
  frame, spec = simulate("sprint", patients=300, seed=2)
  frame.to_csv(tmp_path / "data.csv", index=False)
  table = validate_table(str(tmp_path / "data.csv"), spec).table
  table.loc[:9, "sbp_6m"] = 400.0
  table.loc[:2, "sex"] = "X"
  config = build_config(str(tmp_path / "run"))
  write_prepared_input(table, spec, config.input_dir)
  with pytest.raises(DataAnomaliesError) as error:
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, spec))
  message = str(error.value)
  assert "column 'sbp_6m'" in message and "(10 rows:" in message
  assert "column 'sex'" in message and "(3 rows:" in message
  components = {o["component"] for o in read_outputs(config.metadata_path)}
  assert "ExampleValidator" in components
  assert not {"Transform", "FederatedStep"} & components


def test_a_gate_that_fails_ends_the_federated_child_started_after_example_gen(tmp_path,
                                                                               capsys):
  """Under `clinical-dp run` the federated child starts once ExampleGen has written the
  examples, before the gate has looked at them (components/early_start.py): anomalies
  still fail the run, and the child is ended with nothing of it left."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from clinical_dp import console  # pylint: disable=g-import-not-at-top
  from components import early_start  # pylint: disable=g-import-not-at-top
  from pipelines.runner import run_local  # pylint: disable=g-import-not-at-top
  frame, spec = simulate("sprint", patients=300, seed=2)
  frame.to_csv(tmp_path / "data.csv", index=False)
  table = validate_table(str(tmp_path / "data.csv"), spec).table
  table.loc[:9, "sbp_6m"] = 400.0
  config = dataclasses.replace(build_config(str(tmp_path / "run"), fast=True, seed=1),
                               federated_beside_chain=True)
  write_prepared_input(table, spec, config.input_dir)
  with pytest.raises(DataAnomaliesError, match="sbp_6m"):
    with console.track_components(lambda line: None, early_start.component_finished):
      run_local(config, spec)
  started = "FederatedStep: started beside the chain, now that ExampleGen's examples are written"
  assert started in capsys.readouterr().out  # it did start: the clean-up below is tested
  assert not [name for name in os.listdir(config.output_dir) if name.startswith(".federated")]
  assert not early_start._children  # pylint: disable=protected-access
  components = {o["component"] for o in read_outputs(config.metadata_path)}
  assert not {"Transform", "FederatedStep"} & components


def test_a_plan_over_budget_is_refused_before_the_pipeline_starts(sprint_dir, tmp_path):
  output = tmp_path / "run"
  result = run_cli("run", "--data", sprint_dir / "data.csv", "--spec", sprint_dir / "spec.yaml",
                   "--output", output, "--fast", "--mode", "paper", "--target-epsilon", "0.5")
  assert result.returncode == 2  # a plan over its budget, as docs/privacy.md says
  assert "over the budget of 0.5" in result.stderr and "raise noise_multiplier" in result.stderr
  assert "Traceback" not in result.stderr + result.stdout
  assert not output.exists()  # refused before anything was written


def test_a_failing_component_is_named_in_one_line_with_its_log(sprint_dir, tmp_path):
  output = tmp_path / "run"
  result = run_cli("run", "--data", sprint_dir / "data.csv", "--spec", sprint_dir / "spec.yaml",
                   "--output", output, "--fast", "--beam-arg=--runner=NoSuchRunner")
  assert result.returncode == 1
  # One line, with the component, the cause and the log; the traceback is in the log.
  log = output / "logs" / "pipeline.log"
  [line] = result.stderr.splitlines()
  assert line.startswith("clinical-dp run: failed in CsvExampleGen: ")
  assert "NoSuchRunner" in line and line.endswith(f"; full log: {log}")
  assert "Traceback" not in result.stdout and "Traceback" in log.read_text()
  assert (output / "FAILED").read_text().strip() == line[len("clinical-dp run: "):]
  assert not (output / "run_summary.json").exists() and not (output / "RUNNING").exists()


def test_federated_workers_flag_reaches_the_federated_step(sprint_dir, tmp_path):
  """`run --federated-workers 2` starts the federated step's rounds on two TFF workers
  (federated.simulate --workers 2); by default they run in one TFF process."""
  import argparse  # pylint: disable=g-import-not-at-top
  from cli import run as run_command  # pylint: disable=g-import-not-at-top
  from clinical_dp.spec import load_spec  # pylint: disable=g-import-not-at-top
  from pipelines.pipeline import create_components  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser()
  run_command.add_run_parser(parser.add_subparsers(dest="command"))
  spec = load_spec(os.path.join(sprint_dir, "spec.yaml"))

  def federated_args(*flags):
    args = parser.parse_args(["run", "--data", "d.csv", "--spec", "s.yaml", "--output",
                              str(tmp_path), *flags])
    [step] = [c for c in create_components(run_command.pipeline_config(args), spec)
              if "federated_results" in c.outputs]
    return json.loads(step.exec_properties["federated_args"])

  with_workers = federated_args("--federated-workers", "2")
  assert with_workers[with_workers.index("--workers") + 1] == "2"
  assert "--workers" not in federated_args()
