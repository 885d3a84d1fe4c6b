"""The Kubeflow compile: `clinical-dp kubeflow compile` writes a KFP 2.x pipeline spec with
every component of the local pipeline, GPUs and GPU nodes for the training steps, the
federated step in its own image, no Resolver and no local path; the Dockerfiles install
exactly the lock files."""

import json
import os
import re
import subprocess
import sys
import tempfile
import zlib

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from federated.config import examples_source, simulate_command
from tests.conftest import PROJECT_ROOT, run_cli

EXIT_INVALID = 2
PIPELINE_IMAGE = "registry.example/clinical-dp-pipeline:test"
FEDERATED_IMAGE = "registry.example/clinical-dp-federated:test"
DATA_ROOT = "gs://clinical-dp-test/data"
PIPELINE_ROOT = "gs://clinical-dp-test/root"
GPU_TYPE = "nvidia.com/gpu"
GPU_COUNT = 2
NODE_LABEL = ("cloud.google.com/gke-accelerator", "nvidia-tesla-t4")
TOLERATION = "nvidia.com/gpu=present:NoSchedule"
KUBEFLOW = os.path.join(PROJECT_ROOT, "kubeflow")
WORKERS_MANIFEST = os.path.join(KUBEFLOW, "federated-workers.yaml")
# The addresses kubeflow/federated-workers.yaml gives its two workers in namespace kubeflow.
WORKER_ADDRESSES = [f"tff-worker-{i}.tff-workers.kubeflow.svc.cluster.local:8000"
                    for i in range(2)]


def _compile(tmp_path_factory, name, *flags):
  from cli.main import main  # pylint: disable=g-import-not-at-top
  output = tmp_path_factory.mktemp("kubeflow") / f"{name}.yaml"
  code = main(["kubeflow", "compile", "--output", str(output), *flags])
  assert code == 0
  with open(output, encoding="utf-8") as f:
    text = f.read()
  return output, text, list(yaml.safe_load_all(text))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
  """The default spec with the twin (all trainers), GPUs on a GKE-style pool."""
  return _compile(tmp_path_factory, "gpu", "--image-pipeline", PIPELINE_IMAGE,
                  "--image-federated", FEDERATED_IMAGE, "--data-root", DATA_ROOT,
                  "--pipeline-root", PIPELINE_ROOT, "--gpu-type", GPU_TYPE,
                  "--gpu-count", str(GPU_COUNT), "--gpu-node-selector", "=".join(NODE_LABEL),
                  "--gpu-toleration", TOLERATION, "--non-private-twin",
                  *[f"--federated-worker={a}" for a in WORKER_ADDRESSES],
                  "--federated-round-timeout", "120")


@pytest.fixture(scope="module")
def local_components():
  """create_components of the local pipeline for the same configuration."""
  from clinical_dp.simulators.sprint import SprintConfig, sprint_spec  # pylint: disable=g-import-not-at-top
  from kubeflow.config import KubeflowConfig  # pylint: disable=g-import-not-at-top
  from kubeflow.runner import kubeflow_pipeline_config  # pylint: disable=g-import-not-at-top
  from pipelines.config import training_config  # pylint: disable=g-import-not-at-top
  from pipelines.pipeline import create_components  # pylint: disable=g-import-not-at-top
  config = KubeflowConfig(pipeline_image=PIPELINE_IMAGE, federated_image=FEDERATED_IMAGE,
                          data_root=DATA_ROOT, pipeline_root=PIPELINE_ROOT)
  return create_components(kubeflow_pipeline_config(config, training_config(train_twin=True)),
                           sprint_spec(SprintConfig()))


def _federated_ids(components):
  return {c.id for c in components if "federated_results" in c.outputs}


def _training_ids(components):
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  return {c.id for c in components if isinstance(c, tfx.components.Trainer)}


def _executors(pipeline_spec):
  """Component id -> its executor (label, deployment) in the compiled spec."""
  tasks = pipeline_spec["root"]["dag"]["tasks"]
  labels = {t: pipeline_spec["components"][task["componentRef"]["name"]]["executorLabel"]
            for t, task in tasks.items()}
  return {t: (label, pipeline_spec["deploymentSpec"]["executors"][label])
          for t, label in labels.items()}


