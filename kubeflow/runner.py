"""Compiles the pipeline for Kubeflow Pipelines 2.x with KubeflowV2DagRunner.

The components are those of the local pipeline (pipelines.pipeline.create_components);
what differs on Kubeflow is attached here only: the data root as a pipeline parameter,
GPU requests on the training steps, the Kubernetes platform spec that puts them on GPU
nodes, the federated step as a container in the federated image, and no ML Metadata
connection (Kubeflow brings its own).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
from typing import Dict, List

import yaml

from clinical_dp.spec import DatasetSpec
from kubeflow.config import GpuConfig, KubeflowConfig
from kubeflow.federated_container import RESULTS_KEY, federated_step_builder

DATA_ROOT_PARAMETER = "data_root"
PLATFORM = "kubernetes"


@dataclasses.dataclass
class CompileResult:
  output: str
  components: List[str]
  gpu_steps: List[str]
  images: Dict[str, str]  # component id -> image


def kubeflow_pipeline_config(config: KubeflowConfig, training=None, federated: bool = True):
  """The local pipeline's configuration with Kubeflow's data root and Beam runner;
  `training` (a pipelines.config.TrainingConfig) defaults to the local default, and
  federated=False leaves the federated step out."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipelines.config import BeamConfig, build_config  # pylint: disable=g-import-not-at-top
  # A runtime parameter, so one compiled pipeline runs on any table; CsvExampleGen's
  # driver resolves it when the run starts.
  data_root = tfx.dsl.experimental.RuntimeParameter(
      name=DATA_ROOT_PARAMETER, ptype=str, default=config.data_root)
  pipeline_config = build_config(config.pipeline_root or "", input_dir=data_root,
                                 pipeline_name=config.pipeline_name, training=training,
                                 federated=federated,
                                 beam=BeamConfig(extra_args=config.beam_extra_args()),
                                 release_uri=config.release_destination,
                                 release_federated=config.release_federated,
                                 checkpoints_by_fingerprint=True,
                                 federated_workers=config.workers_config)
  return pipeline_config


def kubeflow_components(config: KubeflowConfig, spec: DatasetSpec, pipeline_config) -> List:
  """create_components of the local pipeline, with the federated step as a container."""
  from pipelines.pipeline import create_components  # pylint: disable=g-import-not-at-top
  kwargs = {}
  if (getattr(pipeline_config, "federated", None) is not None
      and "federated_step" in inspect.signature(create_components).parameters):
    kwargs["federated_step"] = federated_step_builder(config.federated_image)
  return create_components(pipeline_config, spec, **kwargs)


def is_federated_step(component) -> bool:
  return RESULTS_KEY in component.outputs


def gpu_steps(components) -> List:
  """The training steps: every Trainer (GAN, DP classifier, non-private twin) and the
  federated step; the data and evaluation steps stay on CPU nodes."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  return [c for c in components
          if isinstance(c, tfx.components.Trainer) or is_federated_step(c)]


def attach_gpus(components, gpu: GpuConfig) -> None:
  """Requests the accelerator on the training steps (a ResourceSpec, which
  KubeflowV2DagRunner copies into the container's resources)."""
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  if not gpu.enabled:
    return
  resource = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
  for step in gpu_steps(components):
    step.with_platform_config(resource(
        accelerator=resource.AcceleratorConfig(type=gpu.type, count=gpu.count)))


def _check_no_module_files(components) -> None:
  """A module_file would be packaged as a wheel into <pipeline_root>/_wheels while
  compiling, and its local path baked in; the images install the project, so
  components name their functions by module path instead (then compiling writes nothing)."""
  for component in components:
    if getattr(component, "exec_properties", {}).get("module_file"):
      raise ValueError(f"component {component.id} has a module_file; on Kubeflow name the "
                       "functions by module path (run_fn=..., preprocessing_fn=...), since "
                       "the images install the project")


def _check_artifact_types(components) -> None:
  """KubeflowV2DagRunner names each artifact type by a schema title, which for a custom
  type must be `namespace.Name`; say which component and output break the rule."""
  from tfx.orchestration.kubeflow.v2 import compiler_utils  # pylint: disable=g-import-not-at-top
  for component in components:
    for key, channel in component.outputs.items():
      try:
        compiler_utils.get_artifact_schema(channel.type)
      except ValueError as e:
        name = channel.type.TYPE_NAME
        raise ValueError(
            f"component {component.id}: output '{key}' has the artifact type {name!r}, which "
            f"Kubeflow cannot compile ({e}); custom types need a name like "
            f"'clinical_dp.{name.rsplit('.', 1)[-1]}'") from e


def executor_labels(pipeline_spec: Dict) -> Dict[str, str]:
  """Component id -> executor label, read from the compiled spec."""
  return {task_id: pipeline_spec["components"][task["componentRef"]["name"]]["executorLabel"]
          for task_id, task in pipeline_spec["root"]["dag"]["tasks"].items()}


def platform_spec(executors: List[str], gpu: GpuConfig) -> Dict:
  """The Kubernetes platform spec (kfp-kubernetes' KubernetesExecutorConfig per executor):
  node selector and tolerations that put the GPU steps on GPU nodes."""
  config = {}
  if gpu.node_selector:
    config["nodeSelector"] = {"labels": dict(gpu.node_selector)}
  if gpu.tolerations:
    config["tolerations"] = [t.to_dict() for t in gpu.tolerations]
  return {"platforms": {PLATFORM: {"deploymentSpec": {
      "executors": {executor: copy.deepcopy(config) for executor in executors}}}}}


def _check_spec_documents(pipeline_spec: Dict, platform: Dict) -> None:
  """Both documents parse as the KFP protos they claim to be."""
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from kfp.pipeline_spec import pipeline_spec_pb2  # pylint: disable=g-import-not-at-top
  json_format.ParseDict(pipeline_spec, pipeline_spec_pb2.PipelineSpec())
  json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())


