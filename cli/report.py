"""`clinical-dp report --public`: a report from a run's release/ alone."""

from __future__ import annotations

import argparse
import os

from cli import EXIT_OK
from clinical_dp.release_layout import RELEASE_DIR


def _report(args: argparse.Namespace) -> int:
  """Only the public report exists as a command; the pipeline writes the private one."""
  from components.evaluation.public_report import write_public_report  # pylint: disable=g-import-not-at-top
  if not args.public:
    raise ValueError("the report of the real patients is written by `run` (DIR/report/, not "
                     "for release); give --public for a report from DIR/release/ alone")
  json_path, html_path = write_public_report(args.run_dir, args.out or "")
  print(f"public report of {os.path.join(args.run_dir, RELEASE_DIR)} (may be published):\n"
        f"  {html_path}\n  {json_path}")
  return EXIT_OK


def add_report_parser(commands) -> None:
  """`report` under the clinical-dp command."""
  report = commands.add_parser(
      "report", help="--public: a report from a run's release/ alone, which may be published")
  report.add_argument("run_dir", help="a finished run directory (clinical-dp run --output)")
  report.add_argument("--public", action="store_true",
                      help="read only RUN_DIR/release/ (the synthetic table's own statistics, "
                           "the privacy records)")
  report.add_argument("--out", default=None,
                      help="directory for report.html and report.json (default "
                           "RUN_DIR/public_report)")
  report.set_defaults(handler=_report)
