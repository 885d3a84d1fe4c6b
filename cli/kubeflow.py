"""`clinical-dp kubeflow ...`: compile the pipeline for Kubeflow Pipelines, prepare its data.

Arguments are checked before TensorFlow is imported, so bad input answers at once (exit 2
through cli/main.py's handling of ValueError).
"""

from __future__ import annotations

import argparse
import os

from federated.config import (DEFAULT_FEDERATED_RELEASE, RELEASE_FEDERATED_HELP,
                              federated_release)
from kubeflow.config import (DIRECT_RUNNER, DISTRIBUTED_RUNNERS, GpuConfig, KubeflowConfig,
                             KubeflowConfigError, Toleration, default_images)

SPEC_SUFFIXES = (".yaml", ".yml")


def _node_label(text: str):
  key, has_value, value = text.partition("=")
  if not key or not has_value:
    raise KubeflowConfigError(f"--gpu-node-selector must be KEY=VALUE, got {text!r}")
  return key, value


def _gpu_config(args: argparse.Namespace) -> GpuConfig:
  default = GpuConfig()
  return GpuConfig(
      type=args.gpu_type, count=args.gpu_count,
      node_selector=tuple(_node_label(t) for t in args.gpu_node_selector)
      if args.gpu_node_selector else default.node_selector,
      tolerations=tuple(Toleration.parse(t) for t in args.gpu_toleration)
      if args.gpu_toleration else default.tolerations)


def _load_spec(path):
  from clinical_dp.spec import load_spec  # pylint: disable=g-import-not-at-top
  if path:
    return load_spec(path)
  from clinical_dp.simulators.sprint import SprintConfig, sprint_spec  # pylint: disable=g-import-not-at-top
  return sprint_spec(SprintConfig())


def _cmd_compile(args: argparse.Namespace) -> int:
  if not args.output.endswith(SPEC_SUFFIXES):
    raise KubeflowConfigError(f"--output must be a .yaml file (what Kubeflow Pipelines 2.x "
                              f"uploads), got {args.output!r}")
  if os.path.isdir(args.output):
    raise KubeflowConfigError(f"--output {args.output} is a directory")
  config = KubeflowConfig(
      pipeline_image=args.image_pipeline, federated_image=args.image_federated,
      data_root=args.data_root, pipeline_root=args.pipeline_root, gpu=_gpu_config(args),
      beam_runner=args.beam_runner, beam_args=tuple(args.beam_arg),
      release_uri=args.release_uri, release_federated=federated_release(args.release_federated),
      federated_workers=tuple(args.federated_worker),
      federated_round_timeout=args.federated_round_timeout)
  spec = _load_spec(args.spec)
  from pipelines.config import training_config  # pylint: disable=g-import-not-at-top
  training = training_config(args.mode, epochs=args.epochs, train_twin=args.non_private_twin)
  from kubeflow.runner import DATA_ROOT_PARAMETER, compile_pipeline  # pylint: disable=g-import-not-at-top
  result = compile_pipeline(config, spec, args.output, training=training,
                            federated=not args.no_federated)
  gpu = config.gpu
  print(f"compiled pipeline '{config.pipeline_name}' (dataset spec '{spec.name}') for "
        f"Kubeflow Pipelines: {os.path.abspath(result.output)}")
  print(f"  components ({len(result.components)}): {', '.join(result.components)}")
  if result.gpu_steps:
    print(f"  GPU steps ({gpu.type} x{gpu.count}; node selector "
          f"{', '.join(f'{k}={v}' for k, v in gpu.node_selector) or 'none'}; tolerations "
          f"{', '.join(t.key for t in gpu.tolerations) or 'none'}): "
          f"{', '.join(result.gpu_steps)}")
  else:
    print("  GPU steps: none (--gpu-count 0)")
  for image in sorted(set(result.images.values())):
    steps = [c for c in result.components if result.images[c] == image]
    print(f"  image {image}: " + (", ".join(steps) if len(steps) <= 3
                                  else f"{len(steps)} steps"))
  print(f"  data root: pipeline parameter {DATA_ROOT_PARAMETER}, "
        + (f"default {config.data_root}" if config.data_root else "to be given with each run"))
  print(f"  pipeline root: {config.pipeline_root or 'the run or the cluster default'}")
  release = config.release_destination or "ReleasePusher's output artifact under the run root"
  print(f"  release (what may be published): {release}")
  if not args.no_federated:
    workers = config.federated_workers
    print("  federated step: " + (f"rounds on the TFF workers {', '.join(workers)}"
                                  if workers else "rounds in one TFF process in its pod"))
  print(f"  Beam: {config.beam_runner}" + (f" {' '.join(config.beam_extra_args())}"
                                           if config.beam_extra_args() else ""))
  return 0


