"""Typed configuration of the Kubeflow Pipelines compile: images, GPU nodes, Beam, roots.

Pure Python (no TFX import), so the CLI can check its arguments before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

from clinical_dp.release_layout import RELEASE_DIR
from federated.config import DEFAULT_FEDERATED_RELEASE
from federated.workers import WorkersConfig

# The images' TensorFlow reads and writes artifacts through tf.io.gfile; the locks carry
# tensorflow-io-gcs-filesystem, so Cloud Storage is the one remote filesystem they have.
SUPPORTED_SCHEMES = ("gs",)
# Beam runners that run the data components on a cluster instead of in the step's pod.
DISTRIBUTED_RUNNERS = ("DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")
DIRECT_RUNNER = "DirectRunner"
# NVIDIA's device plugin exposes GPUs as this extended resource.
NVIDIA_GPU = "nvidia.com/gpu"


class KubeflowConfigError(ValueError):
  """An argument of the Kubeflow compile is unusable."""


def check_uri(uri: str, what: str) -> str:
  """A remote URI the pods can reach; a local path would only exist on this machine."""
  scheme = urlparse(uri).scheme
  if scheme not in SUPPORTED_SCHEMES or not urlparse(uri).netloc:
    raise KubeflowConfigError(
        f"{what} must be a URI the cluster can read, one of "
        f"{', '.join(s + '://BUCKET/...' for s in SUPPORTED_SCHEMES)}; got {uri!r}")
  return uri.rstrip("/")


def project_version() -> str:
  """The installed clinical-dp version, which tags the default image references."""
  try:
    return metadata.version("clinical-dp")
  except metadata.PackageNotFoundError:
    return "latest"


@dataclasses.dataclass(frozen=True)
class Toleration:
  """A Kubernetes toleration, as kfp-kubernetes writes it."""
  key: str
  operator: str = "Exists"
  value: str = ""
  effect: str = "NoSchedule"

  def to_dict(self) -> Dict[str, str]:
    return {k: v for k, v in dataclasses.asdict(self).items() if v}

  @classmethod
  def parse(cls, text: str) -> "Toleration":
    """KEY[=VALUE][:EFFECT]; without a value the toleration matches any (Exists)."""
    key_value, _, effect = text.partition(":")
    key, has_value, value = key_value.partition("=")
    if not key:
      raise KubeflowConfigError(f"toleration must be KEY[=VALUE][:EFFECT], got {text!r}")
    return cls(key=key, operator="Equal" if has_value else "Exists", value=value,
               effect=effect or "NoSchedule")


@dataclasses.dataclass(frozen=True)
class GpuConfig:
  """What the training steps ask of the cluster.

  The default node label is the one NVIDIA's GPU Feature Discovery (GPU operator) puts on
  every GPU node; GKE labels its pools cloud.google.com/gke-accelerator=<type> instead.
  The default toleration matches the nvidia.com/gpu taint that GKE and most GPU pools
  carry, so only GPU work lands there. count 0 compiles a CPU-only pipeline.
  """
  type: str = NVIDIA_GPU
  count: int = 1
  node_selector: Tuple[Tuple[str, str], ...] = (("nvidia.com/gpu.present", "true"),)
  tolerations: Tuple[Toleration, ...] = (Toleration(key=NVIDIA_GPU),)

  def __post_init__(self):
    if self.count < 0:
      raise KubeflowConfigError(f"--gpu-count must be 0 or more, got {self.count}")
    if not self.type:
      raise KubeflowConfigError("--gpu-type must name an accelerator, e.g. nvidia.com/gpu")

  @property
  def enabled(self) -> bool:
    return self.count > 0


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
  """Everything the Kubeflow compile needs besides the dataset spec.

  data_root is the default of the pipeline parameter `data_root` (a directory holding the
  validated table, as `clinical-dp kubeflow prepare-data` writes it); None leaves the
  parameter to be given with each run. pipeline_root None leaves the root to the run or
  to the cluster's default. release_uri is where ReleasePusher writes what may be
  published; None puts it at <pipeline_root>/release, or, without a pipeline root, in
  the release step's own output artifact under the run's root.
  """
  pipeline_image: str
  federated_image: str
  data_root: Optional[str] = None
  pipeline_root: Optional[str] = None
  pipeline_name: str = "clinical-dp"
  gpu: GpuConfig = GpuConfig()
  beam_runner: str = DIRECT_RUNNER
  beam_args: Tuple[str, ...] = ()
  release_uri: Optional[str] = None
  release_federated: Tuple[str, ...] = DEFAULT_FEDERATED_RELEASE  # federated_release's names
  # Running TFF workers for the federated step (HOST:PORT, e.g. the StatefulSet of
  # kubeflow/federated-workers.yaml) and its round deadline; none: one process in its pod.
  federated_workers: Tuple[str, ...] = ()
  federated_round_timeout: float = 0.0

  def __post_init__(self):
    _ = self.workers_config  # refuses a bad address or timeout here, before compiling
    if self.release_uri is not None:
      object.__setattr__(self, "release_uri", check_uri(self.release_uri, "--release-uri"))
    if self.data_root is not None:
      object.__setattr__(self, "data_root", check_uri(self.data_root, "--data-root"))
    if self.pipeline_root is not None:
      object.__setattr__(self, "pipeline_root",
                         check_uri(self.pipeline_root, "--pipeline-root"))
    for image, flag in ((self.pipeline_image, "--image-pipeline"),
                        (self.federated_image, "--image-federated")):
      if not image or any(c.isspace() for c in image):
        raise KubeflowConfigError(f"{flag} must be an image reference, got {image!r}")
    if self.beam_runner != DIRECT_RUNNER and self.beam_runner not in DISTRIBUTED_RUNNERS:
      raise KubeflowConfigError(
          f"--beam-runner must be one of {[DIRECT_RUNNER, *DISTRIBUTED_RUNNERS]}, "
          f"got {self.beam_runner!r}")

  @property
  def workers_config(self) -> WorkersConfig:
    """federated.simulate's worker flags for the federated step."""
    try:
      return WorkersConfig(addresses=tuple(self.federated_workers),
                           round_timeout=self.federated_round_timeout)
    except ValueError as e:
      raise KubeflowConfigError(str(e).replace("--worker-address", "--federated-worker")
                                .replace("--round-timeout", "--federated-round-timeout")) from e

  @property
  def release_destination(self) -> str:
    """The release step's release_uri ("": its own output artifact)."""
    if self.release_uri:
      return self.release_uri
    return f"{self.pipeline_root}/{RELEASE_DIR}" if self.pipeline_root else ""

  def beam_extra_args(self) -> Tuple[str, ...]:
    """Beam flags for a distributed runner; its workers run the pipeline image, which
    holds the project (the preprocessing_fn) and Beam's SDK harness entry point."""
    if self.beam_runner == DIRECT_RUNNER:
      return self.beam_args
    given = {arg.split("=", 1)[0] for arg in self.beam_args}
    args: List[str] = [f"--runner={self.beam_runner}"]
    if self.beam_runner == "DataflowRunner":
      defaults = [("--sdk_container_image", self.pipeline_image)]
    else:  # portable runners (Flink, Spark) start SDK workers from an environment
      defaults = [("--environment_type", "DOCKER"),
                  ("--environment_config", self.pipeline_image)]
    args += [f"{flag}={value}" for flag, value in defaults if flag not in given]
    return (*args, *self.beam_args)


def default_images() -> Tuple[str, str]:
  """Image references as kubeflow/README.md builds them, tagged with the project version."""
  version = project_version()
  return f"clinical-dp-pipeline:{version}", f"clinical-dp-federated:{version}"
