"""`clinical-dp`: simulate data, validate a table, run the pipeline, account for privacy.

TensorFlow and TFX are imported only by the subcommands that need them, so that
`simulate` and `validate` answer in about a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from typing import List, Optional

from clinical_dp.simulators import KINDS, simulate, write_simulated
from clinical_dp.spec import SpecError, load_spec
from clinical_dp.validation import InvalidInputError, load_valid_table, validate_table
from federated.config import (DEFAULT_FEDERATED_RELEASE, RELEASE_FEDERATED_HELP,
                              federated_release)

EXIT_OK, EXIT_INVALID, EXIT_FAILED = 0, 2, 1


def _cmd_simulate(args: argparse.Namespace) -> int:
  frame, spec = simulate(args.kind, patients=args.patients, sites=args.sites, seed=args.seed)
  data_path, spec_path = write_simulated(args.out, frame, spec)
  label = spec.label_column
  print(f"simulated {args.kind}: {len(frame)} rows, {frame[spec.id_column].nunique()} patients, "
        f"{frame[spec.site_column].nunique()} sites, {label} positive rate "
        f"{frame[label].mean():.3f}")
  print(f"  data  {data_path}\n  spec  {spec_path}")
  return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
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


def _cmd_spec_draft(args: argparse.Namespace) -> int:
  from clinical_dp.files import write_text_atomically  # pylint: disable=g-import-not-at-top
  from clinical_dp.spec_draft import DraftOptions, draft_spec  # pylint: disable=g-import-not-at-top
  if os.path.exists(args.out) and not args.force:
    raise ValueError(f"{args.out} exists; give --force to replace it (a reviewed spec is work "
                     "you may not want to lose)")
  estimator = None
  if args.dp_bounds is not None:
    from trainers import dp_spec_statistics  # pylint: disable=g-import-not-at-top
    config = dp_spec_statistics.DpSpecConfig(epsilon=args.dp_bounds, delta=args.dp_delta,
                                             seed=args.seed)
    def estimator(frame, numeric, categorical, id_column):
      return dp_spec_statistics.draft_estimates(frame, numeric, categorical, config, id_column)
  draft = draft_spec(args.data, DraftOptions(label=args.label, id_column=args.id,
                                             site_column=args.site, name=args.name),
                     estimator=estimator)
  write_text_atomically(args.out, draft.text)
  print(f"{args.out}: drafted from the header of {args.data}: {draft.columns} modeled columns, "
        f"{len(draft.matched)} matched to the public library of clinical variables")
  for note in draft.notes:
    print(f"  note: {note}")
  if draft.placeholders:
    print(f"  {len(draft.placeholders)} placeholder(s) to fill before `validate` accepts it:")
    for placeholder in draft.placeholders:
      print(f"    {placeholder}")
  if draft.privacy_record:
    record = draft.privacy_record
    print(f"  DP estimates for {len(record['columns'])} column(s) spent epsilon "
          f"{record['epsilon']:g} at delta {record['delta']:g} ({record['relation']}); the "
          "spec records it under privacy_spent and the release adds it to its total")
  print(f"next: review {args.out}, then  clinical-dp validate --data {args.data} --spec "
        f"{args.out}")
  return EXIT_OK


def _cmd_spec_check(args: argparse.Namespace) -> int:
  """Validates, then warns (from DP estimates, charged to the spec) where a numeric
  column's declared range is far wider than its values or its values look whole or 0 / 1."""
  from clinical_dp.files import write_text_atomically  # pylint: disable=g-import-not-at-top
  from clinical_dp.spec import with_privacy_record  # pylint: disable=g-import-not-at-top
  from trainers import dp_spec_statistics  # pylint: disable=g-import-not-at-top
  spec = load_spec(args.spec)
  table = load_valid_table(args.data, spec).table  # InvalidInputError names each broken rule
  numeric = {f.name: ([f.name], f.min, f.max) for f in spec.static if not f.is_categorical}
  numeric.update({s.name: (list(s.columns), s.min, s.max) for s in spec.series})
  if not numeric:
    print(f"{args.spec}: no numeric column to check; nothing spent")
    return EXIT_OK
  config = dp_spec_statistics.DpSpecConfig(epsilon=args.epsilon, delta=args.dp_delta,
                                           seed=args.seed)
  uses, record = dp_spec_statistics.column_use(table, numeric, config, spec.id_column)
  with open(args.spec, encoding="utf-8") as f:
    text = f.read()
  write_text_atomically(args.spec, with_privacy_record(text, record, args.spec))
  integer = {f.name: f.integer for f in spec.static if not f.is_categorical}
  integer.update({s.name: s.integer for s in spec.series})
  warnings_found = dp_spec_statistics.check_warnings(uses, integer)
  spent = spec.epsilon_spent + record["epsilon"]
  print(f"{args.spec}: valid against {args.data}; {len(numeric)} numeric entries checked "
        f"from DP estimates (epsilon {args.epsilon:g}, delta {args.dp_delta:g}, recorded under "
        f"privacy_spent, which now totals epsilon {spent:g}: the release adds it to its "
        "total; each check spends again)")
  for warning in warnings_found:
    print(f"  warning: {warning}")
  if not warnings_found:
    print("  no warning: every declared range is in use and no column looks whole-number or "
          "0 / 1 where the spec says otherwise")
  return EXIT_OK