def test_output_is_a_kfp_pipeline_spec_with_a_platform_spec(compiled):
  output, _, documents = compiled
  assert len(documents) == 2
  pipeline_spec, platform = documents
  json_format.ParseDict(pipeline_spec, pipeline_spec_pb2.PipelineSpec())
  json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
  # The KFP SDK reads the file as a pipeline, platform spec included.
  from kfp import components  # pylint: disable=g-import-not-at-top
  loaded = components.load_component_from_file(str(output))
  assert set(loaded.pipeline_spec.root.dag.tasks) == set(pipeline_spec["root"]["dag"]["tasks"])
  assert list(loaded.platform_spec.platforms) == ["kubernetes"]
  assert list(loaded.component_spec.inputs) == ["data_root"]
  assert pipeline_spec["schemaVersion"] == "2.1.0"
  assert pipeline_spec["pipelineInfo"]["name"] == "clinical-dp"
  assert pipeline_spec["defaultPipelineRoot"] == PIPELINE_ROOT
  assert "metadata" not in yaml.safe_dump(pipeline_spec).lower().replace("podmetadata", "")
  # The data root is a pipeline parameter with the given default, read by CsvExampleGen.
  parameter = pipeline_spec["root"]["inputDefinitions"]["parameters"]["data_root"]
  assert parameter["defaultValue"] == DATA_ROOT
  example_gen = pipeline_spec["root"]["dag"]["tasks"]["CsvExampleGen"]
  assert example_gen["inputs"]["parameters"]["input_base"] == {
      "componentInputParameter": "data_root"}


def test_every_local_component_is_compiled(compiled, local_components):
  pipeline_spec = compiled[2][0]
  local_ids = {c.id for c in local_components}
  assert {"GanTrainer", "DpClassifierTrainer", "NonPrivateTwinTrainer", "SyntheticDataGen",
          "Transform", "CsvExampleGen"} <= local_ids
  assert set(pipeline_spec["root"]["dag"]["tasks"]) == local_ids


def test_release_step_writes_under_the_pipeline_root_or_the_given_uri(compiled):
  """ReleasePusher is compiled, last, with its release URI: <pipeline root>/release by
  default (tests below: --release-uri, and no root: its own output artifact)."""
  pipeline_spec = compiled[2][0]
  task = pipeline_spec["root"]["dag"]["tasks"]["ReleasePusher"]
  assert task["inputs"]["parameters"]["release_uri"] == {
      "runtimeValue": {"constant": f"{PIPELINE_ROOT}/release"}}
  # Every DP federated model is trained; Dopamine's alone is released by default.
  assert task["inputs"]["parameters"]["federated_models"] == {
      "runtimeValue": {"constant": "dopamine"}}
  assert {"SyntheticDataGen", "GanTrainer", "DpClassifierTrainer", "FederatedStep",
          "EvaluationReport"} <= set(task["dependentTasks"])
  assert "NonPrivateTwinTrainer" not in task["dependentTasks"]
  component = pipeline_spec["components"][task["componentRef"]["name"]]
  assert set(component["outputDefinitions"]["artifacts"]) == {"release"}
  assert set(component["inputDefinitions"]["artifacts"]) == {
      "synthetic_examples", "generator", "dp_classifier", "federated_results"}


def test_gan_training_checkpoints_under_the_pipeline_root(compiled):
  """A preempted or failed GanTrainer, run again, resumes from its checkpoint: they live
  outside its per-execution outputs, one directory per data and settings."""
  pipeline_spec = compiled[2][0]
  parameters = pipeline_spec["root"]["dag"]["tasks"]["GanTrainer"]["inputs"]["parameters"]
  custom_config = json.loads(parameters["custom_config"]["runtimeValue"]["constant"])
  assert custom_config["checkpoint"]["directory"] == f"{PIPELINE_ROOT}/checkpoints/gan"
  assert custom_config["checkpoint"]["by_fingerprint"] is True


