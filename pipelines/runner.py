"""Runs the pipeline locally: validate and prepare the input, run LocalDagRunner, summarize.

Shared by `clinical-dp run` and the TFX CLI entry point (pipelines/local_runner.py). The
steps live in modules of their own: pipelines/input_selection.py (which rows, the prepared
input), run_directory.py (markers and resume), run_summary.py (what the run produced) and
summary_text.py (the summary on the terminal); this module puts them in order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from typing import Dict, Optional

from clinical_dp import console
from clinical_dp.console import say
from clinical_dp.files import write_text_atomically
from clinical_dp.spec import DatasetSpec
from clinical_dp.validation import ValidationReport, load_valid_table
from components import early_start
from federated.config import prepared_source
from pipelines.component_ids import EXAMPLE_GEN_ID
from pipelines.config import PipelineConfig
from pipelines.input_selection import PreparedInput, plan_run, prepare_input
from pipelines.run_directory import (RUN_ARGS_FILE, begin_output_dir, fail_output_dir,
                                     finish_output_dir, resume_output_dir)
from pipelines.run_summary import summarize


def run_local(config: PipelineConfig, spec: DatasetSpec,
              prepared: Optional[PreparedInput] = None) -> None:
  """Runs the pipeline under LocalDagRunner (imports TFX only when a run is asked for),
  with children beside the chain (components/early_start.py): the federated step's
  (config.federated_beside_chain), from the start on the input just written for
  ExampleGen (`prepared`, a new run), else once ExampleGen has written the examples; and,
  on a new run of a table small enough, the report's references once ExampleGen has
  written the examples (config.references_beside_chain_max_rows)."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from components.federated_step import child_environment, federated_command  # pylint: disable=g-import-not-at-top
  from pipelines.pipeline import create_pipeline, federated_step_args  # pylint: disable=g-import-not-at-top
  examples_root = (EXAMPLE_GEN_ID, os.path.join(config.pipeline_root, EXAMPLE_GEN_ID,
                                                "examples"))
  if config.federated_beside_chain and config.federated is not None and spec.site_column:
    spec_yaml, args = spec.to_yaml(), federated_step_args(config)
    early_start.plan(early_start.FEDERATED_STEP,
                     lambda source, staging: federated_command(source, spec_yaml, args, staging),
                     config.output_dir, examples_root, **child_environment())
    if prepared is not None:
      early_start.prepared_written(
          early_start.FEDERATED_STEP,
          prepared_source(prepared.prepared_csv, dataclasses.asdict(config.splits)),
          input_fingerprint(config.input_dir))
  limit = config.references_beside_chain_max_rows
  if prepared is not None and limit is not None and prepared.train_rows <= limit:
    _plan_references(config, spec, prepared.train_rows, examples_root)
  try:
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config, spec))
  finally:
    early_start.clear()


def _plan_references(config: PipelineConfig, spec: DatasetSpec, train_rows: int,
                     examples_root) -> None:
  """The report's references (components/report_references.py) for the generator's
  planned budget and the synthetic table's planned size (as many patients as the
  generator trains on, unless set), started once ExampleGen has written the examples."""
  from components.federated_step import child_environment  # pylint: disable=g-import-not-at-top
  from components.report_references import references_command  # pylint: disable=g-import-not-at-top
  budget = config.training.gan_budget
  spec_yaml, report_config = spec.to_yaml(), config.report.to_json()
  released = config.training.synthetic_patients or train_rows
  early_start.plan(
      early_start.EVALUATION_REPORT,
      lambda source, staging: references_command(
          sys.executable, source, spec_yaml, report_config,
          (budget.target_epsilon, budget.delta), released, staging),
      config.output_dir, examples_root, label="EvaluationReport's references",
      **child_environment())


def input_fingerprint(input_dir: str) -> str:
  """The `input_fingerprint` CsvExampleGen will record on its examples for `input_dir`
  (its input_base, with its default input config: every file, one split): the files'
  count, bytes and modification times."""
  from tfx.components.example_gen import utils  # pylint: disable=g-import-not-at-top
  fingerprint, _, _ = utils.calculate_splits_fingerprint_span_and_version(
      input_dir, utils.make_default_input_config().splits)
  return fingerprint


def run_pipeline(data_path: str, spec: DatasetSpec, config: PipelineConfig,
                 log=say, report: Optional[ValidationReport] = None,
                 run_args: Optional[Dict] = None, resume: bool = False) -> Dict:
  """The whole local job on a table (`report`: its validation, when already done, which
  the caller should not keep: the table is let go once the pipeline's input is written);
  raises InvalidInputError or OutputDirError before claiming the
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
  def on_interrupt(text: str) -> None:  # the run's processes are already ended
    early_start.clear()
    fail_output_dir(config.output_dir, text)

  log_file = console.attach_log(config.output_dir, on_interrupt=on_interrupt, append=resume)
  tracker = None
  try:
    prepared = prepare_input(selected, spec, config, resume=resume)
    # The components read the prepared CSV; the validated table (0.7 GB at a million
    # patients) would otherwise stay resident for the whole TFX run.
    del report, selected
    log(f"[2/3] running the TFX pipeline on {prepared.rows_used} rows with LocalDagRunner "
        f"(Beam {config.beam.mode}); artifacts under {config.pipeline_root}"
        + (f"; log {log_file}" if log_file else ""))
    with console.track_components(log, early_start.component_finished) as tracker:
      # A resumed run keeps its examples (and maybe its federated results): no early start.
      run_local(config, spec, None if resume else prepared)
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
