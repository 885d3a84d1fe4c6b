"""`clinical-dp simulate`: a seeded simulated table and its dataset spec."""

from __future__ import annotations

import argparse

from cli import EXIT_OK
from clinical_dp.simulators import KINDS, simulate, write_simulated


def _simulate(args: argparse.Namespace) -> int:
  frame, spec = simulate(args.kind, patients=args.patients, sites=args.sites, seed=args.seed)
  data_path, spec_path = write_simulated(args.out, frame, spec)
  label = spec.label_column
  print(f"simulated {args.kind}: {len(frame)} rows, {frame[spec.id_column].nunique()} patients, "
        f"{frame[spec.site_column].nunique()} sites, {label} positive rate "
        f"{frame[label].mean():.3f}")
  print(f"  data  {data_path}\n  spec  {spec_path}")
  return EXIT_OK


def add_simulate_parser(commands) -> None:
  """`simulate` under the clinical-dp command."""
  simulate = commands.add_parser("simulate", help="write a seeded simulated table and its spec")
  simulate.add_argument("--kind", required=True, choices=list(KINDS))
  simulate.add_argument("--out", required=True, help="directory for data.csv and spec.yaml")
  simulate.add_argument("--patients", type=int, default=None,
                        help="rows to simulate (default: 9361 for sprint, 20000 for icu)")
  simulate.add_argument("--sites", type=int, default=None,
                        help="clinics or hospitals (default: 20 for sprint, 8 for icu)")
  simulate.add_argument("--seed", type=int, default=0)
  simulate.set_defaults(handler=_simulate)
