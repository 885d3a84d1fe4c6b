"""The console of a run: our own lines on the terminal, everything else in the run's log.

The project's API is one logger, `clinical_dp.console` (CONSOLE_LOGGER), and `say(line)`:

    from clinical_dp.console import say
    say("  SyntheticDataGen: sampling 600 synthetic patients")

Code that must not import this module (e.g. the federated runtime) may log to
`logging.getLogger("clinical_dp.console")` at INFO; the line reaches the console once
anything in the process has called `console()` or `say()` (before that, Python's logging
drops INFO lines). Where a line goes:

- during `clinical-dp run` (`captured_run`), to the terminal the command started on,
  and to the run's log `DIR/logs/pipeline.log`, which gets everything else written on
  file descriptors 1 and 2: absl and Python logging, Python warnings, TF's C++ logs,
  Beam, TFX, child processes (Beam workers) and libraries that print;
- anywhere else (the TFX CLI, Kubeflow, tests), to the current sys.stdout.

`track_components` turns LocalDagRunner's own log messages ("Component X is running.",
"Component X is finished.", absl INFO from tfx/orchestration/local/local_dag_runner.py,
TFX 1.16; LocalDagRunner has no callback for this) into one line as each component
starts and one as it ends, and knows which component is running when the run fails.

`captured_run` also turns SIGTERM and SIGINT into RunInterrupted (raised in the main
thread, so `finally` blocks run: FederatedStep's child session is killed), ends every
process left under this one, and, should the main thread not get out within
INTERRUPT_GRACE_SECONDS, does that and exits from a watchdog thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Callable, Iterator, Optional

from clinical_dp import memory

CONSOLE_LOGGER = "clinical_dp.console"
LOG_DIR = "logs"
LOG_FILE = "pipeline.log"
INTERRUPT_GRACE_SECONDS = 10.0
# LocalDagRunner.run's messages around each component (absl, INFO).
_COMPONENT_RUNNING = "Component %s is running."
_COMPONENT_FINISHED = "Component %s is finished."
_SIGNAL_TEXT = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}


class RunFailed(Exception):
  """A run that failed after claiming its directory; str() is the one line to show."""

  def __init__(self, message: str, component: Optional[str] = None):
    super().__init__(message)
    self.component = component


class RunInterrupted(BaseException):
  """SIGTERM or SIGINT during a run. A BaseException, as KeyboardInterrupt, so that
  `except Exception` in libraries lets it through."""

  def __init__(self, signum: int):
    super().__init__(f"interrupted by {_SIGNAL_TEXT.get(signum, signal.Signals(signum).name)}")
    self.signum = signum
    self.detail = ""  # where it happened and what was left behind, added by the runner

  def __str__(self) -> str:
    return self.args[0] + self.detail

  @property
  def exit_code(self) -> int:
    return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as shells report them


class _ConsoleHandler(logging.Handler):
  """Writes a line to the captured run's terminal (and its log), or to sys.stdout."""

  def emit(self, record: logging.LogRecord) -> None:
    try:
      line = self.format(record) + "\n"
      capture = _capture
      if capture is not None and capture.terminal is not None:
        capture.terminal.write(line)
        capture.terminal.flush()
        sys.stderr.write(line)  # the log file: keeps the console's lines in context
        sys.stderr.flush()
      else:
        sys.stdout.write(line)
        sys.stdout.flush()
    except Exception:  # pylint: disable=broad-except
      self.handleError(record)