def write_spec(path: str, pipeline_spec: Dict, platform: Dict, header: str) -> None:
  """YAML as the KFP 2.x SDK writes it: the pipeline spec, then the platform spec as a
  second document when there is one."""
  documents = [pipeline_spec] + ([platform] if platform["platforms"][PLATFORM][
      "deploymentSpec"]["executors"] else [])
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  temporary = path + ".partial"
  with open(temporary, "w", encoding="utf-8") as f:
    f.write(header)
    yaml.safe_dump_all(documents, f, sort_keys=True)
  os.replace(temporary, path)


def create_kubeflow_pipeline(config: KubeflowConfig, spec: DatasetSpec, training=None,
                             federated: bool = True):
  """The local pipeline's components as a Kubeflow pipeline: no metadata connection
  (Kubeflow brings its own), GPUs on the training steps."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  pipeline_config = kubeflow_pipeline_config(config, training, federated)
  components = kubeflow_components(config, spec, pipeline_config)
  _check_no_module_files(components)
  _check_artifact_types(components)
  attach_gpus(components, config.gpu)
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root or "",
      components=components, enable_cache=pipeline_config.enable_cache,
      beam_pipeline_args=pipeline_config.beam.pipeline_args())


def compile_pipeline(config: KubeflowConfig, spec: DatasetSpec, output: str,
                     training=None, federated: bool = True) -> CompileResult:
  """Compiles the pipeline into `output` (YAML); writes nothing else."""
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # pylint: disable=g-import-not-at-top
  pipeline = create_kubeflow_pipeline(config, spec, training, federated)
  gpu_ids = [c.id for c in pipeline.components
             if getattr(c, "platform_config", None) is not None]
  runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
          default_image=config.pipeline_image, use_pipeline_spec_2_1=True))
  job = runner.run(pipeline, write_out=False)
  pipeline_spec = job["pipelineSpec"]
  # KFP 2.x reads the root and the parameters' defaults from the pipeline spec, not from
  # TFX's runtime config (which the YAML does not carry).
  if config.pipeline_root:
    pipeline_spec["defaultPipelineRoot"] = config.pipeline_root
  if config.data_root:
    pipeline_spec["root"]["inputDefinitions"]["parameters"][DATA_ROOT_PARAMETER][
        "defaultValue"] = config.data_root
  labels = executor_labels(pipeline_spec)
  platform = platform_spec([labels[i] for i in gpu_ids], config.gpu)
  _check_spec_documents(pipeline_spec, platform)
  header = (f"# PIPELINE DEFINITION\n# Name: {config.pipeline_name}\n"
            f"# Compiled by clinical-dp kubeflow compile ({pipeline_spec['sdkVersion']}), "
            f"dataset spec '{spec.name}'\n")
  write_spec(output, pipeline_spec, platform, header)
  executors = pipeline_spec["deploymentSpec"]["executors"]
  images = {task_id: executors[label]["container"]["image"] for task_id, label in labels.items()}
  return CompileResult(output=output, components=[c.id for c in pipeline.components],
                       gpu_steps=gpu_ids, images=images)