def _cmd_prepare_data(args: argparse.Namespace) -> int:
  """Validates a table and writes it as the pipeline reads it (what `clinical-dp run`
  writes before a local run), for upload to the data root. No TensorFlow needed."""
  from clinical_dp.spec import load_spec  # pylint: disable=g-import-not-at-top
  from clinical_dp.validation import (InvalidInputError, validate_table,  # pylint: disable=g-import-not-at-top
                                      write_prepared_input)
  spec = load_spec(args.spec)
  report = validate_table(args.data, spec)
  if not report.ok:
    raise InvalidInputError(report.findings)
  prepared = write_prepared_input(report.table, spec, args.out)
  print(f"{args.data}: valid against spec '{spec.name}'; wrote {prepared} ({len(report.table)} "
        f"rows, {report.dropped_rows} dropped for missing values)\n  upload it to the data "
        f"root, e.g. gsutil cp {prepared} gs://BUCKET/clinical-dp/data/")
  return 0


def add_kubeflow_parser(subparsers) -> None:
  """`kubeflow compile` and `kubeflow prepare-data` under the clinical-dp command."""
  pipeline_image, federated_image = default_images()
  kubeflow = subparsers.add_parser(
      "kubeflow", help="compile the pipeline for Kubeflow Pipelines 2.x (GPU nodes)")
  commands = kubeflow.add_subparsers(dest="kubeflow_command", required=True)

  compile_ = commands.add_parser(
      "compile", help="write the pipeline spec YAML (KubeflowV2DagRunner; no cluster needed)")
  compile_.add_argument("--output", required=True, help="pipeline spec file (.yaml)")
  compile_.add_argument("--spec", default=None,
                        help="dataset spec YAML (default: the simulated SPRINT-like spec)")
  compile_.add_argument("--image-pipeline", default=pipeline_image,
                        help=f"pipeline image (kubeflow/Dockerfile.pipeline; default "
                             f"{pipeline_image})")
  compile_.add_argument("--image-federated", default=federated_image,
                        help=f"federated image (kubeflow/Dockerfile.federated; default "
                             f"{federated_image})")
  compile_.add_argument("--data-root", default=None,
                        help="gs:// directory holding the prepared table; default of the "
                             "pipeline parameter data_root (else given with each run)")
  compile_.add_argument("--pipeline-root", default=None,
                        help="gs:// root of the artifacts (else the run's or the cluster's)")
  compile_.add_argument("--release-uri", default=None,
                        help="gs:// directory where the release step writes what may be "
                             "published (default <pipeline-root>/release, else the step's "
                             "own output artifact)")
  compile_.add_argument("--release-federated", default=",".join(DEFAULT_FEDERATED_RELEASE),
                        metavar="ALGORITHMS", help=RELEASE_FEDERATED_HELP)
  compile_.add_argument("--gpu-type", default=GpuConfig.type,
                        help=f"accelerator resource of the training steps ({GpuConfig.type})")
  compile_.add_argument("--gpu-count", type=int, default=GpuConfig.count,
                        help="accelerators per training step; 0 for a CPU-only pipeline")
  compile_.add_argument("--gpu-node-selector", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="node label of the GPU pool (repeatable; default "
                             + ", ".join(f"{k}={v}" for k, v in GpuConfig.node_selector)
                             + "; GKE: cloud.google.com/gke-accelerator=nvidia-tesla-t4)")
  compile_.add_argument("--gpu-toleration", action="append", default=[],
                        metavar="KEY[=VALUE][:EFFECT]",
                        help="taint of the GPU pool to tolerate (repeatable; default "
                             + ", ".join(t.key for t in GpuConfig.tolerations) + ")")
  compile_.add_argument("--beam-runner", default=DIRECT_RUNNER,
                        choices=[DIRECT_RUNNER, *DISTRIBUTED_RUNNERS],
                        help="run the data components' Beam jobs on a cluster (default: "
                             "in memory in each step's pod)")
  compile_.add_argument("--beam-arg", action="append", default=[],
                        help="extra Beam option, e.g. --beam-arg=--project=P "
                             "--beam-arg=--region=R --beam-arg=--temp_location=gs://B/tmp")
  compile_.add_argument("--mode", choices=["default", "paper"], default="default",
                        help="DP GAN settings, as for `clinical-dp run`")
  compile_.add_argument("--epochs", type=int, default=None,
                        help="override the trainers' epochs")
  compile_.add_argument("--non-private-twin", action="store_true",
                        help="also train the non-private classifier for comparison")
  compile_.add_argument("--no-federated", action="store_true",
                        help="leave out the federated step (it runs when the spec names a "
                             "site column)")
  compile_.add_argument("--federated-worker", action="append", default=[],
                        metavar="HOST:PORT",
                        help="run the federated step's rounds on this running TFF worker "
                             "(repeatable; kubeflow/federated-workers.yaml starts them, e.g. "
                             "tff-worker-0.tff-workers.NAMESPACE.svc.cluster.local:8000)")
  compile_.add_argument("--federated-round-timeout", type=float, default=0.0,
                        metavar="SECONDS",
                        help="deadline of one federated round on the workers (default 0: "
                             "automatic)")
  compile_.set_defaults(handler=_cmd_compile)

  prepare = commands.add_parser(
      "prepare-data", help="validate a table and write it as the pipeline reads it, for "
                           "upload to the data root")
  prepare.add_argument("--data", required=True)
  prepare.add_argument("--spec", required=True)
  prepare.add_argument("--out", required=True, help="directory for data.csv")
  prepare.set_defaults(handler=_cmd_prepare_data)
