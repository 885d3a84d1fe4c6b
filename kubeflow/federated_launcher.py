"""Entry point of the federated step on Kubeflow, in the federated image.

`python -m federated.simulate` reads the Examples directory and writes its output
directory with local file operations; on Kubeflow both artifacts are remote URIs
(gs://...). This stages the examples in a local directory, runs the same command line on
local paths, and copies the results to the output artifact's URI. Local paths pass
through untouched.

Runs in the federated runtime: standard library and TensorFlow only (no TFX there).

  python -m kubeflow.federated_launcher EXAMPLES_URI SPEC_YAML FEDERATED_ARGS_JSON OUTPUT_URI
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import List, Optional
from urllib.parse import urlparse

from clinical_dp.files import copy_tree
from federated.config import RESULTS_FILE, examples_source, simulate_command


def is_remote(uri: str) -> bool:
  return bool(urlparse(uri).scheme)


def main(argv: Optional[List[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 4:
    print(__doc__, file=sys.stderr)
    return 2
  examples_uri, spec_yaml, args_json, output_uri = argv
  federated_args = json.loads(args_json)
  with tempfile.TemporaryDirectory(prefix="federated-step-") as scratch:
    examples = examples_uri
    if is_remote(examples_uri):
      examples = os.path.join(scratch, "examples")
      count = copy_tree(examples_uri, examples)
      print(f"federated step: staged {count} example files from {examples_uri}", flush=True)
    output = os.path.join(scratch, "output") if is_remote(output_uri) else output_uri
    # TFF's worker processes outlive the simulation holding its stdout; in a session of
    # its own the run is cleaned up when it ends, so the step's pod does not hang.
    from federated.child_session import run_in_own_session  # pylint: disable=import-outside-toplevel
    command = simulate_command(sys.executable, examples_source(examples), spec_yaml,
                               federated_args, output)
    code = run_in_own_session(command, on_line=lambda line: print(line, flush=True)).returncode
    if code == 0 and not os.path.exists(os.path.join(output, RESULTS_FILE)):
      print(f"federated step: federated.simulate wrote no {RESULTS_FILE}", file=sys.stderr)
      code = 1
    if code == 0 and output != output_uri:
      count = copy_tree(output, output_uri)
      print(f"federated step: copied {count} result files to {output_uri}", flush=True)
  return code


if __name__ == "__main__":
  sys.exit(main())
