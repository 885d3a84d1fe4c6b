"""FederatedStep: runs the federated comparison (TFF) on the pipeline's Examples.

TFX and TensorFlow Federated cannot share a Python environment (docs/design.md), so this
component, which runs in the pipeline runtime, launches the federated runtime's
Python as a child process:

  <project>/.venv-federated/bin/python -m federated.simulate --examples <examples uri>
      --spec-yaml <spec> <federated_args> --output <federated_results uri>

(override the interpreter with CLINICAL_DP_FEDERATED_PYTHON). Kubeflow runs the same
command line in a container component with the federated image. The child gets a
session of its own because TFF's worker processes outlive it; whatever is left in
that session is killed when it ends, and a failed child fails the component with its
last lines.
"""

import json
import os
import sys
import time
from typing import Dict, List

from tfx import v1 as tfx
from tfx.components.example_gen import utils as example_gen_utils
from tfx.types.artifact import Artifact

from clinical_dp.console import say
from components import early_start
from federated.child_session import run_in_own_session
from federated.config import RESULTS_FILE, examples_source, simulate_command

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEDERATED_PYTHON_ENV = "CLINICAL_DP_FEDERATED_PYTHON"


class FederatedResults(Artifact):
  """federated.json, federated.html and the DP models of the federated comparison."""
  # namespace.Name: KubeflowV2DagRunner compiles custom artifact types only in this form.
  TYPE_NAME = "clinical_dp.FederatedResults"


def federated_python() -> str:
  return os.environ.get(FEDERATED_PYTHON_ENV) or os.path.join(
      PROJECT_ROOT, ".venv-federated", "bin", "python")


def federated_command(source: List[str], spec_yaml: str, args: List[str],
                      output: str) -> List[str]:
  """The child's command line (federated.simulate in the federated runtime) on `source`
  (federated.config's examples_source or prepared_source)."""
  python = federated_python()
  if not os.path.exists(python):
    raise RuntimeError(f"FederatedStep: the federated runtime's Python {python} does not exist; "
                       f"run scripts/setup.sh or set {FEDERATED_PYTHON_ENV}")
  return simulate_command(python, source, spec_yaml, args, output)


def child_environment() -> Dict:
  """run_in_own_session's keywords for the child: the project root as its working
  directory and first on its path (so a custom interpreter finds federated/ too)."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env["PYTHONPATH"] = os.pathsep.join([PROJECT_ROOT] + [p for p in env.get(
      "PYTHONPATH", "").split(os.pathsep) if p])
  return {"cwd": PROJECT_ROOT, "env": env}


def _parse_args(federated_args: str) -> List[str]:
  try:
    args = json.loads(federated_args) if federated_args else []
  except json.JSONDecodeError as e:
    raise ValueError(f"FederatedStep: federated_args is not a JSON list: {e}") from e
  if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
    raise ValueError("FederatedStep: federated_args must be a JSON list of strings "
                     "(FederatedConfig.to_args())")
  return args


class _ChildLines:
  """The child's progress lines go to the console; a traceback, and whatever follows
  it, only to the log (stdout: the run's log under `clinical-dp run`)."""

  def __init__(self):
    self._console = True

  def __call__(self, line: str) -> None:
    if line.startswith("Traceback (most recent call last)"):
      self._console = False
    if self._console:
      say(f"  [federated] {line}")
    else:
      print(f"  [federated] {line}", flush=True)


@tfx.dsl.components.component
def FederatedStep(  # pylint: disable=invalid-name
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    federated_results: tfx.dsl.components.OutputArtifact[FederatedResults],
    spec_yaml: tfx.dsl.components.Parameter[str],
    federated_args: tfx.dsl.components.Parameter[str] = "[]",
) -> None:
  """Trains and compares the federated algorithms on ExampleGen's patient splits."""
  args = _parse_args(federated_args)
  def command_for(source: List[str]) -> List[str]:
    return federated_command(source, spec_yaml, args, federated_results.uri)
  command = command_for(examples_source(examples.uri))
  # The full command line goes to the log; the console gets the child's own lines.
  print(f"  FederatedStep: {command[0]} -m federated.simulate --examples {examples.uri} "
        f"{' '.join(args)} --output {federated_results.uri}", flush=True)
  early = early_start.adopt(early_start.FEDERATED_STEP, command_for, examples.uri,
                            examples.get_string_custom_property(
                                example_gen_utils.FINGERPRINT_PROPERTY_NAME))
  if early is None:
    completed = run_in_own_session(command, on_line=_ChildLines(), **child_environment())
  else:  # started beside the chain (components/early_start.py)
    rows = (f"the prepared input {early.source[1]} that these examples were made from"
            if early.input_fingerprint else "these examples")
    say(f"  FederatedStep: its child started beside the chain "
        f"{time.time() - early.started:.0f} s ago on {rows}; waiting for it")
    completed = early_start.finish(early, federated_results.uri)
    show = _ChildLines()
    for line in early.lines:
      show(line)
  if completed.returncode != 0 or not os.path.exists(
      os.path.join(federated_results.uri, RESULTS_FILE)):
    raise RuntimeError(
        f"FederatedStep: federated.simulate failed (exit status {completed.returncode}); "
        "its last lines:\n" + completed.output)
  sys.stdout.flush()
