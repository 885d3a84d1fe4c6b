"""`clinical-dp`: simulate data, validate a table, run the pipeline, account for privacy.

The parser is assembled here from one module per command (cli/simulate.py, validate,
spec, run, report, privacy, kubeflow), each holding its arguments and its handler; the
errors every command shares become one line and an exit status here. TensorFlow and
TFX are imported only by the commands that need them, so that `simulate` and `validate`
answer in about a second.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import List, Optional

from cli import EXIT_FAILED, EXIT_INVALID
from cli.kubeflow import add_kubeflow_parser
from cli.privacy import add_privacy_parser
from cli.report import add_report_parser
from cli.run import add_run_parser
from cli.simulate import add_simulate_parser
from cli.spec import add_spec_parser
from cli.validate import add_validate_parser
from clinical_dp.spec import SpecError
from clinical_dp.validation import InvalidInputError


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="clinical-dp", description="Privacy-preserving pipeline for clinical tables.")
  commands = parser.add_subparsers(dest="command", required=True)
  for add_parser in (add_simulate_parser, add_validate_parser, add_spec_parser, add_run_parser,
                     add_report_parser, add_privacy_parser, add_kubeflow_parser):
    add_parser(commands)
  return parser


def _quiet_library_noise() -> None:
  """Google client libraries warn about Python end-of-life dates on every import."""
  warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Optional[List[str]] = None) -> int:
  from clinical_dp.console import RunFailed, RunInterrupted  # pylint: disable=g-import-not-at-top
  args = build_parser().parse_args(argv)
  _quiet_library_noise()
  try:
    return args.handler(args)
  except RunInterrupted as e:  # SIGINT or SIGTERM during `run`: one line, no traceback
    print(f"clinical-dp {args.command}: {e}", file=sys.stderr)
    return e.exit_code
  except RunFailed as e:  # the component, the cause and the log, in one line
    from trainers.accounting import BudgetExceededError  # pylint: disable=g-import-not-at-top
    print(f"clinical-dp {args.command}: {e}", file=sys.stderr)
    return EXIT_INVALID if isinstance(e.__cause__, BudgetExceededError) else EXIT_FAILED
  except InvalidInputError as e:
    print(f"clinical-dp {args.command}: invalid input:", file=sys.stderr)
    for finding in e.findings:
      print(f"  {finding}", file=sys.stderr)
    return EXIT_INVALID
  except (SpecError, ValueError) as e:
    print(f"clinical-dp {args.command}: {e}", file=sys.stderr)
    return EXIT_INVALID
  except Exception as e:  # pylint: disable=broad-except
    print(f"clinical-dp {args.command}: failed: {type(e).__name__}: {e}", file=sys.stderr)
    from pipelines.run_directory import FAILED_MARKER  # pylint: disable=g-import-not-at-top
    output = getattr(args, "output", None)
    if output and os.path.exists(os.path.join(output, FAILED_MARKER)):
      print(f"  the run directory {os.path.abspath(output)} is marked FAILED",
            file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
  sys.exit(main())
