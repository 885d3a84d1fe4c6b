"""`clinical-dp run`: the TFX pipeline, locally, with a quiet console; `--resume` continues
an interrupted run with the arguments it started with."""

from __future__ import annotations

import argparse
import dataclasses
import os

from cli import EXIT_OK
from clinical_dp import memory
from clinical_dp.spec import load_spec
from clinical_dp.validation import load_valid_table
from federated.config import (DEFAULT_FEDERATED_RELEASE, RELEASE_FEDERATED_HELP,
                              federated_release)

# The arguments of `run` that make a run; kept in DIR/run_args.json for `run --resume`.
RUN_ARGUMENTS = ("data", "spec", "output", "fast", "mode", "epochs", "target_epsilon",
                 "delta", "seed", "non_private_twin", "no_federated", "release_federated",
                 "beam_mode", "beam_workers", "beam_arg", "federated_workers",
                 "federated_in_turn")
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
  parser = argparse.ArgumentParser(prog="clinical-dp")
  add_run_parser(parser.add_subparsers(dest="command"))
  defaults = parser.parse_args(["run", "--resume", args.resume])
  given = [f"--{name.replace('_', '-')}" for name in RUN_ARGUMENTS
           if getattr(args, name) != getattr(defaults, name)]
  if given:
    raise ValueError(f"--resume continues a run with the arguments it started with; drop "
                     f"{', '.join(given)}")


def _resumed_arguments(args: argparse.Namespace, say) -> argparse.Namespace:
  """The arguments the run in args.resume started with; refuses a directory with nothing
  to resume (ValueError: exit 2)."""
  from pipelines.run_directory import resumable_run  # pylint: disable=g-import-not-at-top
  run = resumable_run(args.resume)
  progress = run.progress
  say(f"resuming the run in {run.output_dir} ({progress.steps_done} of "
      f"{progress.total_steps} DP AC-GAN steps checkpointed at {progress.saved_at})")
  return argparse.Namespace(**{**vars(args), "seed": _SEED_BEFORE_SECRET_SEEDS,
                                **run.run_args, "output": run.output_dir})


def pipeline_config(args: argparse.Namespace):
  """The PipelineConfig of `run`'s arguments."""
  from federated.workers import WorkersConfig  # pylint: disable=g-import-not-at-top
  from pipelines.config import BeamConfig, build_config, training_config, with_budget  # pylint: disable=g-import-not-at-top
  training = with_budget(training_config(args.mode, fast=args.fast, epochs=args.epochs,
                                         train_twin=args.non_private_twin),
                         args.target_epsilon, args.delta)
  config = build_config(
      args.output, fast=args.fast, training=training, seed=args.seed,
      federated=not args.no_federated,
      release_federated=federated_release(args.release_federated),
      beam=BeamConfig(mode=args.beam_mode, workers=args.beam_workers,
                      extra_args=tuple(args.beam_arg)),
      federated_workers=WorkersConfig(workers=args.federated_workers or 0))
  config = dataclasses.replace(config, federated_beside_chain=not args.federated_in_turn)
  if args.delta is not None and config.federated is not None:  # a released model's too
    config = dataclasses.replace(config, federated=dataclasses.replace(config.federated,
                                                                       delta=args.delta))
  return config


def _run(args: argparse.Namespace) -> int:
  """Runs the pipeline with a quiet console: our own lines on the terminal, library
  output (from TensorFlow's import on) in the run's log (clinical_dp/console.py)."""
  from clinical_dp.console import captured_run, say  # pylint: disable=g-import-not-at-top
  _check_run_arguments(args)
  memory.limit_malloc_arenas()  # before TensorFlow's threads: one run, one process
  with captured_run():
    if args.resume:
      args = _resumed_arguments(args, say)
    # The spec and the table first: a wrong path or a broken table is reported in a second,
    # not after TensorFlow's import.
    spec = load_spec(args.spec)
    say(f"[1/3] validating {args.data} against spec '{spec.name}'")
    checked = [load_valid_table(args.data, spec)]  # handed over, not kept (run_pipeline)
    if spec.privacy_spent:
      say(f"  the spec was written from DP statistics of these patients (privacy_spent: "
          f"epsilon {spec.epsilon_spent:g}); the release adds them to its total")
    from pipelines.runner import run_pipeline  # pylint: disable=g-import-not-at-top
    from pipelines.summary_text import format_summary  # pylint: disable=g-import-not-at-top
    if args.mode == "paper":  # hours of batch-1 steps: one intra-op thread is faster
      from trainers import batch1_dp  # pylint: disable=g-import-not-at-top
      batch1_dp.use_one_intra_op_thread()
    config = pipeline_config(args)
    summary = run_pipeline(args.data, spec, config, report=checked.pop(),
                           run_args=_run_arguments(args), resume=bool(args.resume))
    say(format_summary(summary))
  return EXIT_OK


def add_run_parser(commands) -> None:
  """`run` under the clinical-dp command."""
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
  run.add_argument("--delta", type=float, default=None,
                   help="delta of each budget, the federated step's too (1e-5); it must be "
                        "below 1 / the training patients (1e-6 for a million)")
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
  run.add_argument("--federated-workers", type=int, default=0, metavar="N",
                   help="run the federated step's rounds on N TFF worker processes started "
                        "here, the sites split among them (default 0: one TFF process); "
                        "the figures are the same (docs/federated.md)")
  run.add_argument("--federated-in-turn", action="store_true",
                   help="start the federated step's child in its turn, not as soon as the "
                        "AnomalyGate passes, beside Transform and the DP trainers (default: "
                        "beside them; in turn holds less memory at once)")
  run.set_defaults(handler=_run)