# The arguments of `run` that make a run; kept in DIR/run_args.json for `run --resume`.
RUN_ARGUMENTS = ("data", "spec", "output", "fast", "mode", "epochs", "target_epsilon",
                 "delta", "seed", "non_private_twin", "no_federated", "release_federated",
                 "beam_mode", "beam_workers", "beam_arg")
# Runs started before seeds were secret kept no "seed": theirs was 0.
_SEED_BEFORE_SECRET_SEEDS = 0
_RUN_PATHS = ("data", "spec", "output")


def _run_arguments(args: argparse.Namespace) -> dict:
  """The run's arguments, paths made absolute (a resume may start elsewhere)."""
  return {name: os.path.abspath(getattr(args, name)) if name in _RUN_PATHS
          else getattr(args, name) for name in RUN_ARGUMENTS}


def _check_run_arguments(args: argparse.Namespace) -> None:
  """--data, --spec and --output, or --resume alone (ValueError: exit 2)."""
  federated_release(args.release_federated)
  if not args.resume:
    if not (args.data and args.spec and args.output):
      raise ValueError("give --data, --spec and --output, or --resume DIR")
    return
  defaults = build_parser().parse_args(["run", "--resume", args.resume])
  given = [f"--{name.replace('_', '-')}" for name in RUN_ARGUMENTS
           if getattr(args, name) != getattr(defaults, name)]
  if given:
    raise ValueError(f"--resume continues a run with the arguments it started with; drop "
                     f"{', '.join(given)}")


def _resumed_arguments(args: argparse.Namespace, say) -> argparse.Namespace:
  """The arguments the run in args.resume started with; refuses a directory with nothing
  to resume (ValueError: exit 2)."""
  from pipelines.runner import resumable_run  # pylint: disable=g-import-not-at-top
  run = resumable_run(args.resume)
  progress = run.progress
  say(f"resuming the run in {run.output_dir} ({progress.steps_done} of "
      f"{progress.total_steps} DP AC-GAN steps checkpointed at {progress.saved_at})")
  return argparse.Namespace(**{**vars(args), "seed": _SEED_BEFORE_SECRET_SEEDS,
                                **run.run_args, "output": run.output_dir})


