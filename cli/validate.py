"""`clinical-dp validate`: check a CSV against its dataset spec."""

from __future__ import annotations

import argparse

from cli import EXIT_OK
from clinical_dp.spec import load_spec
from clinical_dp.validation import InvalidInputError, validate_table


def _validate(args: argparse.Namespace) -> int:
  spec = load_spec(args.spec)
  report = validate_table(args.data, spec)
  if not report.ok:
    raise InvalidInputError(report.findings)
  if spec.models_missing:
    kept = (f"{report.complete_rows} kept ({report.rows_with_holes} with missing values, "
            f"modeled), {report.dropped_rows} would be dropped for a missing label")
  else:
    kept = (f"{report.complete_rows} complete, {report.dropped_rows} would be dropped for "
            "missing values")
  print(f"{args.data}: valid against spec '{spec.name}' ({args.spec}): {report.rows} rows, "
        + kept)
  return EXIT_OK


def add_validate_parser(commands) -> None:
  """`validate` under the clinical-dp command."""
  validate = commands.add_parser("validate", help="check a CSV against its dataset spec")
  validate.add_argument("--data", required=True)
  validate.add_argument("--spec", required=True)
  validate.set_defaults(handler=_validate)
