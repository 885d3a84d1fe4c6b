"""`clinical-dp privacy`: epsilon of a DP-SGD training plan, or the noise for a budget."""

from __future__ import annotations

import argparse
import dataclasses

from cli import EXIT_OK


def _privacy(args: argparse.Namespace) -> int:
  import json  # pylint: disable=g-import-not-at-top
  from trainers import accounting  # pylint: disable=g-import-not-at-top
  plan = accounting.PrivacyPlan(
      num_examples=args.num_examples, batch_size=args.batch_size,
      noise_multiplier=args.noise_multiplier if args.noise_multiplier is not None else 0.0,
      epochs=args.epochs, delta=args.delta, accountant=args.accountant, sampling=args.sampling,
      examples_per_microbatch=args.examples_per_microbatch,
      max_rows_per_patient=args.max_rows_per_patient)
  if args.noise_multiplier is None:
    if args.target_epsilon is None:
      raise ValueError("give --noise-multiplier, or --target-epsilon to solve for it")
    plan = dataclasses.replace(plan, noise_multiplier=accounting.noise_for_target_epsilon(
        plan, args.target_epsilon))
  if args.target_epsilon is not None:
    record = accounting.check_budget(plan, args.target_epsilon)
  else:
    record = accounting.compute_epsilon(plan)
  print(json.dumps(record.to_dict(), indent=2))
  return EXIT_OK


def add_privacy_parser(commands) -> None:
  """`privacy` under the clinical-dp command."""
  privacy = commands.add_parser(
      "privacy", help="epsilon of a DP-SGD training plan (JSON), or the noise for a budget")
  privacy.add_argument("--num-examples", type=int, required=True)
  privacy.add_argument("--batch-size", type=int, required=True)
  privacy.add_argument("--noise-multiplier", type=float, default=None)
  privacy.add_argument("--epochs", type=float, required=True)
  privacy.add_argument("--delta", type=float, required=True)
  privacy.add_argument("--accountant", choices=["rdp", "pld"], default="rdp")
  privacy.add_argument("--sampling", choices=["poisson", "fixed"], default="poisson",
                       help="poisson: one patient added or removed (what the trainers run); "
                       "fixed: batches of exactly B, one patient replaced by another, the "
                       "clipped sum's sensitivity 2 clips")
  privacy.add_argument("--examples-per-microbatch", type=int, default=1,
                       help="TF Privacy microbatch size; 1 means per-example clipping")
  privacy.add_argument("--max-rows-per-patient", type=int, default=1,
                       help="above 1, epsilon is per patient (group bound)")
  privacy.add_argument("--target-epsilon", type=float, default=None,
                       help="refuse a plan over this budget; without --noise-multiplier, "
                            "solve for the smallest noise that fits")
  privacy.set_defaults(handler=_privacy)
