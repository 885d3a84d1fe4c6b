"""The federated step as a container component in the federated image.

TFX and TensorFlow Federated cannot share a Python environment (docs/design.md), so on
Kubeflow the federated step is not a Python component of the pipeline image: it is a
container running kubeflow/federated_launcher.py in the federated image, with the same
inputs, parameters and output as the local FederatedStep. Only the legacy placeholders
(input URI, input value, output URI) compile for Kubeflow V2.
"""

from __future__ import annotations

import json
from typing import Callable, List, Type

from tfx.dsl.component.experimental import container_component, placeholders
from tfx.types import artifact, standard_artifacts

from pipelines.component_ids import FEDERATED_STEP_ID

EXAMPLES_KEY = "examples"
SPEC_YAML_KEY = "spec_yaml"
FEDERATED_ARGS_KEY = "federated_args"
RESULTS_KEY = "federated_results"
COMPONENT_NAME = FEDERATED_STEP_ID  # it replaces the local pipeline's FederatedStep
LAUNCHER_MODULE = "kubeflow.federated_launcher"


def federated_container_component(image: str, results_type: Type[artifact.Artifact]):
  """The component class: examples in, the simulation's results directory out."""
  return container_component.create_container_component(
      name=COMPONENT_NAME,
      image=image,
      command=["python", "-m", LAUNCHER_MODULE,
               placeholders.InputUriPlaceholder(EXAMPLES_KEY),
               placeholders.InputValuePlaceholder(SPEC_YAML_KEY),
               placeholders.InputValuePlaceholder(FEDERATED_ARGS_KEY),
               placeholders.OutputUriPlaceholder(RESULTS_KEY)],
      inputs={EXAMPLES_KEY: standard_artifacts.Examples},
      outputs={RESULTS_KEY: results_type},
      parameters={SPEC_YAML_KEY: str, FEDERATED_ARGS_KEY: str})


def federated_step_builder(image: str) -> Callable:
  """A `federated_step` for create_components: (examples channel, spec YAML, federated
  flags) -> the container step, with the local step's FederatedResults output type."""
  from components.federated_step import FederatedResults  # pylint: disable=g-import-not-at-top
  component_class = federated_container_component(image, FederatedResults)

  def build(examples, spec_yaml: str, federated_args: List[str]):
    return component_class(**{EXAMPLES_KEY: examples, SPEC_YAML_KEY: spec_yaml,
                              FEDERATED_ARGS_KEY: json.dumps(list(federated_args))})
  return build
