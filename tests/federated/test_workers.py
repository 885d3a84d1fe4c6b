"""The TFF rounds on several worker processes: same figures, faults survived, no leftovers.

Every worker is checked by its process id (other users' workers on the machine are not
these tests' business): the ids come from the run's own console line.
"""

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import time

import pytest

from clinical_dp.process_tree import stat_fields
from federated.config import FederatedConfig
from federated.workers import WorkersConfig, accepts_connections, free_port, parse_address
from tests.conftest import PROJECT_ROOT
from tests.federated.conftest import FEDERATED_PYTHON, read_results, run_child, simulate_cli

CHECKS = os.path.join(os.path.dirname(__file__), "workers_checks.py")
STARTED = re.compile(r"started 2 TFF worker\(s\): (.*)$")
WORKER = re.compile(r"(localhost:\d+) \(pid (\d+)\)")
ROUNDS = 40
# Progress lines come every ROUNDS // 5 rounds; the first is the cue to act.
CUE = f"[dopamine] round {ROUNDS // 5}/{ROUNDS}"


def _running(pid):
  fields = stat_fields(pid)
  return fields is not None and fields[0] != "Z"


def test_two_workers_give_the_same_figures_as_one_process():
  completed = run_child([CHECKS])
  assert completed.returncode == 0, completed.output
  result = json.loads([l for l in completed.tail if l.startswith("{")][-1])
  for name in ("fedavg", "local_dp", "dp_fedavg", "dopamine", "cyclical"):
    entry = result[name]
    # Only the order in which site updates are summed differs: float tolerance.
    assert entry["max_difference"] < 1e-5, (name, entry)
    assert entry["auroc_difference"] < 1e-6 and entry["same_privacy"], (name, entry)
    assert not entry["faults"], (name, entry)
  assert result["dp_fedavg"]["clipping"] == "adaptive"
  # A worker that hangs (stopped: it accepts connections, answers nothing) is caught by
  # the round's deadline and the probe; the round runs again on the other worker.
  hung = result["hung"]
  assert hung["max_difference"] < 1e-5, hung
  assert [(f["round"], f["worker"], f["cause"], f["action"]) for f in hung["faults"]] == [
      (2, hung["stopped"], "timed out", "round retried on 1 remaining worker")], hung
  assert not [pid for pid in result["pids"] if _running(pid)]


class _Watcher:
  """Reads the run's console: the workers' addresses and ids, then acts once on the cue."""

  def __init__(self, act):
    self.workers = {}  # address -> pid
    self.act = act
    self.acted = False

  def __call__(self, line):
    started = STARTED.search(line)
    if started:
      self.workers = {a: int(p) for a, p in WORKER.findall(started.group(1))}
    if CUE in line and not self.acted:
      self.acted = True
      self.act(self)

  def run_pid(self):
    """The simulate process: the workers' parent."""
    return int(stat_fields(next(iter(self.workers.values())))[1])


def _simulate_on_two_workers(federation, output, act):
  watcher = _Watcher(act)
  config = FederatedConfig.fast(algorithm="dopamine", rounds=ROUNDS, eval_every=10)
  completed = simulate_cli("--data", federation / "data.csv", "--spec", federation / "spec.yaml",
                           "--output", output, *config.to_args(), "--workers", "2",
                           on_line=watcher)
  assert watcher.acted and len(watcher.workers) == 2, completed.output
  # Ended on every path, checked by process id.
  assert not [pid for pid in watcher.workers.values() if _running(pid)], completed.output
  return completed, watcher


def test_worker_killed_mid_run_is_survived_and_reported(tiny_federation, tmp_path):
  out = tmp_path / "run"
  killed = {}

  def kill_first(watcher):
    address, pid = next(iter(watcher.workers.items()))
    killed[address] = pid
    os.kill(pid, signal.SIGKILL)
  completed, watcher = _simulate_on_two_workers(tiny_federation, out, kill_first)
  assert completed.returncode == 0, completed.output
  (address, pid), = killed.items()
  entry = read_results(out)["algorithms"]["dopamine"]
  faults = entry["worker_faults"]
  assert len(faults) == 1, faults
  fault = faults[0]
  assert fault["worker"] == address and fault["pid"] == pid and fault["cause"] == "exited"
  assert ROUNDS // 5 < fault["round"] <= ROUNDS
  assert fault["action"] == "round retried on 1 remaining worker"
  # Every planned round ran once: the retried round is counted once in the ledger.
  assert entry["rounds"] == ROUNDS
  assert set(entry["privacy"]["steps_per_site"].values()) == {ROUNDS}
  runtime = read_results(out)["runtime"]
  assert runtime["faults"] == faults and runtime["workers"] == list(watcher.workers)
  assert runtime["live_at_end"] == [a for a in watcher.workers if a != address]
  assert f"worker {address} (pid {pid}) exited; retrying the round on 1 remaining worker" \
      in completed.output
  assert f"worker faults in round(s) [{fault['round']}], retried" in completed.output


