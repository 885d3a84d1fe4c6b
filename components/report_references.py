"""The report's references computed beside the chain, for EvaluationReport to adopt.

The released table is measured against models trained on the real training table and
against the DP baselines (components/evaluation_report.py: `References`). None of those
needs the generator: only ExampleGen's splits, the report's configuration, the budget
the generator is trained at and the size of the table it will release. So, on tables
small enough to hold twice (pipelines/config.py: references_beside_chain_max_rows),
`clinical-dp run` starts this command once ExampleGen has written the examples
(components/early_start.py), in the pipeline's own runtime, beside the chain:

  python -m components.report_references --examples DIR --spec-yaml TEXT
      --report-config JSON --target-epsilon E --delta D --released-patients N --output DIR

It writes DIR/references.pickle (atomically, last) and prints the same progress lines
as the report's own steps. In its turn EvaluationReport adopts it only if it would run
this very command: the same examples, spec, configuration, budget (its generator's
privacy record) and size (the synthetic table's patients); otherwise, or where nothing
was started (the TFX CLI, Kubeflow, a resumed run), it computes the references itself
with the same function.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from typing import List, Optional

REFERENCES_FILE = "references.pickle"


def references_command(python: str, source: List[str], spec_yaml: str, report_config: str,
                       budget, released_patients: int, output: str) -> List[str]:
  """The command line, as the runner starts it and as EvaluationReport checks it
  (`source`: federated.config.examples_source of ExampleGen's examples)."""
  target, delta = budget
  return [python, "-m", "components.report_references", *source, "--spec-yaml", spec_yaml,
          "--report-config", report_config, "--target-epsilon", repr(float(target)),
          "--delta", repr(float(delta)), "--released-patients", str(int(released_patients)),
          "--output", output]


def load_references(output: str):
  with open(os.path.join(output, REFERENCES_FILE), "rb") as f:
    return pickle.load(f)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="components.report_references",
                                   description=__doc__.split("\n\n", 1)[0])
  parser.add_argument("--examples", required=True)
  parser.add_argument("--spec-yaml", required=True)
  parser.add_argument("--report-config", required=True)
  parser.add_argument("--target-epsilon", type=float, required=True)
  parser.add_argument("--delta", type=float, required=True)
  parser.add_argument("--released-patients", type=int, required=True)
  parser.add_argument("--output", required=True)
  args = parser.parse_args(argv)
  # The pipeline's runtime: TensorFlow is imported only now, after the arguments parse.
  from clinical_dp.files import write_atomically  # pylint: disable=import-outside-toplevel
  from clinical_dp.spec import parse_spec  # pylint: disable=import-outside-toplevel
  from components import evaluation_report as report  # pylint: disable=import-outside-toplevel
  spec = parse_spec(args.spec_yaml)
  config = report.ReportConfig.from_json(args.report_config)
  clock = report.StepClock(lambda line: print(line, flush=True))
  with clock.step("reading the real splits"):
    real = report.RealSplits.read(args.examples, spec)
  references = report.compute_references(
      real, spec, config, (args.target_epsilon, args.delta), args.released_patients,
      log=lambda line: print(line, flush=True), clock=clock)
  os.makedirs(args.output, exist_ok=True)
  write_atomically(os.path.join(args.output, REFERENCES_FILE),
                   lambda tmp: _dump(references, tmp))
  return 0


def _dump(references, path: str) -> None:
  with open(path, "wb") as f:
    pickle.dump(references, f, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
  sys.exit(main())
