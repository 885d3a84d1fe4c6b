"""FederatedStep in a real pipeline (CsvExampleGen -> FederatedStep) under LocalDagRunner.

Runs in the pipeline runtime; the component launches the federated runtime as a child
in its own session. Checks the results artifact, that a failing child fails the
component with its last lines, and that no TFF worker_binary is left behind.
"""

import json
import os
import uuid

import pytest
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from clinical_dp.simulators import simulate, write_simulated
from components.federated_step import FederatedStep, federated_python
from federated.child_session import worker_binaries
from federated.config import FederatedConfig

pytestmark = pytest.mark.skipif(not os.path.exists(federated_python()),
                                reason="run scripts/setup.sh first (no federated runtime)")


def _pipeline(root, data_dir, spec, federated_args):
  split = example_gen_pb2.SplitConfig(splits=[
      example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=8),
      example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
      example_gen_pb2.SplitConfig.Split(name="test", hash_buckets=1)],
      partition_feature_name=spec.id_column)
  example_gen = tfx.components.CsvExampleGen(
      input_base=str(data_dir), output_config=example_gen_pb2.Output(split_config=split))
  step = FederatedStep(examples=example_gen.outputs["examples"], spec_yaml=spec.to_yaml(),
                       federated_args=json.dumps(federated_args))
  return tfx.dsl.Pipeline(
      pipeline_name="federated-step-test", pipeline_root=str(root / "pipeline"),
      components=[example_gen, step], enable_cache=True,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(root / "metadata.sqlite"))), step


def _results_uri(root):
  found = []
  for directory, _, files in os.walk(root / "pipeline" / "FederatedStep"):
    if "federated.json" in files:
      found.append(directory)
  return found


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
  root = tmp_path_factory.mktemp("federated_step")
  frame, spec = simulate("icu", patients=900, sites=3, seed=5)
  write_simulated(str(root / "data"), frame, spec)
  os.remove(root / "data" / "spec.yaml")  # CsvExampleGen reads every file under input_base
  return root, spec


def _workers_marked(marker):
  """worker_binary processes that inherited this test's environment marker."""
  found = []
  for pid in worker_binaries():
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        if f"CLINICAL_DP_TEST_MARKER={marker}".encode() in f.read().split(b"\0"):
          found.append(pid)
    except OSError:
      continue
  return found


def test_federated_step_runs_on_the_pipelines_examples(federation, monkeypatch):
  root, spec = federation
  # Children inherit the marker, so workers of this run are told apart from others'.
  marker = uuid.uuid4().hex
  monkeypatch.setenv("CLINICAL_DP_TEST_MARKER", marker)
  args = FederatedConfig.fast(algorithm="dopamine").to_args()
  pipeline, _ = _pipeline(root, root / "data", spec, args)
  tfx.orchestration.LocalDagRunner().run(pipeline)
  [uri] = _results_uri(root)
  with open(os.path.join(uri, "federated.json"), encoding="utf-8") as f:
    results = json.load(f)
  entry = results["algorithms"]["dopamine"]
  assert results["dataset"]["source"].endswith(os.path.join("CsvExampleGen", "examples",
                                                            os.path.basename(
                                                                results["dataset"]["source"])))
  assert results["sites"] == ["hospital00", "hospital01", "hospital02"]
  assert 0 < entry["epsilon"] <= 5.0 and entry["privacy_unit"] == "patient"
  assert os.path.exists(os.path.join(uri, "federated.html"))
  assert os.path.exists(os.path.join(uri, "models", "dopamine", "privacy_record.json"))
  assert not _workers_marked(marker)


def test_a_failing_child_fails_the_component_with_its_last_lines(federation):
  root, spec = federation
  args = FederatedConfig.fast(algorithm="fedavg").to_args()
  args[args.index("--rounds") + 1] = "0"
  pipeline, _ = _pipeline(root, root / "data", spec, args)
  with pytest.raises(Exception) as failure:
    tfx.orchestration.LocalDagRunner().run(pipeline)
  message = str(failure.value)
  assert "federated.simulate failed (exit status 2)" in message
  assert "rounds must be at least 1" in message