def _cmd_run(args: argparse.Namespace) -> int:
  """Runs the pipeline with a quiet console: our own lines on the terminal, library
  output (from TensorFlow's import on) in the run's log (clinical_dp/console.py)."""
  from clinical_dp.console import captured_run, say  # pylint: disable=g-import-not-at-top
  _check_run_arguments(args)
  with captured_run():
    if args.resume:
      args = _resumed_arguments(args, say)
    # The spec and the table first: a wrong path or a broken table is reported in a second,
    # not after TensorFlow's import.
    spec = load_spec(args.spec)
    say(f"[1/3] validating {args.data} against spec '{spec.name}'")
    report = load_valid_table(args.data, spec)
    if spec.privacy_spent:
      say(f"  the spec was written from DP statistics of these patients (privacy_spent: "
          f"epsilon {spec.epsilon_spent:g}); the release adds them to its total")
    from pipelines.config import BeamConfig, default_config, training_config  # pylint: disable=g-import-not-at-top
    from pipelines.runner import format_summary, run_pipeline  # pylint: disable=g-import-not-at-top
    from trainers.dp_training import PrivacyBudget  # pylint: disable=g-import-not-at-top
    training = dataclasses.replace(
        training_config(args.mode, fast=args.fast, epochs=args.epochs,
                        train_twin=args.non_private_twin), seed=args.seed)
    if args.mode == "paper":  # hours of batch-1 steps: one intra-op thread is faster
      from trainers import batch1_dp  # pylint: disable=g-import-not-at-top
      batch1_dp.use_one_intra_op_thread()
    if args.target_epsilon is not None or args.delta is not None:
      def budget(default: PrivacyBudget) -> PrivacyBudget:
        return PrivacyBudget(
            args.target_epsilon if args.target_epsilon is not None else default.target_epsilon,
            args.delta if args.delta is not None else default.delta)
      training = dataclasses.replace(training, gan_budget=budget(training.gan_budget),
                                     classifier_budget=budget(training.classifier_budget))
    config = default_config(args.output, fast=args.fast, training=training)
    config = dataclasses.replace(config, beam=BeamConfig(
        mode=args.beam_mode, workers=args.beam_workers, extra_args=tuple(args.beam_arg)))
    config = dataclasses.replace(config,
                                 release_federated=federated_release(args.release_federated))
    if args.no_federated:
      config = dataclasses.replace(config, federated=None)
    elif args.seed is not None:
      config = dataclasses.replace(config, federated=dataclasses.replace(config.federated,
                                                                         seed=args.seed))
    summary = run_pipeline(args.data, spec, config, report=report,
                           run_args=_run_arguments(args), resume=bool(args.resume))
    say(format_summary(summary))
  return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
  """Only the public report exists as a command; the pipeline writes the private one."""
  from clinical_dp.public_report import write_public_report  # pylint: disable=g-import-not-at-top
  if not args.public:
    raise ValueError("the report of the real patients is written by `run` (DIR/report/, not "
                     "for release); give --public for a report from DIR/release/ alone")
  json_path, html_path = write_public_report(args.run_dir, args.out or "")
  print(f"public report of {os.path.join(args.run_dir, 'release')} (may be published):\n"
        f"  {html_path}\n  {json_path}")
  return EXIT_OK


