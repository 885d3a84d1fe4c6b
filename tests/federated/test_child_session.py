"""The session runner: a child's orphans (like TFF's workers) are found and killed."""

import time

from clinical_dp.process_tree import session_members
from federated.child_session import run_in_own_session


def test_orphan_holding_the_pipe_neither_hangs_the_caller_nor_survives():
  started = time.time()
  # The background sleep outlives bash and keeps its stdout open, as worker_binary does.
  completed = run_in_own_session(["bash", "-c", "sleep 60 & echo started; exit 3"],
                                 timeout=30)
  assert time.time() - started < 15
  assert completed.returncode == 3 and completed.tail == ["started"]
  assert len(completed.leftovers) == 1  # the orphaned sleep, reported ...
  assert not session_members(completed.session_id)  # ... and gone


def test_timeout_kills_the_whole_session():
  completed = run_in_own_session(["bash", "-c", "sleep 60 & sleep 60"], timeout=1)
  assert completed.timed_out
  assert not session_members(completed.session_id)