def test_release_uri_defaults_under_the_pipeline_root():
  from kubeflow.config import KubeflowConfig  # pylint: disable=g-import-not-at-top
  def destination(**roots):
    return KubeflowConfig(pipeline_image=PIPELINE_IMAGE, federated_image=FEDERATED_IMAGE,
                          **roots).release_destination
  assert destination(pipeline_root=PIPELINE_ROOT) == f"{PIPELINE_ROOT}/release"
  assert destination(pipeline_root=PIPELINE_ROOT,
                     release_uri="gs://public-bucket/trial/") == "gs://public-bucket/trial"
  assert destination() == ""  # ReleasePusher's own output artifact, under the run's root


def test_training_steps_request_gpus_and_nothing_else_does(compiled, local_components):
  executors = _executors(compiled[2][0])
  training = _training_ids(local_components) | _federated_ids(local_components)
  assert {"GanTrainer", "DpClassifierTrainer", "NonPrivateTwinTrainer"} <= training
  for component_id, (_, executor) in executors.items():
    resources = executor["container"].get("resources", {})
    if component_id in training:
      assert resources["accelerator"]["type"] == GPU_TYPE, component_id
      assert int(resources["accelerator"]["count"]) == GPU_COUNT, component_id
    else:
      assert "accelerator" not in resources, component_id


def test_platform_spec_puts_training_steps_on_gpu_nodes(compiled, local_components):
  pipeline_spec, platform = compiled[2]
  executors = _executors(pipeline_spec)
  training = _training_ids(local_components) | _federated_ids(local_components)
  configs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
  assert set(configs) == {executors[c][0] for c in training}
  for config in configs.values():
    assert config["nodeSelector"] == {"labels": dict([NODE_LABEL])}
    assert config["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal",
                                      "value": "present", "effect": "NoSchedule"}]


def test_federated_step_runs_in_the_federated_image(compiled, local_components):
  executors = _executors(compiled[2][0])
  federated = _federated_ids(local_components)
  assert federated, "the default spec names a site column, so the federated step runs"
  for component_id, (_, executor) in executors.items():
    container = executor["container"]
    if component_id in federated:
      assert container["image"] == FEDERATED_IMAGE
      assert container["command"][:3] == ["python", "-m", "kubeflow.federated_launcher"]
      assert container["command"][3:] == [
          "{{$.inputs.artifacts['examples'].uri}}", "{{$.inputs.parameters['spec_yaml']}}",
          "{{$.inputs.parameters['federated_args']}}",
          "{{$.outputs.artifacts['federated_results'].uri}}"]
    else:
      assert container["image"] == PIPELINE_IMAGE, component_id


def test_federated_step_is_pointed_at_the_workers(compiled):
  """The worker flags reach federated.simulate's command line through the step's
  federated_args, after the FederatedConfig flags (which stay what is trained)."""
  tasks = compiled[2][0]["root"]["dag"]["tasks"]
  (task,) = [t for name, t in tasks.items() if name.startswith("FederatedStep")]
  args = json.loads(task["inputs"]["parameters"]["federated_args"]["runtimeValue"]["constant"])
  workers = [a for flag, a in zip(args, args[1:]) if flag == "--worker-address"]
  assert workers == WORKER_ADDRESSES
  assert args[args.index("--round-timeout") + 1] == "120.0"
  assert args.index("--algorithm") < args.index("--worker-address")


def _manifest():
  with open(WORKERS_MANIFEST, encoding="utf-8") as f:
    return {d["kind"]: d for d in yaml.safe_load_all(f)}