def console() -> logging.Logger:
  """The console logger, with its handler (installed once)."""
  logger = logging.getLogger(CONSOLE_LOGGER)
  if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
    logger.addHandler(_ConsoleHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not again through absl's or the root's handlers
  return logger


def say(line: str) -> None:
  """One line for the person running the pipeline."""
  console().info(line)


def log_path(run_dir: str) -> str:
  return os.path.join(run_dir, LOG_DIR, LOG_FILE)


# --------------------------------------------------------------------------- components


class ComponentTracker(logging.Handler):
  """Follows LocalDagRunner's component messages; `current` is the one running."""

  def __init__(self, log: Callable[[str], None],
               on_finished: Optional[Callable[[str], None]] = None):
    super().__init__(level=logging.INFO)
    self.current: Optional[str] = None
    self._started = 0.0
    self._log = log
    self._on_finished = on_finished

  def emit(self, record: logging.LogRecord) -> None:
    if record.msg not in (_COMPONENT_RUNNING, _COMPONENT_FINISHED) or not record.args:
      return
    component = str(record.args[0])
    if record.msg == _COMPONENT_RUNNING:
      self.current, self._started = component, time.time()
      self._log(f"  {component} ...")
    else:
      self.current = None
      self._log(f"  {component} done in {time.time() - self._started:.0f} s")
      memory.return_free_memory()  # what this component freed is not the next one's
      if self._on_finished is not None:
        try:
          self._on_finished(component)
        except Exception as e:  # pylint: disable=broad-except
          # a hook's failure must not fail the component that just finished
          self._log(f"  (after {component}: {one_line(e)})")


@contextlib.contextmanager
def track_components(log: Callable[[str], None] = say,
                     on_finished: Optional[Callable[[str], None]] = None
                     ) -> Iterator[ComponentTracker]:
  """Reports each component's start and end while the block runs, and calls
  `on_finished(component id)` after each end (in the runner's thread, between components).

  LocalDagRunner's messages are absl INFO, and absl's logger is at WARNING unless
  someone asks for more; worse, something in a run (seen during Transform) sets it
  back to WARNING. So for the block the absl logger stays at INFO or below: its
  setLevel is wrapped (INFO goes to the log file, not the console).
  """
  absl_logger = logging.getLogger("absl")
  tracker = ComponentTracker(log, on_finished)
  level = absl_logger.level

  def set_level_at_most_info(new_level) -> None:
    new_level = logging._checkLevel(new_level)  # pylint: disable=protected-access
    if new_level == logging.NOTSET or new_level > logging.INFO:
      new_level = logging.INFO
    logging.Logger.setLevel(absl_logger, new_level)

  absl_logger.addHandler(tracker)
  logging.Logger.setLevel(absl_logger, min(absl_logger.getEffectiveLevel(), logging.INFO))
  absl_logger.setLevel = set_level_at_most_info
  try:
    yield tracker
  finally:
    del absl_logger.setLevel
    absl_logger.removeHandler(tracker)
    absl_logger.setLevel(level)


def one_line(error: BaseException) -> str:
  """`Type: first line of the message`, for the console and the FAILED marker."""
  text = str(error).strip()
  first = text.splitlines()[0] if text else ""
  if len(text.splitlines()) > 1:
    first += " ..."
  return f"{type(error).__name__}: {first}" if first else type(error).__name__


# --------------------------------------------------------------------------- capture


class _Capture:
  """File descriptors 1 and 2 redirected to a log; the terminal kept for our lines."""

  def __init__(self):
    self.terminal = None
    self.log_path: Optional[str] = None
    self.run_dir: Optional[str] = None
    self.on_interrupt: Optional[Callable[[str], None]] = None  # marks the run FAILED
    self.interrupted: Optional[RunInterrupted] = None
    self.ending = False
    self.keep_pending = False
    self._saved = None

  def start(self) -> None:
    fd, self.log_path = tempfile.mkstemp(prefix="clinical-dp-run-", suffix=".log")
    self._redirect(fd)

  def attach(self, run_dir: str, append: bool = False) -> str:
    """Moves the log into RUN_DIR/logs/ (what was written so far comes along); append:
    after an earlier log there (a resumed run), else in place of it."""
    path = log_path(run_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC),
                 0o644)
    self._flush()
    pending = self.log_path
    with open(pending, "rb") as f:
      os.write(fd, f.read())
    self._redirect(fd)
    os.remove(pending)
    self.log_path, self.run_dir = path, run_dir
    return path

  def stop(self) -> None:
    if self._saved is None:
      return
    if self.run_dir is None and self.log_path and not self.keep_pending:
      os.remove(self.log_path)  # no run directory was claimed, and nothing to look into
    self._flush()
    os.dup2(self._saved[0], 1)
    os.dup2(self._saved[1], 2)
    for fd in self._saved:
      os.close(fd)
    self.terminal.close()
    self._saved = self.terminal = None

  def _flush(self) -> None:
    for stream in (sys.stdout, sys.stderr):
      try:
        stream.flush()
      except (OSError, ValueError):
        pass

  def _redirect(self, fd: int) -> None:
    self._flush()
    if self._saved is None:
      self._saved = (os.dup(1), os.dup(2))
      self.terminal = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


_capture: Optional[_Capture] = None


def attach_log(run_dir: str, on_interrupt: Optional[Callable[[str], None]] = None,
               append: bool = False) -> Optional[str]:
  """Once a run has claimed RUN_DIR: the log moves there (inside `captured_run`), after
  the earlier log with `append`; returns its path, or None when output is not captured
  (the TFX CLI, tests)."""
  if _capture is None:
    return None
  _capture.on_interrupt = on_interrupt
  return _capture.attach(run_dir, append=append)


def current_log() -> Optional[str]:
  return _capture.log_path if _capture is not None else None


@contextlib.contextmanager
def captured_run(own_process: bool = True) -> Iterator[_Capture]:
  """For a command that is one run: library output to the log, SIGTERM / SIGINT to
  RunInterrupted, and at the end every process left under this one terminated.

  Must be entered in the main thread. `own_process`: this process is the run (the CLI),
  so whatever is left below it at the end belongs to the run.
  """
  global _capture
  from clinical_dp.process_tree import kill_tree  # pylint: disable=g-import-not-at-top
  capture = _Capture()
  capture.start()
  _capture = capture
  previous = {s: signal.getsignal(s) for s in _SIGNAL_TEXT}

  def finish_interrupted(interrupted: RunInterrupted) -> None:
    """Outlasted the grace period: clean up and leave from this (watchdog) thread."""
    time.sleep(INTERRUPT_GRACE_SECONDS)
    if _capture is not capture:
      return
    kill_tree(os.getpid())
    text = str(interrupted)
    if capture.on_interrupt:
      capture.on_interrupt(text)
    capture.terminal.write(f"clinical-dp run: {text}; ended without cleaning up; full log: "
                           f"{capture.log_path}\n")
    capture.terminal.flush()
    os._exit(interrupted.exit_code)  # pylint: disable=protected-access

  def on_signal(signum, frame):  # pylint: disable=unused-argument
    if capture.interrupted is not None or capture.ending:
      return  # already ending: let the cleanup run
    capture.interrupted = RunInterrupted(signum)
    threading.Thread(target=finish_interrupted, args=(capture.interrupted,),
                     daemon=True).start()
    raise capture.interrupted

  for s in _SIGNAL_TEXT:
    signal.signal(s, on_signal)
  try:
    yield capture
  except (ValueError, RunFailed):  # invalid input or spec, or a failure already put in a line
    raise
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc(file=sys.stderr)  # to the log
    capture.keep_pending = True
    raise RunFailed(f"failed: {one_line(e)}; full log: {capture.log_path}") from e
  finally:
    capture.ending = True  # from here a signal is ignored: let the cleanup run
    try:
      if own_process:
        kill_tree(os.getpid())
    finally:
      capture.stop()
      _capture = None
      for s, handler in previous.items():
        signal.signal(s, handler)
