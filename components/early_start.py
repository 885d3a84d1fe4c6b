"""Children started beside the TFX chain for a later component to adopt in its turn: the
federated step's (on the prepared input as the pipeline starts, or once ExampleGen has
written the examples) and the report's references (components/report_references.py,
once ExampleGen has written the examples).

LocalDagRunner runs one component at a time (TFX notes that independent nodes could
run side by side, but its launchers would then write the run's SQLite ML Metadata from
two threads at once). The federated step's work, though, is a child process in another
runtime that needs only the patients' rows and their split, and on a large table it is
the longest step (a million patients over 200 hospitals: 12 min). So under
`clinical-dp run` (pipelines/runner.py) the runner plans it with `plan` and, on a new
run, starts it at once with `prepared_written`: federated.simulate reads the prepared
CSV that CsvExampleGen is about to read and splits it as ExampleGen will
(federated/site_data.py: load_prepared), while ExampleGen, the data checks, Transform,
the DP trainers, the Evaluator and the synthetic data run. Where nothing started it
then (a resumed run), it starts when ExampleGen has finished (`component_finished`, the
console's hook) on the examples, or at the latest when the gate passes (`gate_passed`,
called by AnomalyGate). Started before the checks, it is speculative: a gate that fails
fails the run, and the run's end (`clear`) ends the child and removes everything it
wrote.

When FederatedStep's turn comes (after those: pipelines/pipeline.py orders it so) it
`adopt`s the child if it is the command FederatedStep would run on the same rows: on its
examples, or on the prepared input those examples were made from (ExampleGen's
`input_fingerprint` of that file, its size and modification time, is the one recorded
when the child started). It waits for it, replays its lines and moves its outputs into
its artifact: ML Metadata still sees one component after another, and the results are
those of the same data in the same order (site_data's canonical order). Anywhere nothing
was planned (the TFX CLI's local engine, Kubeflow, which runs independent nodes in
parallel itself) FederatedStep runs its child itself, as before. `clear` ends whatever
was not adopted.

The report's references are planned alike (`plan(EVALUATION_REPORT, ...)`), one plan
and one child per adopting component: EvaluationReport adopts its child when the
command is the one it would run on its examples, else computes them itself.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from clinical_dp.console import say
from clinical_dp.process_tree import kill_session
from federated.child_session import Completed, run_in_own_session
from federated.config import examples_source

# (federated.simulate's input arguments, output directory) -> the child's command line
CommandFor = Callable[[List[str], str], List[str]]
# The adopting components, named as their ids in the pipeline (pipelines/component_ids.py,
# a floor above: tests/test_early_start.py holds the two to the same names).
FEDERATED_STEP = "FederatedStep"
EVALUATION_REPORT = "EvaluationReport"
_RESULTS = "results"  # the child's output directory, inside its staging directory
_SESSION_WAIT_S = 5.0  # for a child's session to be known, before `clear` ends it


@dataclasses.dataclass
class EarlyChild:
  """A child started beside the chain: its command (staging output), its input
  (`source`; with the prepared input's fingerprint), lines and outcome."""
  adopter: str  # the component that adopts it in its turn
  command: List[str]
  staging: str
  started: float
  source: List[str]
  input_fingerprint: Optional[str] = None  # of the prepared input; None: on the examples
  lines: List[str] = dataclasses.field(default_factory=list)
  session: Optional[int] = None
  completed: Optional[Completed] = None
  error: Optional[BaseException] = None
  thread: Optional[threading.Thread] = None

  def wait(self) -> Completed:
    """Blocks until the child has ended; its session is cleaned up by then (the child's
    exception, if running it raised one)."""
    self.thread.join()
    if self.error is not None:
      raise self.error
    return self.completed


@dataclasses.dataclass
class _Plan:
  command_for: CommandFor
  staging_parent: str
  example_gen: Optional[Tuple[str, str]]  # (component id, its examples channel's root)
  label: str  # how the console names the child
  popen_kwargs: dict


_lock = threading.Lock()
_plans: Dict[str, _Plan] = {}  # by adopter
_children: List[EarlyChild] = []


def plan(adopter: str, command_for: CommandFor, staging_parent: str,
         example_gen: Optional[Tuple[str, str]] = None, label: str = "",
         **popen_kwargs) -> None:
  """Starts `command_for(input arguments, staging dir)`, for the component `adopter` to
  adopt in its turn: on the prepared input when the runner says it is written
  (`prepared_written`), else once the component of `example_gen` (its id, the directory
  of its examples channel) has finished (`component_finished`), or else when the gate
  passes. `label` names the child on the console (default: the adopter)."""
  with _lock:
    _plans[adopter] = _Plan(command_for, staging_parent, example_gen, label or adopter,
                            popen_kwargs)


def component_finished(component: str) -> None:
  """The console's hook at each component's end (clinical_dp.console.track_components):
  at the planned ExampleGen's, each child still planned starts on its newest examples.
  The gate has not looked at them yet: if it fails, the run fails and `clear` ends the
  child and removes its staging directory, so nothing it made is kept.
  Starting here rather than at the gate puts the child beside StatisticsGen (81 s of one
  core at a million patients). A wrong guess costs only time: a component adopts a child
  only if its command, examples included, is the one it would run."""
  with _lock:
    waiting = [(adopter, planned) for adopter, planned in _plans.items()
               if planned.example_gen and component == planned.example_gen[0]]
  for adopter, planned in waiting:
    examples = _newest_examples(planned.example_gen[1])
    if examples is not None:
      _start(adopter, examples_source(examples),
             "now that ExampleGen's examples are written (ended if the gate fails)")


def prepared_written(adopter: str, source: List[str], input_fingerprint: str) -> None:
  """The runner has written the prepared input: the planned child starts on it now, beside
  ExampleGen (`source`: federated.config.prepared_source; `input_fingerprint`: the one
  ExampleGen will record for that input). The gate has not looked at the rows yet: as
  at ExampleGen's end, a failing gate ends the child and nothing it made is kept."""
  _start(adopter, source, "on the prepared input (ended if the data checks fail)",
         input_fingerprint)


def _newest_examples(examples_root: str) -> Optional[str]:
  """The newest execution's examples directory under `examples_root` (ExampleGen's output
  channel: one directory per execution id) that holds a split, or None."""
  try:
    executions = [name for name in os.listdir(examples_root) if name.isdigit()]
  except OSError:
    return None
  for name in sorted(executions, key=int, reverse=True):
    uri = os.path.join(examples_root, name)
    if any(entry.startswith("Split-") for entry in os.listdir(uri)):
      return uri
  return None


def gate_passed(examples_uri: str) -> None:
  """AnomalyGate's data are clean: the planned children start, unless they already have."""
  with _lock:
    waiting = list(_plans)
  for adopter in waiting:
    _start(adopter, examples_source(examples_uri), "now that the gate has passed")


def _start(adopter: str, source: List[str], reason: str,
           input_fingerprint: Optional[str] = None) -> None:
  """`adopter`'s planned child starts on `source` (once: the plan is used up)."""
  with _lock:
    planned = _plans.pop(adopter, None)
  if planned is None:
    return
  os.makedirs(planned.staging_parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".federated-early-", dir=planned.staging_parent)
  # The child's output one level down: what it stages beside its output (a killed
  # child's partial directory) stays inside `staging`, which `clear` removes.
  child = EarlyChild(adopter, planned.command_for(source, os.path.join(staging, _RESULTS)),
                     staging, time.time(), list(source), input_fingerprint)

  def record_session(session: int) -> None:
    child.session = session

  def run() -> None:
    try:
      child.completed = run_in_own_session(child.command, on_line=child.lines.append,
                                           on_start=record_session, **planned.popen_kwargs)
    except BaseException as e:  # pylint: disable=broad-except
      child.error = e  # raised in FederatedStep, which adopts the child

  child.thread = threading.Thread(target=run, name="federated-early", daemon=True)
  with _lock:
    _children.append(child)
  child.thread.start()
  say(f"  {planned.label}: started beside the chain, {reason}; its lines follow in "
      f"{adopter}'s turn")


def adopt(adopter: str, command_for: Callable[[List[str]], Sequence[str]], examples_uri: str,
          input_fingerprint: str = "") -> Optional[EarlyChild]:
  """The child started for `adopter` that it would have run itself on the same rows, or
  None.

  `command_for(input arguments)`: the adopter's command line on that input, which must
  be the child's but for its last argument (both end with `--output DIR`; the child's
  output is its staging directory). The rows are the same when the child read the
  examples at `examples_uri`, or the prepared input whose fingerprint ExampleGen
  recorded on them (`input_fingerprint`) when it made them."""
  with _lock:
    for child in _children:
      if child.adopter != adopter:
        continue
      if child.input_fingerprint is None:
        same_rows = child.source == examples_source(examples_uri)
      else:
        same_rows = child.input_fingerprint == input_fingerprint
      if same_rows and child.command[:-1] == list(command_for(child.source)[:-1]):
        _children.remove(child)
        return child
  return None


def finish(child: EarlyChild, output: str) -> Completed:
  """Waits for the child; when it succeeded, its outputs (written whole:
  federated.simulate publishes last) move into `output`, FederatedStep's artifact. The
  staging directory goes either way."""
  try:
    completed = child.wait()
    if completed.returncode == 0:
      os.makedirs(output, exist_ok=True)
      results = os.path.join(child.staging, _RESULTS)
      for name in sorted(os.listdir(results)):
        os.replace(os.path.join(results, name), os.path.join(output, name))
    return completed
  finally:
    shutil.rmtree(child.staging, ignore_errors=True)


def clear() -> None:
  """Forgets the plan and ends every child not adopted (a run that failed or was
  interrupted before FederatedStep's turn), removing their staging directories.

  A child stays listed until its staging directory is gone, so that a second caller (the
  interrupt watchdog, which may end the process while the first waits here) finishes the
  work. A child whose session is not known yet (just started) is waited for briefly: left
  running, it would go on writing while the run ends."""
  with _lock:
    _plans.clear()
    children = list(_children)
  for child in children:
    deadline = time.time() + _SESSION_WAIT_S
    while child.session is None and child.thread.is_alive() and time.time() < deadline:
      time.sleep(0.05)
    if child.session is not None:
      kill_session(child.session)
    shutil.rmtree(child.staging, ignore_errors=True)
    child.thread.join(timeout=30)
    shutil.rmtree(child.staging, ignore_errors=True)  # what it wrote before it ended
    with _lock:
      if child in _children:
        _children.remove(child)
