"""Runs the pipeline locally: validate and prepare the input, run LocalDagRunner, summarize.

Shared by `clinical-dp run` and the TFX CLI entry point (pipelines/local_runner.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from clinical_dp import console
from clinical_dp.console import say
from clinical_dp.files import write_text_atomically
from clinical_dp.spec import DatasetSpec
from clinical_dp.validation import ValidationReport, load_valid_table, write_prepared_input
from pipelines.config import CHECKPOINTS_DIR, RELEASE_DIR, PipelineConfig, gan_checkpoint_dir
from pipelines.preflight import check_run

OUTPUT_MARKER = ".clinical-dp-output"
RUNNING_MARKER = "RUNNING"
FAILED_MARKER = "FAILED"
SUMMARY_FILE = "run_summary.json"
RUN_ARGS_FILE = "run_args.json"  # the command's arguments, for `run --resume`
REPORT_DIR = "report"
FEDERATED_DIR = "federated"
# Where earlier versions copied the released artifacts; cleared from a re-used directory.
_OLD_RELEASE_DIRS = ("synthetic", "models")
# Results that are not released artifacts, copied out of the TFX pipeline root:
# (component, output, destination). The released ones are in release/ (ReleasePusher).
RESULTS = (("EvaluationReport", "report_dir", REPORT_DIR),
           ("FederatedStep", "federated_results", FEDERATED_DIR))
_RUN_CONTENTS = ("tfx", "input", console.LOG_DIR, "metadata.sqlite", RELEASE_DIR,
                 *_OLD_RELEASE_DIRS, REPORT_DIR, FEDERATED_DIR, SUMMARY_FILE, FAILED_MARKER,
                 RUNNING_MARKER, CHECKPOINTS_DIR, RUN_ARGS_FILE)


SHARE_NOTE = ("only this folder may be shared (its PRIVACY.md states every guarantee); the "
              "report and everything else here are computed from the real patients and "
              "stay with the data owner")


class OutputDirError(ValueError):
  """The output directory cannot be used for a run."""


@dataclasses.dataclass
class PreparedInput:
  source: str
  prepared_csv: str
  rows_in_file: int
  rows_dropped_missing: int
  rows_used: int
  patients_used: int
  subsampled: bool


@dataclasses.dataclass
class SelectedInput:
  """The validated rows the run will use (all, or the fast configuration's patients)."""
  report: ValidationReport
  table: pd.DataFrame
  subsampled: bool


def select_patients(report: ValidationReport, spec: DatasetSpec, config: PipelineConfig
                    ) -> SelectedInput:
  """Every patient, or the fast configuration's seeded subset of patients."""
  table = report.table
  patients = table[spec.id_column] if spec.id_column else table.index.to_series()
  if not config.max_patients or patients.nunique() <= config.max_patients:
    return SelectedInput(report, table, subsampled=False)
  rng = np.random.default_rng(0)
  keep = rng.choice(patients.unique(), size=config.max_patients, replace=False)
  return SelectedInput(report, table[patients.isin(keep)].reset_index(drop=True),
                       subsampled=True)


def plan_run(report: ValidationReport, spec: DatasetSpec, config: PipelineConfig,
             log=say) -> Tuple[SelectedInput, PipelineConfig]:
  """The rows and configuration to run with; raises RunRefused (pipelines/preflight.py)
  before anything is written when the table cannot be run whole."""
  selected = select_patients(report, spec, config)
  plan = check_run(selected.table, spec, config, report.file)
  log(f"      splits by {'patient' if spec.id_column else 'row'}: "
      + ", ".join(f"{split} {count}" for split, count in plan.split_patients) + " patients")
  for note in plan.notes:
    log(f"      {note}")
  return selected, plan.config


def prepare_input(selected: SelectedInput, spec: DatasetSpec, config: PipelineConfig,
                  resume: bool = False) -> PreparedInput:
  """Writes the selected rows as the pipeline's input (feature keys, label 1 / 0).

  resume: the input is already there and is kept as it is (a rewritten file would look
  new to CsvExampleGen and every component after it would run again); it must be what
  the table gives now, else the table changed since the run started."""
  table, report = selected.table, selected.report
  patients = table[spec.id_column] if spec.id_column else table.index.to_series()
  if resume:
    prepared = os.path.join(config.input_dir, "data.csv")
    check_dir = tempfile.mkdtemp(dir=config.output_dir, prefix=".resume-check-")
    try:
      check = write_prepared_input(table, spec, check_dir)
      with open(prepared, "rb") as ours, open(check, "rb") as now:
        unchanged = ours.read() == now.read()
    finally:
      shutil.rmtree(check_dir)
    if not unchanged:
      raise OutputDirError(f"{report.file}: the table is not the one the run in "
                           f"{config.output_dir} started on; start a new run")
  else:
    prepared = write_prepared_input(table, spec, config.input_dir)
  return PreparedInput(source=os.path.abspath(report.file), prepared_csv=prepared,
                       rows_in_file=report.rows, rows_dropped_missing=report.dropped_rows,
                       rows_used=len(table), patients_used=int(patients.nunique()),
                       subsampled=selected.subsampled)


def begin_output_dir(output_dir: str) -> None:
  """Claims the output directory for a new run and clears an earlier run's results."""
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise OutputDirError(f"{output_dir}: exists and is not a directory")
  if os.path.isdir(output_dir) and os.listdir(output_dir) and not os.path.exists(
      os.path.join(output_dir, OUTPUT_MARKER)):
    raise OutputDirError(f"{output_dir}: directory is not empty and was not made by clinical-dp; "
                         "choose an empty or new --output directory")
  os.makedirs(output_dir, exist_ok=True)
  for name in _RUN_CONTENTS:
    path = os.path.join(output_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)
  open(os.path.join(output_dir, OUTPUT_MARKER), "w").close()
  with open(os.path.join(output_dir, RUNNING_MARKER), "w") as f:
    f.write("a clinical-dp run is in progress or was interrupted; its results are incomplete\n")


@dataclasses.dataclass(frozen=True)
class ResumableRun:
  """An unfinished run directory and the GAN checkpoint it would resume from."""
  output_dir: str
  run_args: Dict  # the arguments `clinical-dp run` started it with
  progress: object  # trainers.gan_checkpoint.Progress


def resumable_run(output_dir: str) -> ResumableRun:
  """What `run --resume DIR` continues; OutputDirError when there is nothing to resume."""
  from trainers.gan_checkpoint import read_progress  # pylint: disable=g-import-not-at-top
  output_dir = os.path.abspath(output_dir)
  if not os.path.exists(os.path.join(output_dir, OUTPUT_MARKER)):
    raise OutputDirError(f"{output_dir}: not a clinical-dp run directory; nothing to resume")
  if os.path.exists(os.path.join(output_dir, SUMMARY_FILE)):
    raise OutputDirError(f"{output_dir}: the run finished ({SUMMARY_FILE}); nothing to resume")
  args_path = os.path.join(output_dir, RUN_ARGS_FILE)
  if not os.path.exists(args_path):
    raise OutputDirError(f"{output_dir}: holds no {RUN_ARGS_FILE} (a run of an earlier "
                         "version); start a new run")
  progress = read_progress(gan_checkpoint_dir(output_dir))
  if progress is None:
    raise OutputDirError(f"{output_dir}: no checkpoint of the DP AC-GAN (the run stopped "
                         "before its training saved one); start it again with the same "
                         "`clinical-dp run` arguments")
  with open(args_path) as f:
    return ResumableRun(output_dir, json.load(f), progress)


def resume_output_dir(output_dir: str) -> None:
  """Claims an unfinished run's directory again, keeping everything it made (the
  prepared input, tfx/, ML Metadata, the checkpoints, the log)."""
  failed = os.path.join(output_dir, FAILED_MARKER)
  if os.path.exists(failed):
    os.remove(failed)
  with open(os.path.join(output_dir, RUNNING_MARKER), "w") as f:
    f.write("a resumed clinical-dp run is in progress or was interrupted; its results are "
            "incomplete\n")


def fail_output_dir(output_dir: str, message: str) -> None:
  """Marks the run as failed, so the directory never passes for a finished run."""
  if not os.path.isdir(output_dir):
    return
  with open(os.path.join(output_dir, FAILED_MARKER), "w") as f:
    f.write(message.rstrip() + "\n")
  running = os.path.join(output_dir, RUNNING_MARKER)
  if os.path.exists(running):
    os.remove(running)


def finish_output_dir(output_dir: str, summary: Dict) -> str:
  path = write_text_atomically(os.path.join(output_dir, SUMMARY_FILE),
                               json.dumps(summary, indent=2))
  os.remove(os.path.join(output_dir, RUNNING_MARKER))
  # A finished run resumes nothing; its checkpoints (the discriminator among them) go.
  shutil.rmtree(os.path.join(output_dir, CHECKPOINTS_DIR), ignore_errors=True)
  return path


def run_local(config: PipelineConfig, spec: DatasetSpec) -> None:
  """Runs the pipeline under LocalDagRunner (imports TFX only when a run is asked for)."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipelines.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  tfx.orchestration.LocalDagRunner().run(create_pipeline(config, spec))


def _uris_by_output(outputs: List[Dict]) -> Dict[Tuple[str, str], str]:
  return {(o["component"], o["name"]): o["uri"] for o in outputs}


def collect_results(outputs: List[Dict], output_dir: str) -> Dict[str, str]:
  """Copies the report and the federated results under the run directory."""
  by_key = _uris_by_output(outputs)
  copied = {}
  for component, name, destination in RESULTS:
    if (component, name) in by_key:
      target = os.path.join(output_dir, destination)
      shutil.copytree(by_key[(component, name)], target)
      copied[destination] = target
  return copied


def report_headline(report_dir: str) -> Dict:
  """The numbers `run` ends with, read back from report.json."""
  with open(os.path.join(report_dir, "report.json")) as f:
    report = json.load(f)
  utility = report["utility"]
  return {
      "synthetic_relative_auroc": utility["synthetic_relative_to_real"],
      "real_auroc": {m: r.get("auroc") for m, r in utility["real"].items()},
      "synthetic_auroc": {m: r.get("auroc") for m, r in utility["synthetic"].items()},
      "shuffled_label_control_auroc": utility["shuffled_label_control"].get("auroc"),
      "correlation_spearman": report["fidelity"]["correlation_spearman"],
      "membership_auroc": report["attack"]["membership_auroc"],
      "strongest_attack": f"{report['attack']['strongest']['attack']} on "
                          f"{report['attack']['strongest']['artifact']}",
      "positive_control_auroc": report["attack"]["positive_control_auroc"],
      "attack_verdict": report["headline"]["privacy"]["status"],
      "dcr_ratio": report["disclosure"]["dcr_ratio"],
      "exact_copies": report["disclosure"]["exact_copies"],
      "epsilon": report["privacy"]["epsilon"], "delta": report["privacy"]["delta"],
      "unit": report["privacy"]["unit"],
  }


def latest_outputs(outputs: List[Dict]) -> List[Dict]:
  """The outputs of each component's last execution: after `run --resume`, ML Metadata
  also holds the first attempt's executions, which the resumed run reused (cached)."""
  last = {}
  for output in outputs:
    last[output["component"]] = max(last.get(output["component"], -1), output["execution_id"])
  return [o for o in outputs if o["execution_id"] == last[o["component"]]]


def summarize(config: PipelineConfig, spec: DatasetSpec, prepared: PreparedInput,
              seconds: float) -> Dict:
  """What the run produced, read back from ML Metadata and the release ReleasePusher wrote;
  the report and the federated results copied under the run directory."""
  from components.release import read_release  # pylint: disable=g-import-not-at-top
  from pipelines.metadata import read_outputs, split_sizes  # pylint: disable=g-import-not-at-top
  outputs = latest_outputs(read_outputs(config.metadata_path))
  statistics = [o for o in outputs if o["type"] == "ExampleStatistics"]
  release = config.release_destination
  privacy = read_release(release)
  results = collect_results(outputs, config.output_dir)
  summary = {
      "pipeline_name": config.pipeline_name,
      "dataset": spec.name,
      "seconds": round(seconds, 1),
      "input": dataclasses.asdict(prepared),
      "split_by": spec.id_column or "whole row",
      "split_rows": split_sizes(statistics[0]["uri"]) if statistics else {},
      "training_mode": config.training.mode,
      "released": {k: os.path.join(release, k) for k in privacy["artifacts"]},
      "privacy": privacy,
      "metadata": config.metadata_path,
      "pipeline_root": config.pipeline_root,
      "results": results,
      "artifacts": outputs,
  }
  if REPORT_DIR in results:
    summary["report"] = {"html": os.path.join(results[REPORT_DIR], "report.html"),
                         "json": os.path.join(results[REPORT_DIR], "report.json"),
                         "headline": report_headline(results[REPORT_DIR])}
  summary["share"] = {"release": release, "note": SHARE_NOTE}  # last, as the console ends
  return summary


def format_summary(summary: Dict) -> str:
  source = summary["input"]
  lines = [f"clinical-dp run finished in {summary['seconds']:.0f} s: {summary['dataset']}",
           f"  input     {source['source']}: {source['rows_in_file']} rows, "
           f"{source['rows_dropped_missing']} dropped for missing values, "
           f"{source['rows_used']} used ({source['patients_used']} patients"
           + (", fast subsample" if source["subsampled"] else "") + ")",
           f"  splits    by {summary['split_by']}: " + ", ".join(
               f"{k} {v}" for k, v in summary["split_rows"].items()) + " rows"]
  lines.append(f"  released ({summary['training_mode']} training mode; PRIVACY.md in "
               f"{summary['share']['release']}):")
  privacy = summary["privacy"]
  for key, path in summary["released"].items():
    record = privacy["artifacts"][key]
    lines.append(f"    {key:<22} epsilon {record['epsilon']:.3f} at delta {record['delta']:g} "
                 f"({record['unit']}): {path}")
  together = privacy["all_released_together"]
  if summary["released"]:
    lines.append(f"    all released together: epsilon {together['epsilon']:.3f}, delta "
                 f"{together['delta']:g} per patient, "
                 f"{together.get('relation', 'relation not stated')} ({together['composition']})")
    for relation, group in together.get("other_relations", {}).items():
      lines.append(f"      {relation}, not added: epsilon {group['epsilon']:.3f}, delta "
                   f"{group['delta']:g} ({', '.join(group['artifacts'])})")
  if privacy.get("not_released"):
    lines.append(f"    trained for the comparison, not released: "
                 f"{', '.join(privacy['not_released'])} (--release-federated chooses)")
  if "report" in summary:
    lines.extend(_headline_lines(summary["report"]))
  if FEDERATED_DIR in summary.get("results", {}):
    lines.extend(_federated_lines(summary["results"][FEDERATED_DIR]))
  lines.append(f"  artifacts {summary['pipeline_root']} ({len(summary['artifacts'])} outputs, "
               f"listed in {SUMMARY_FILE})")
  lines.append(f"  metadata  {summary['metadata']}")
  lines.append(f"  share     {summary['share']['release']}: {summary['share']['note']}")
  return "\n".join(lines)


def _number(value) -> str:
  """A measure to three decimals, or n/a where the report could not compute it."""
  return "n/a" if value is None else f"{value:.3f}"


def _headline_lines(report: Dict) -> List[str]:
  h = report["headline"]
  ratio = h["synthetic_relative_auroc"]
  return [
      "  report:",
      "    utility   test AUROC trained on real / on synthetic: " + ", ".join(
          f"{m} {_number(h['real_auroc'][m])} / {_number(h['synthetic_auroc'][m])}"
          + (f" ({ratio[m]:.0%})" if ratio.get(m) is not None else "") for m in h["real_auroc"]),
      f"              shuffled-label control AUROC {_number(h['shuffled_label_control_auroc'])}",
      f"    fidelity  correlation-structure Spearman {_number(h['correlation_spearman'])}",
      f"    privacy   epsilon {h['epsilon']:.3f} at delta {h['delta']:g} per {h['unit']}; "
      f"strongest membership attack AUROC {_number(h['membership_auroc'])} "
      f"({h['strongest_attack']}), positive control {_number(h['positive_control_auroc'])}: "
      f"{h['attack_verdict']}",
      f"              DCR ratio {_number(h['dcr_ratio'])}, exact copies {h['exact_copies']}",
      f"    report    {report['html']}"]


def _federated_lines(federated_dir: str) -> List[str]:
  """Test AUROC and epsilon of each federated algorithm, from federated.json."""
  from components.evaluation_report import read_federated  # pylint: disable=g-import-not-at-top
  from federated.config import RESULTS_FILE  # pylint: disable=g-import-not-at-top
  algorithms = read_federated(federated_dir)["algorithms"]
  def privacy(result):
    epsilon = result.get("epsilon")
    if epsilon is None:
      return "not private"
    return f"epsilon {epsilon:.2f} per {result['privacy_unit']}"
  return (["  federated test AUROC across sites:"]
          + [f"    {name:<12} {_number(result['auroc'])} ({privacy(result)})"
             for name, result in algorithms.items()]
          + [f"    results   {os.path.join(federated_dir, RESULTS_FILE)}"])


def run_pipeline(data_path: str, spec: DatasetSpec, config: PipelineConfig,
                 log=say, report: Optional[ValidationReport] = None,
                 run_args: Optional[Dict] = None, resume: bool = False) -> Dict:
  """The whole local job on a table (`report`: its validation, when already done); raises
  InvalidInputError or OutputDirError before claiming the
  output directory, RunFailed (one line: the component, the cause, the log) or
  RunInterrupted after it, with the directory marked FAILED.

  run_args (the command's arguments) are kept in DIR/run_args.json for `run --resume`.
  resume: continue the unfinished run in config.output_dir: its files are kept, the
  components that finished are reused (TFX's cache) and GAN training continues from its
  checkpoint (trainers/gan_checkpoint.py).

  Inside console.captured_run (the CLI), library output goes to DIR/logs/pipeline.log
  from the moment the directory is claimed, and a failure's traceback goes there too.
  """
  start = time.time()
  if report is None:  # else the caller validated the table (the CLI, before TF's import)
    log(f"[1/3] validating {data_path} against spec '{spec.name}'")
    report = load_valid_table(data_path, spec)  # before touching the output directory
  selected, config = plan_run(report, spec, config, log)
  if resume:
    # Finished components are found in ML Metadata; the first run's are recorded there
    # whether or not it used the cache.
    config = dataclasses.replace(config, enable_cache=True)
    resume_output_dir(config.output_dir)
  else:
    begin_output_dir(config.output_dir)
    if run_args is not None:
      write_text_atomically(os.path.join(config.output_dir, RUN_ARGS_FILE),
                            json.dumps(run_args, indent=2))
  log_file = console.attach_log(
      config.output_dir, on_interrupt=lambda text: fail_output_dir(config.output_dir, text),
      append=resume)
  tracker = None
  try:
    prepared = prepare_input(selected, spec, config, resume=resume)
    log(f"[2/3] running the TFX pipeline on {prepared.rows_used} rows with LocalDagRunner "
        f"(Beam {config.beam.mode}); artifacts under {config.pipeline_root}"
        + (f"; log {log_file}" if log_file else ""))
    with console.track_components(log) as tracker:
      run_local(config, spec)
    tracker = None
    log("[3/3] reading ML Metadata; collecting the released artifacts")
    summary = summarize(config, spec, prepared, time.time() - start)
  except console.RunInterrupted as e:
    if tracker is not None and tracker.current:
      e.detail = f" in {tracker.current}"
    traceback.print_exc(file=sys.stderr)  # the log (console.captured_run)
    fail_output_dir(config.output_dir, str(e))
    e.detail += f"; the run directory {config.output_dir} is marked FAILED" + (
        f"; full log: {log_file}" if log_file else "")
    raise
  except BaseException as e:  # also KeyboardInterrupt: never leave a run looking finished
    component = tracker.current if tracker is not None else None
    message = (f"failed in {component}: " if component else "failed: ") + console.one_line(e)
    if log_file:
      traceback.print_exc(file=sys.stderr)  # the log (console.captured_run)
      message += f"; full log: {log_file}"
    fail_output_dir(config.output_dir, message)
    if isinstance(e, KeyboardInterrupt) or not log_file:
      raise  # outside the CLI's capture the caller gets the error itself
    raise console.RunFailed(message, component) from e
  finish_output_dir(config.output_dir, summary)
  return summary
