"""Fixtures of the federated-runtime tests: tiny simulated federations and a CLI runner.

Every run of TFF happens in a child process in a session of its own
(federated/child_session.py), and each test checks that no worker_binary outlives it.
"""

import json
import os

import pytest

from clinical_dp.process_tree import session_members, stat_fields
from clinical_dp.simulators import simulate, write_simulated
from federated.child_session import run_in_own_session, worker_binaries
from federated.config import RESULTS_FILE
from tests.conftest import PROJECT_ROOT

FEDERATED_PYTHON = os.path.join(PROJECT_ROOT, ".venv-federated", "bin", "python")
CHILD_TIMEOUT = 240


def run_child(args, timeout=CHILD_TIMEOUT, on_line=None):
  """Runs the federated runtime's Python with `args` in its own session (`on_line`
  sees each line of its output as it comes).

  Fails if the child left any process behind (a TFF worker it did not stop), or if
  anything of its session survived the clean-up. Workers of other sessions (other
  users of the machine) are not this test's business.
  """
  completed = run_in_own_session([FEDERATED_PYTHON, *map(str, args)], timeout=timeout,
                                 on_line=on_line, cwd=PROJECT_ROOT, tail_lines=400,
                                 env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert not completed.leftovers, f"the child left processes behind: {completed.leftovers}"
  assert not session_members(completed.session_id)
  assert not [pid for pid in worker_binaries() if _session_of(pid) == completed.session_id]
  return completed


def _session_of(pid):
  fields = stat_fields(pid)
  return None if fields is None else int(fields[3])


def simulate_cli(*args, timeout=CHILD_TIMEOUT, on_line=None):
  return run_child(["-m", "federated.simulate", *args], timeout=timeout, on_line=on_line)


@pytest.fixture(scope="session")
def tiny_federation(tmp_path_factory):
  """A small non-IID ICU table over 3 uneven sites."""
  out = tmp_path_factory.mktemp("federation")
  frame, spec = simulate("icu", patients=900, sites=3, seed=11)
  write_simulated(str(out), frame, spec)
  return out


def read_results(output_dir):
  with open(os.path.join(output_dir, RESULTS_FILE), encoding="utf-8") as f:
    return json.load(f)

