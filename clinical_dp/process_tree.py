"""The processes below one: reading them from /proc and ending them (Linux).

A run must leave nothing behind: TFF's `worker_binary` processes outlive Python, and a
Beam worker or a child session may still be running when a run is interrupted. The
console (clinical_dp/console.py) ends every process under `clinical-dp run` with
kill_tree; federated/child_session.py ends whatever a child left in its session with
kill_session. Pure Python, no TensorFlow, so both runtimes use it.
"""

from __future__ import annotations

import collections
import os
import signal
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple


def stat_fields(pid: int) -> Optional[List[str]]:
  """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...),
  or None once the process is gone. The name may contain spaces, so split after ")"."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      stat = f.read()
  except OSError:
    return None
  return stat[stat.rfind(")") + 2:].split()


def _processes() -> Iterator[Tuple[int, List[str]]]:
  """(pid, stat fields) of every process on the machine (read from /proc; Linux)."""
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      fields = stat_fields(int(entry))
      if fields:
        yield int(entry), fields


def session_members(session_id: int) -> List[int]:
  """Process ids in a session."""
  return [pid for pid, fields in _processes() if int(fields[3]) == session_id]


def descendants(root_pid: int) -> List[int]:
  """Processes below `root_pid`: its children, theirs, and so on, plus every member of
  a session that one of them leads (run_in_own_session's children, whose TFF workers
  stay in that session even once reparented to init)."""
  table = dict(_processes())
  children: Dict[int, List[int]] = collections.defaultdict(list)
  for pid, fields in table.items():
    children[int(fields[1])].append(pid)
  found, stack = set(), [root_pid]
  while stack:
    for child in children.get(stack.pop(), []):
      if child not in found:
        found.add(child)
        stack.append(child)
  found |= {pid for pid, fields in table.items() if int(fields[3]) in found}
  found.discard(root_pid)
  return sorted(found)


def running(pid: int) -> bool:
  fields = stat_fields(pid)
  return fields is not None and fields[0] != "Z"


def terminate(still_there: Callable[[], List[int]], grace_seconds: float) -> None:
  """SIGTERM, then SIGKILL, to the processes `still_there()` lists, waiting up to
  `grace_seconds` after each signal for the list to empty."""
  for sig in (signal.SIGTERM, signal.SIGKILL):
    targets = still_there()
    if not targets:
      return
    for pid in targets:
      try:
        os.kill(pid, sig)
      except ProcessLookupError:
        pass
    deadline = time.time() + grace_seconds
    while time.time() < deadline and still_there():
      time.sleep(0.1)


def kill_session(session_id: int, grace_seconds: float = 3.0) -> None:
  """SIGTERM then SIGKILL to everything left in the session."""
  terminate(lambda: session_members(session_id), grace_seconds)


def kill_tree(root_pid: int, grace_seconds: float = 3.0) -> List[int]:
  """SIGTERM then SIGKILL to every process below `root_pid` (see descendants), which
  itself is spared; returns their ids."""
  targets = descendants(root_pid)
  terminate(lambda: [pid for pid in targets if running(pid)], grace_seconds)
  return targets
