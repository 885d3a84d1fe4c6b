"""The run directory of `clinical-dp run`: claiming it, its RUNNING / FAILED markers,
finishing it, and finding what `run --resume DIR` continues.

    DIR/.clinical-dp-output   made by clinical-dp (an unmarked non-empty directory is refused)
    DIR/RUNNING, DIR/FAILED   a run in progress or interrupted; a failed one (and why)
    DIR/run_summary.json      a finished run; DIR/run_args.json: its arguments, for --resume
    DIR/input, tfx, metadata.sqlite, logs, checkpoints, report, federated, release
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Dict

from clinical_dp import console
from clinical_dp.files import write_text_atomically
from clinical_dp.release_layout import RELEASE_DIR
from pipelines.config import CHECKPOINTS_DIR, gan_checkpoint_dir

OUTPUT_MARKER = ".clinical-dp-output"
RUNNING_MARKER = "RUNNING"
FAILED_MARKER = "FAILED"
SUMMARY_FILE = "run_summary.json"
RUN_ARGS_FILE = "run_args.json"  # the command's arguments, for `run --resume`
REPORT_DIR = "report"
FEDERATED_DIR = "federated"
# Where earlier versions copied the released artifacts; cleared from a re-used directory.
_OLD_RELEASE_DIRS = ("synthetic", "models")
_RUN_CONTENTS = ("tfx", "input", console.LOG_DIR, "metadata.sqlite", RELEASE_DIR,
                 *_OLD_RELEASE_DIRS, REPORT_DIR, FEDERATED_DIR, SUMMARY_FILE, FAILED_MARKER,
                 RUNNING_MARKER, CHECKPOINTS_DIR, RUN_ARGS_FILE)


class OutputDirError(ValueError):
  """The output directory cannot be used for a run."""


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
