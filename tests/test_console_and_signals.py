"""Stopping a run: SIGTERM and Ctrl-C (SIGINT) end `clinical-dp run` and all its processes.

The quiet console of a finished run is checked on test_pipeline_e2e.py's icu_run (no
extra run); here each signal interrupts a `--fast` run on a tiny ICU table (4 sites, so
that the federated step starts its child in a session of its own) once the console
shows the federated child's lines.
"""

import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

from clinical_dp.process_tree import descendants, stat_fields
from tests.conftest import PROJECT_ROOT, run_cli

STARTUP_DEADLINE_S = 420  # until the federated child prints (about 1 min alone on 2 cores)
EXIT_DEADLINE_S = 15


@pytest.fixture(scope="module")
def tiny_icu(tmp_path_factory):
  out = tmp_path_factory.mktemp("tiny_icu")
  result = run_cli("simulate", "--kind", "icu", "--out", out, "--patients", 300, "--sites", 4,
                   "--seed", 7)
  assert result.returncode == 0, result.stderr
  return out


def _alive(pid):
  fields = stat_fields(pid)
  return fields is not None and fields[0] != "Z"


def _cmdline(pid):
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      return f.read().replace(b"\0", b" ").decode(errors="replace")
  except OSError:
    return ""


def _read_until_federated(process, lines):
  """Console lines until the federated child has started beside the chain (once the
  gate passed, components/early_start.py) and runs, or the run ended: the child's pid."""
  selector = selectors.DefaultSelector()
  selector.register(process.stdout, selectors.EVENT_READ)
  deadline = time.time() + STARTUP_DEADLINE_S
  started = False
  while time.time() < deadline:
    if started:
      child = [pid for pid in descendants(process.pid)
               if "federated.simulate" in _cmdline(pid)]
      if child:
        return child[0]
    if selector.select(timeout=0.2):
      line = process.stdout.readline()
      if not line:
        return None
      lines.append(line)
      started = started or "FederatedStep: started beside the chain" in line
  return None


@pytest.mark.parametrize("signum, exit_code, reason", [
    (signal.SIGTERM, 143, "interrupted by SIGTERM"),
    (signal.SIGINT, 130, "interrupted by Ctrl-C (SIGINT)"),
])
def test_a_signal_ends_the_run_and_every_process_of_it(signum, exit_code, reason, tiny_icu,
                                                       tmp_path):
  output = tmp_path / "run"
  process = subprocess.Popen(
      [sys.executable, "-m", "cli.main", "run", "--fast", "--data",
       str(tiny_icu / "data.csv"), "--spec", str(tiny_icu / "spec.yaml"), "--output",
       str(output)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)
  lines = []
  try:
    child = _read_until_federated(process, lines)
    assert child, "".join(lines)
    # The run's processes, the federated child's session included (by pid).
    pids = {process.pid, *descendants(process.pid)}
    assert child in pids, pids
    sent = time.time()
    if signum == signal.SIGINT:
      os.killpg(process.pid, signum)  # as Ctrl-C on a terminal: the foreground group
    else:
      os.kill(process.pid, signum)  # as `kill PID`
    stdout, stderr = process.communicate(timeout=EXIT_DEADLINE_S)
    took = time.time() - sent
  finally:
    if process.poll() is None:  # the test failed: leave nothing behind
      pids_left = descendants(process.pid)
      process.kill()
      for pid in pids_left:
        try:
          os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
      process.wait()
  console = "".join(lines) + stdout + stderr
  assert process.returncode == exit_code, console[-3000:]
  assert took < EXIT_DEADLINE_S
  assert "Traceback" not in console, console[-3000:]
  about = [line for line in console.splitlines() if "interrupted" in line]
  assert len(about) == 1 and reason in about[0], console[-3000:]
  assert (output / "FAILED").read_text().startswith(reason)
  assert not (output / "RUNNING").exists() and not (output / "run_summary.json").exists()
  # The federated child's staging directory went with it.
  assert not list(output.glob(".federated-*")), os.listdir(output)
  if signum == signal.SIGTERM:
    # The federated child starts when the gate passes, before Transform and the GAN:
    # no GAN checkpoint yet, so there is nothing to resume.
    resumed = run_cli("run", "--resume", output)
    assert resumed.returncode == 2, resumed.stderr
    assert "no checkpoint of the DP AC-GAN" in resumed.stderr
    assert (output / "run_args.json").exists() and (output / "FAILED").exists()
  deadline = time.time() + 5  # orphans are reaped by init
  while time.time() < deadline and [pid for pid in pids if _alive(pid)]:
    time.sleep(0.2)
  assert not [pid for pid in pids if _alive(pid)], {
      pid: _cmdline(pid) for pid in pids if _alive(pid)}


def test_the_tracker_calls_its_hook_after_each_component_and_survives_its_failure():
  import logging  # pylint: disable=g-import-not-at-top
  from clinical_dp import console  # pylint: disable=g-import-not-at-top
  lines, finished = [], []

  def hook(component):
    finished.append(component)
    if component == "StatisticsGen":
      raise OSError("no such directory")

  tracker = console.ComponentTracker(lines.append, hook)
  for component in ("CsvExampleGen", "StatisticsGen"):
    for message in ("Component %s is running.", "Component %s is finished."):
      tracker.emit(logging.LogRecord("absl", logging.INFO, __file__, 1, message,
                                     (component,), None))
  assert finished == ["CsvExampleGen", "StatisticsGen"]
  assert lines[1].startswith("  CsvExampleGen done in") and lines[-2].startswith(
      "  StatisticsGen done in")
  assert lines[-1] == "  (after StatisticsGen: OSError: no such directory)"