def test_workers_manifest_gives_each_worker_the_address_the_step_uses():
  """kubeflow/federated-workers.yaml (no cluster needed): a headless Service and a
  StatefulSet whose pods serve TFF on the port the addresses name, in the federated
  image, reachable only from pipeline pods; the README shows the same addresses."""
  manifest = _manifest()
  assert set(manifest) == {"Service", "StatefulSet", "NetworkPolicy"}
  service, workers, policy = (manifest[k] for k in ("Service", "StatefulSet", "NetworkPolicy"))
  assert service["spec"]["clusterIP"] == "None"  # one DNS name per pod
  assert workers["spec"]["serviceName"] == service["metadata"]["name"]
  pod_labels = workers["spec"]["template"]["metadata"]["labels"]
  assert service["spec"]["selector"].items() <= pod_labels.items()
  assert workers["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
  assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
  (container,) = workers["spec"]["template"]["spec"]["containers"]
  port = container["ports"][0]["containerPort"]
  assert container["command"] == ["python", "-m", "federated.workers", "--port", str(port)]
  assert container["image"].endswith("/clinical-dp-federated:TAG")
  assert service["spec"]["ports"][0]["port"] == port
  assert policy["spec"]["ingress"][0]["ports"] == [{"port": port, "protocol": "TCP"}]
  name, service_name = workers["metadata"]["name"], service["metadata"]["name"]
  addresses = [f"{name}-{i}.{service_name}.kubeflow.svc.cluster.local:{port}"
               for i in range(workers["spec"]["replicas"])]
  assert addresses == WORKER_ADDRESSES
  with open(os.path.join(KUBEFLOW, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  for address in addresses:
    assert f"--federated-worker {address}" in readme.replace("NAMESPACE", "kubeflow")
  # federated/workers.py is where the entry point and its default port live.
  from federated.workers import DEFAULT_WORKER_PORT  # pylint: disable=g-import-not-at-top
  assert port == DEFAULT_WORKER_PORT


def test_no_resolver_and_no_local_paths(compiled, local_components):
  output, text, (pipeline_spec, _) = compiled
  from tfx.dsl.components.common import resolver  # pylint: disable=g-import-not-at-top
  assert not [c for c in local_components if isinstance(c, resolver.Resolver)]
  for _, executor in _executors(pipeline_spec).values():
    assert set(executor) == {"container"}  # no resolver or importer executor
  assert "resolver" not in text.lower()
  remote = text.replace(PIPELINE_ROOT, "gs://ROOT")  # gs://.../root/... is not a home
  for local in (PROJECT_ROOT, tempfile.gettempdir() + os.sep,
                os.path.expanduser("~") + os.sep, str(output.parent), "file://"):
    assert local not in remote, local
  # Compiling wrote the spec and nothing else (no _wheels, no local pipeline root).
  assert os.listdir(output.parent) == [output.name]


def test_cpu_only_compile_with_a_distributed_beam_runner(tmp_path_factory):
  """--gpu-count 0: no accelerator and no platform spec; Dataflow runs the Beam jobs on
  workers started from the pipeline image; --no-federated leaves the federated step out."""
  _, text, documents = _compile(
      tmp_path_factory, "cpu", "--image-pipeline", PIPELINE_IMAGE, "--gpu-count", "0",
      "--beam-runner", "DataflowRunner", "--beam-arg=--project=clinical-dp-test",
      "--beam-arg=--region=europe-west4", "--no-federated")
  assert len(documents) == 1
  pipeline_spec = documents[0]
  assert "accelerator" not in text
  images = {e["container"]["image"] for _, e in _executors(pipeline_spec).values()}
  assert images == {PIPELINE_IMAGE}
  assert "defaultPipelineRoot" not in pipeline_spec
  # No root and no --release-uri: the release goes into ReleasePusher's own output artifact.
  release = pipeline_spec["root"]["dag"]["tasks"]["ReleasePusher"]["inputs"]["parameters"]
  assert release["release_uri"] == {"runtimeValue": {"constant": ""}}
  assert "defaultValue" not in pipeline_spec["root"]["inputDefinitions"]["parameters"][
      "data_root"]
  transform = _executors(pipeline_spec)["Transform"][1]["container"]["args"]
  for arg in ("--runner=DataflowRunner", f"--sdk_container_image={PIPELINE_IMAGE}",
              "--project=clinical-dp-test", "--region=europe-west4"):
    assert arg in transform


def test_module_files_are_refused(tmp_path):
  """A module_file would be packaged into <pipeline_root>/_wheels while compiling."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from kubeflow.runner import _check_no_module_files  # pylint: disable=g-import-not-at-top
  module = tmp_path / "module.py"
  module.write_text("def run_fn(fn_args):\n  pass\n")
  example_gen = tfx.components.CsvExampleGen(input_base="gs://clinical-dp-test/data")
  trainer = tfx.components.Trainer(module_file=str(module),
                                   examples=example_gen.outputs["examples"],
                                   train_args=tfx.proto.TrainArgs(num_steps=1),
                                   eval_args=tfx.proto.EvalArgs(num_steps=1))
  with pytest.raises(ValueError, match="module_file"):
    _check_no_module_files([example_gen, trainer])


def test_custom_artifact_types_need_a_namespaced_name():
  """KubeflowV2DagRunner compiles custom artifact types only as namespace.Name."""
  from tfx.types import artifact  # pylint: disable=g-import-not-at-top
  from kubeflow.federated_container import federated_container_component  # pylint: disable=g-import-not-at-top
  from kubeflow.runner import _check_artifact_types  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top

  class Flat(artifact.Artifact):
    TYPE_NAME = "FlatResults"

  class Namespaced(artifact.Artifact):
    TYPE_NAME = "clinical_dp.TestResults"

  examples = tfx.components.CsvExampleGen(input_base="gs://clinical-dp-test/data")
  def step(results_type):
    return federated_container_component(FEDERATED_IMAGE, results_type)(
        examples=examples.outputs["examples"], spec_yaml="", federated_args="[]")
  _check_artifact_types([examples, step(Namespaced)])
  with pytest.raises(ValueError, match="'clinical_dp.FlatResults'"):
    _check_artifact_types([examples, step(Flat)])


@pytest.mark.parametrize("flags, message", [
    (["--data-root", "/data/clinical"], "--data-root must be a URI the cluster can read"),
    (["--pipeline-root", "s3://bucket/root"], "--pipeline-root must be a URI"),
    (["--release-uri", "/srv/public"], "--release-uri must be a URI"),
    (["--release-federated", "fedavg"], "not one of them: fedavg"),
    (["--spec", "no/such/spec.yaml"], "spec file not found"),
    (["--gpu-count", "-1"], "--gpu-count must be 0 or more"),
    (["--gpu-node-selector", "gpu"], "--gpu-node-selector must be KEY=VALUE"),
    (["--image-pipeline", "has space"], "--image-pipeline must be an image reference"),
    (["--federated-worker", "tff-worker-0"], "--federated-worker must be HOST:PORT"),
    (["--federated-round-timeout", "-1"], "--federated-round-timeout must be 0"),
])
def test_cli_bad_input_exits_2_with_a_clear_message(tmp_path, flags, message):
  output = tmp_path / "pipeline.yaml"
  result = run_cli("kubeflow", "compile", "--output", output, *flags, timeout=120)
  assert result.returncode == EXIT_INVALID, result.stderr
  assert message in result.stderr
  assert not output.exists()


def test_cli_refuses_a_non_yaml_output(tmp_path):
  result = run_cli("kubeflow", "compile", "--output", tmp_path / "pipeline.json", timeout=120)
  assert result.returncode == EXIT_INVALID
  assert "--output must be a .yaml file" in result.stderr


def test_prepare_data_writes_the_validated_table_or_nothing(sprint_dir, tmp_path):
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from clinical_dp.spec import load_spec  # pylint: disable=g-import-not-at-top
  spec = load_spec(str(sprint_dir / "spec.yaml"))
  result = run_cli("kubeflow", "prepare-data", "--data", sprint_dir / "data.csv", "--spec",
                   sprint_dir / "spec.yaml", "--out", tmp_path / "data", timeout=120)
  assert result.returncode == 0, result.stderr
  prepared = pd.read_csv(tmp_path / "data" / "data.csv")
  raw = pd.read_csv(sprint_dir / "data.csv")
  assert list(prepared.columns) == spec.required_columns
  # the spec models missing values: every patient kept, holes left empty
  assert spec.models_missing and len(prepared) == len(raw) > 0
  assert prepared[spec.feature_columns].isna().any(axis=1).sum() == (
      raw[spec.feature_columns].isna().any(axis=1).sum()) > 0
  assert not prepared[[spec.id_column, spec.label_column]].isna().any().any()
  broken = raw.copy()
  broken.loc[0, "age"] = "sixty"
  broken.to_csv(tmp_path / "broken.csv", index=False)
  result = run_cli("kubeflow", "prepare-data", "--data", tmp_path / "broken.csv", "--spec",
                   sprint_dir / "spec.yaml", "--out", tmp_path / "broken", timeout=120)
  assert result.returncode == EXIT_INVALID
  assert "column 'age'" in result.stderr
  assert not (tmp_path / "broken").exists()


# --- images ---------------------------------------------------------------------------

def _lock(name):
  pins = {}
  with open(os.path.join(PROJECT_ROOT, "requirements", name), encoding="utf-8") as f:
    for line in f:
      match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip())
      if match:
        pins[_normalize(match.group(1))] = match.group(2)
  return pins


def _normalize(name):
  return re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name)).lower()


def _dockerfile(name):
  with open(os.path.join(KUBEFLOW, name), encoding="utf-8") as f:
    return f.read()


SETUP_SH_PINS = {_normalize(n): v for n, v in re.findall(
    r"([A-Za-z0-9_-]+)==([0-9][^\s\"']*)",
    open(os.path.join(PROJECT_ROOT, "scripts", "setup.sh"), encoding="utf-8").read())}


@pytest.mark.parametrize("dockerfile, locks", [
    ("Dockerfile.pipeline", ["pipeline.lock"]),
    ("Dockerfile.federated", ["federated.lock", "federated-overrides.txt"]),
])
def test_dockerfiles_install_the_lock_files(dockerfile, locks):
  text = _dockerfile(dockerfile)
  # Every lock file is installed as a whole, without resolution.
  for lock in locks:
    assert f"requirements/{lock}" in text
  assert "--no-deps" in text
  # Every literal pin is the lock's (or, for the installer itself, scripts/setup.sh's).
  allowed = {}
  for lock in locks:
    allowed.update(_lock(lock))
  pins = re.findall(r"([A-Za-z][A-Za-z0-9_.\-\[\]]*)==([0-9][^\s\"'\\)]*)", text)
  for name, version in pins:
    name = _normalize(name)
    expected = allowed.get(name, SETUP_SH_PINS.get(name))
    assert expected == version, f"{dockerfile}: {name}=={version}, lock says {expected}"
  # Build arguments naming a package version (BEAM_VERSION -> apache-beam) match too.
  pipeline_lock = _lock("pipeline.lock")
  for arg, version in re.findall(r"ARG (\w+)_VERSION=(\S+)", text):
    package = {"BEAM": "apache-beam"}[arg]
    assert pipeline_lock[package] == version, f"{dockerfile}: ARG {arg}_VERSION={version}"
  # The images set what the code needs before TensorFlow loads.
  if dockerfile == "Dockerfile.pipeline":
    assert re.search(r"TF_USE_LEGACY_KERAS=1", text)


@pytest.mark.parametrize("python, lock", [
    (os.path.join(PROJECT_ROOT, ".venv", "bin", "python"), "pipeline.lock"),
    (os.path.join(PROJECT_ROOT, ".venv-federated", "bin", "python"), "federated.lock"),
])
def test_cuda_wheels_follow_the_locked_tensorflow(python, lock):
  """The images add the and-cuda extra of the locked TensorFlow (each runtime's own)."""
  env = dict(os.environ, PYTHONPATH=PROJECT_ROOT)
  script = ("import importlib.metadata as m, kubeflow.cuda_requirements as c; "
            "print(m.version('tensorflow')); print('\\n'.join(c.cuda_requirements()))")
  result = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
  version, *pins = result.stdout.split()
  assert version == _lock(lock)["tensorflow"]
  assert pins and all(p.startswith("nvidia-") for p in pins), pins
  cuda = "cu12" if version.startswith("2.16") else "cu11"
  assert any(p.startswith(f"nvidia-cudnn-{cuda}==") for p in pins), pins


# The federated step's entry point, in the federated runtime, on artifacts behind a
# filesystem URI (TensorFlow's in-memory ram://, standing in for gs://).
LAUNCHER_SCRIPT = """
import json, sys
import tensorflow as tf
from kubeflow import federated_launcher
examples, spec_yaml, args = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
federated_launcher.copy_tree(examples, "ram://artifacts/examples")
code = federated_launcher.main(["ram://artifacts/examples", spec_yaml, args,
                                "ram://artifacts/results"])
files = sorted(os.path.relpath(os.path.join(d, f), "ram://artifacts/results")
               for d, _, names in tf.io.gfile.walk("ram://artifacts/results") for f in names)
results = json.loads(tf.io.gfile.GFile("ram://artifacts/results/federated.json").read())
print("LAUNCHER " + json.dumps({"code": code, "files": files,
                                "algorithms": sorted(results["algorithms"])}))
""".replace("import json, sys", "import json, os, sys")


def _write_examples(table, directory, id_column):
  """The table as ExampleGen writes it: gzipped tf.Examples under Split-<name>/."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  split_of = {0: "test", 1: "eval"}
  for split in ("train", "eval", "test"):
    os.makedirs(os.path.join(directory, f"Split-{split}"))
  writers = {split: tf.io.TFRecordWriter(
      os.path.join(directory, f"Split-{split}", "data_tfrecord-00000-of-00001.gz"),
      options="GZIP") for split in ("train", "eval", "test")}
  for _, row in table.iterrows():
    features = {}
    for column, value in row.items():
      if pd.isna(value):
        continue  # a hole: the feature is absent, as in an example without the value
      if isinstance(value, str):
        features[column] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[value.encode()]))
      else:
        features[column] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    split = split_of.get(zlib.crc32(str(row[id_column]).encode()) % 10, "train")
    writers[split].write(tf.train.Example(
        features=tf.train.Features(feature=features)).SerializeToString())
  for writer in writers.values():
    writer.close()


def test_federated_launcher_runs_the_simulation_on_remote_artifacts(tmp_path):
  """Examples staged from the artifact URI, federated.simulate run on them in a session
  of its own (no TFF worker left behind), results and DP models copied to the output
  artifact's URI."""
  from clinical_dp.simulators import simulate, write_simulated  # pylint: disable=g-import-not-at-top
  from clinical_dp.validation import validate_table  # pylint: disable=g-import-not-at-top
  from tests.federated.conftest import run_child  # pylint: disable=g-import-not-at-top
  frame, spec = simulate("sprint", patients=400, sites=3, seed=5)
  data_path, spec_path = write_simulated(str(tmp_path / "table"), frame, spec)
  table = validate_table(data_path, spec).table[spec.required_columns]
  _write_examples(table, str(tmp_path / "examples"), spec.id_column)
  args = json.dumps(["--algorithm", "dp_fedavg", "--rounds", "2"])
  completed = run_child(["-c", LAUNCHER_SCRIPT, tmp_path / "examples", spec_path, args])
  assert completed.returncode == 0, completed.output
  line = [l for l in completed.tail if l.startswith("LAUNCHER ")][-1]
  outcome = json.loads(line[len("LAUNCHER "):])
  assert outcome["code"] == 0
  assert outcome["algorithms"] == ["dp_fedavg"]
  assert "federated.json" in outcome["files"]
  assert any(f.startswith("models/dp_fedavg/") and f.endswith("saved_model.pb")
             for f in outcome["files"]), outcome["files"]


def test_federated_launcher_stages_remote_artifacts_only(tmp_path):
  """Local paths go to federated.simulate as they are; the command line is the one the
  local FederatedStep runs."""
  from kubeflow import federated_launcher  # pylint: disable=g-import-not-at-top
  assert not federated_launcher.is_remote(str(tmp_path))
  assert federated_launcher.is_remote("gs://bucket/examples")
  source = tmp_path / "examples"
  (source / "Split-train").mkdir(parents=True)
  (source / "Split-train" / "data_tfrecord-00000-of-00001.gz").write_bytes(b"rows")
  (source / "Split-test").mkdir()
  (source / "Split-test" / "data_tfrecord-00000-of-00001.gz").write_bytes(b"held out")
  target = tmp_path / "staged"
  assert federated_launcher.copy_tree(str(source), str(target)) == 2
  assert (target / "Split-test" / "data_tfrecord-00000-of-00001.gz").read_bytes() == \
      b"held out"
  # The launcher and the local FederatedStep build the command line with one function.
  command = simulate_command(sys.executable, examples_source("E"), "name: x", ["--rounds", "3"],
                             "O")
  assert command == [sys.executable, "-m", "federated.simulate", "--examples", "E",
                     "--spec-yaml", "name: x", "--rounds", "3", "--output", "O"]
  from components import federated_step  # pylint: disable=g-import-not-at-top
  assert federated_step.simulate_command is federated_launcher.simulate_command