def _cmd_privacy(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="clinical-dp", description="Privacy-preserving pipeline for clinical tables.")
  commands = parser.add_subparsers(dest="command", required=True)

  simulate = commands.add_parser("simulate", help="write a seeded simulated table and its spec")
  simulate.add_argument("--kind", required=True, choices=list(KINDS))
  simulate.add_argument("--out", required=True, help="directory for data.csv and spec.yaml")
  simulate.add_argument("--patients", type=int, default=None,
                        help="rows to simulate (default: 9361 for sprint, 20000 for icu)")
  simulate.add_argument("--sites", type=int, default=None,
                        help="clinics or hospitals (default: 20 for sprint, 8 for icu)")
  simulate.add_argument("--seed", type=int, default=0)
  simulate.set_defaults(handler=_cmd_simulate)

  validate = commands.add_parser("validate", help="check a CSV against its dataset spec")
  validate.add_argument("--data", required=True)
  validate.add_argument("--spec", required=True)
  validate.set_defaults(handler=_cmd_validate)

  spec = commands.add_parser("spec", help="draft a dataset spec from a table's header")
  spec_commands = spec.add_subparsers(dest="spec_command", required=True)
  draft = spec_commands.add_parser(
      "draft", help="a spec to review: bounds from a public library of clinical variables, "
                    "never from the data; placeholders where only you can say")
  draft.add_argument("--data", required=True, help="the table (CSV)")
  draft.add_argument("--out", required=True, help="where to write the spec (YAML)")
  draft.add_argument("--label", default=None, help="the outcome column (default: by its name)")
  draft.add_argument("--id", default=None, help="the patient id column (default: by its name)")
  draft.add_argument("--site", default=None, help="the site column (default: by its name)")
  draft.add_argument("--name", default=None, help="the spec's name (default: the file's)")
  draft.add_argument("--force", action="store_true", help="replace --out if it exists")
  draft.add_argument(
      "--dp-bounds", type=float, default=None, metavar="EPSILON",
      help="fill the bounds of numeric columns the library does not know, and the categories "
           "of categorical ones, from DP estimates that spend EPSILON of the patients' "
           "privacy; the spec records it and the release adds it to its total")
  draft.add_argument("--dp-delta", type=float, default=1e-6,
                     help="delta of --dp-bounds (default 1e-6)")
  draft.add_argument("--seed", type=int, default=None,
                     help="seed of --dp-bounds' noise (tests; default: a secret one)")
  draft.set_defaults(handler=_cmd_spec_draft)
  check = spec_commands.add_parser(
      "check", help="after validate, warn where a numeric range is far wider than the values "
                    "or the values look whole-number or 0 / 1 (DP estimates, charged to the "
                    "spec's privacy_spent)")
  check.add_argument("--data", required=True, help="the table (CSV)")
  check.add_argument("--spec", required=True, help="its spec (YAML); its privacy_spent gains "
                                                   "this check's record")
  check.add_argument("--epsilon", type=float, default=0.5,
                     help="privacy the check's estimates spend (default 0.5)")
  check.add_argument("--dp-delta", type=float, default=1e-6, help="their delta (default 1e-6)")
  check.add_argument("--seed", type=int, default=None,
                     help="seed of the noise (tests; default: a secret one)")
  check.set_defaults(handler=_cmd_spec_check)

  run = commands.add_parser("run", help="run the TFX pipeline locally")
  run.add_argument("--data", help="the table (CSV); required unless --resume")
  run.add_argument("--spec", help="its dataset spec (YAML); required unless --resume")
  run.add_argument("--output", help="run directory (metadata, artifacts, summary); required "
                                    "unless --resume")
  run.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run in DIR with the arguments it started "
                        "with: finished components are reused and DP AC-GAN training "
                        "continues from its last checkpoint")
  run.add_argument("--fast", action="store_true",
                   help="small configuration for tests and smoke runs (600 patients, 2 epochs)")
  run.add_argument("--mode", choices=["default", "paper"], default="default",
                   help="DP GAN settings: ours, or SPRINT_gan's published ones (batch 1, "
                        "clip 1e-4, noise 1, lr 2e-5, 500 epochs)")
  run.add_argument("--epochs", type=int, default=None,
                   help="override the trainers' epochs (e.g. paper mode as a smoke test)")
  run.add_argument("--target-epsilon", type=float, default=None,
                   help="privacy budget of each released model (default 1; paper mode GAN 3)")
  run.add_argument("--delta", type=float, default=None, help="delta of each budget (1e-5)")
  run.add_argument("--non-private-twin", action="store_true",
                   help="also train a non-private classifier for comparison (kept in the "
                        "pipeline artifacts, never released)")
  run.add_argument("--no-federated", action="store_true",
                   help="leave out the federated step (it runs when the spec names a site "
                        "column)")
  run.add_argument("--release-federated", default=",".join(DEFAULT_FEDERATED_RELEASE),
                   metavar="ALGORITHMS", help=RELEASE_FEDERATED_HELP)
  run.add_argument("--seed", type=int, default=None,
                   help="seed of the DP trainers' and federated step's draws, noise included, "
                        "to reproduce a run (tests, benchmarks): whoever knows it can redraw "
                        "the noise. Default: a secret seed per run, kept only with the GAN's "
                        "checkpoints inside the run directory and never released")
  run.add_argument("--beam-mode", default="in_memory",
                   choices=["in_memory", "multi_processing", "multi_threading"])
  run.add_argument("--beam-workers", type=int, default=1)
  run.add_argument("--beam-arg", action="append", default=[],
                   help="extra Beam pipeline argument, e.g. --beam-arg=--runner=FlinkRunner")
  run.set_defaults(handler=_cmd_run)

  report = commands.add_parser(
      "report", help="--public: a report from a run's release/ alone, which may be published")
  report.add_argument("run_dir", help="a finished run directory (clinical-dp run --output)")
  report.add_argument("--public", action="store_true",
                      help="read only RUN_DIR/release/ (the synthetic table's own statistics, "
                           "the privacy records)")
  report.add_argument("--out", default=None,
                      help="directory for report.html and report.json (default "
                           "RUN_DIR/public_report)")
  report.set_defaults(handler=_cmd_report)

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
  privacy.set_defaults(handler=_cmd_privacy)
  from kubeflow.cli import add_kubeflow_parser  # pylint: disable=g-import-not-at-top
  add_kubeflow_parser(commands)
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
    output = getattr(args, "output", None)
    if output and os.path.exists(os.path.join(output, "FAILED")):
      print(f"  the run directory {os.path.abspath(output)} is marked FAILED",
            file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
  sys.exit(main())