ENDINGS = {"SIGTERM": (signal.SIGTERM, 143), "Ctrl-C": (signal.SIGINT, 130),
           "every worker killed": (None, 1)}


def _stopped_mid_round(federation, directory, signum):
  """One run stopped at the cue: a signal to the simulate process alone (its own
  handling must end the workers), or SIGKILL to every worker."""
  def stop(watcher):
    if signum is None:
      for pid in watcher.workers.values():
        os.kill(pid, signal.SIGKILL)
    else:
      os.kill(watcher.run_pid(), signum)
  directory.mkdir()
  completed, _ = _simulate_on_two_workers(federation, directory / "run", stop)
  return completed


def test_no_worker_outlives_a_run_stopped_mid_round(tiny_federation, tmp_path):
  # The three runs side by side: each mostly waits on its own start-up.
  with concurrent.futures.ThreadPoolExecutor(len(ENDINGS)) as pool:
    runs = {ending: pool.submit(_stopped_mid_round, tiny_federation,
                                tmp_path / ending.replace(" ", "_"), signum)
            for ending, (signum, _) in ENDINGS.items()}
  for ending, (_, status) in ENDINGS.items():
    completed = runs[ending].result()
    assert completed.returncode == status, (ending, completed.output)
    directory = tmp_path / ending.replace(" ", "_")
    assert os.listdir(directory) == [], ending  # nothing half-written, no staging left
  assert "every TFF worker is gone" in runs["every worker killed"].result().output


def test_workers_config_flags_and_refusals(tmp_path, capsys):
  assert WorkersConfig().to_args() == [] and not WorkersConfig().remote
  assert WorkersConfig(addresses=("w-0.tff:8000", "w-1.tff:8000"),
                       round_timeout=60.0).to_args() == [
      "--worker-address", "w-0.tff:8000", "--worker-address", "w-1.tff:8000",
      "--round-timeout", "60.0"]
  assert parse_address("[::1]:8000") == ("::1", 8000)
  for bad in ("nohost", "host:", "host:99999", ":8000"):
    with pytest.raises(ValueError):
      parse_address(bad)
  from federated import simulate
  for args, needle in ((["--workers", "2", "--worker-address", "h:1"], "not both"),
                       (["--worker-address", "h"], "HOST:PORT"),
                       (["--workers", "-1"], "--workers")):
    code = simulate.main(["--data", "x.csv", "--spec", "x.yaml", "--output",
                          str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err
  assert not (tmp_path / "out").exists()


def test_worker_entry_point_becomes_the_worker_binary():
  """What a worker pod runs: `python -m federated.workers --port P` execs TFF's binary in
  place (same process id, so the pod's SIGTERM reaches it) and serves on P."""
  port = free_port()
  worker = subprocess.Popen([FEDERATED_PYTHON, "-m", "federated.workers", "--port", str(port)],
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
  try:
    deadline = time.time() + 60
    while not accepts_connections("127.0.0.1", port) and time.time() < deadline:
      assert worker.poll() is None, "the worker exited"
      time.sleep(0.2)
    with open(f"/proc/{worker.pid}/cmdline", "rb") as f:
      command = f.read().split(b"\0")
    assert command[0].endswith(b"/worker_binary") and f"--port={port}".encode() in command
    worker.terminate()
    assert worker.wait(timeout=15) is not None
  finally:
    if worker.poll() is None:
      worker.kill()
      worker.wait()


def test_workers_die_with_a_run_killed_outright():
  """SIGKILL leaves no `finally` to run: the kernel's parent-death signal ends the
  workers a run started."""
  run = subprocess.Popen([FEDERATED_PYTHON, "-c",
                          "import time; from federated.workers import WorkerPool; "
                          "pool = WorkerPool.start(2); "
                          "print(*[w.pid for w in pool.workers], flush=True); time.sleep(60)"],
                         cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
  try:
    pids = [int(p) for p in run.stdout.readline().split()]
    assert len(pids) == 2 and all(_running(pid) for pid in pids)
    run.kill()
    run.wait()
    deadline = time.time() + 10
    while [pid for pid in pids if _running(pid)] and time.time() < deadline:
      time.sleep(0.1)
    assert not [pid for pid in pids if _running(pid)]
  finally:
    if run.poll() is None:
      run.kill()
      run.wait()
    run.stdout.close()
