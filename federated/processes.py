"""Running TFF work in a child session and cleaning up after it.

TFF's execution contexts start `worker_binary` processes that outlive Python and
keep its stdout and stderr open, so a caller waiting on those pipes hangs. Every
TFF run is therefore a child in a session of its own; when it ends, whatever is
left in that session is killed. Pure Python, no TensorFlow: the pipeline runtime
(the TFX component) uses it too.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from typing import Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple


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


def worker_binaries() -> List[int]:
  """Process ids of every TFF worker_binary on the machine."""
  found = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/cmdline", "rb") as f:
          if b"worker_binary" in f.read().split(b"\0")[0]:
            found.append(int(entry))
      except OSError:
        continue
  return found


def _running(pid: int) -> bool:
  fields = stat_fields(pid)
  return fields is not None and fields[0] != "Z"


def _terminate(still_there: Callable[[], List[int]], grace_seconds: float) -> None:
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


def kill_own_workers() -> List[int]:
  """Terminates the worker_binary children of this process (TFF starts them and
  leaves them running after Python exits); returns their ids."""
  mine = [pid for pid in worker_binaries()
          if (fields := stat_fields(pid)) and int(fields[1]) == os.getpid()]
  _terminate(lambda: [pid for pid in mine if _running(pid)], grace_seconds=3.0)
  return mine


def kill_session(session_id: int, grace_seconds: float = 3.0) -> None:
  """SIGTERM then SIGKILL to everything left in the session."""
  _terminate(lambda: session_members(session_id), grace_seconds)


def kill_tree(root_pid: int, grace_seconds: float = 3.0) -> List[int]:
  """SIGTERM then SIGKILL to every process below `root_pid` (see descendants), which
  itself is spared; returns their ids."""
  targets = descendants(root_pid)
  _terminate(lambda: [pid for pid in targets if _running(pid)], grace_seconds)
  return targets


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
  """While the block runs, SIGTERM raises SystemExit(143) instead of ending the process
  on the spot, so `finally` blocks (the session cleanup) run; only where SIGTERM has
  its default action and in the main thread (a caller's own handler is kept)."""
  if (threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
    yield
    return
  def on_sigterm(signum, frame):  # pylint: disable=unused-argument
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the cleanup run
    raise SystemExit(128 + signal.SIGTERM)
  signal.signal(signal.SIGTERM, on_sigterm)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_in_own_session(command: Sequence[str], on_line: Optional[Callable[[str], None]] = None,
                       timeout: Optional[float] = None, tail_lines: int = 40,
                       **popen_kwargs) -> "Completed":
  """Runs `command` as a session leader, streams its merged output, kills leftovers.

  Returns the exit code and the last `tail_lines` lines. The session is cleaned up
  on every exit path: also on timeout, when the caller is interrupted (Ctrl-C, or an
  exception its signal handler raises) and, where the caller has no SIGTERM handler of
  its own, on SIGTERM (then SystemExit(143) is raised once the session is gone).
  """
  with sigterm_as_exit():
    return _run_and_clean_up(command, on_line, timeout, tail_lines, **popen_kwargs)


def _run_and_clean_up(command, on_line, timeout, tail_lines, **popen_kwargs) -> "Completed":
  tail: Deque[str] = collections.deque(maxlen=tail_lines)
  process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                             **popen_kwargs)
  started = time.time()
  timed_out = False
  try:
    # The session leader's pid is the session id; reading stops at EOF, which the
    # cleanup below forces even if a worker still holds the pipe.
    import selectors
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    while True:
      if timeout is not None and time.time() - started > timeout:
        timed_out = True
        break
      if not selector.select(timeout=0.5):
        if process.poll() is not None and not _has_data(process):
          break
        continue
      line = process.stdout.readline()
      if not line:
        break
      line = line.rstrip("\n")
      tail.append(line)
      if on_line:
        on_line(line)
    if timed_out:
      returncode = None
    else:
      try:
        returncode = process.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        returncode, timed_out = None, True
  finally:
    # What is still in the session once the child is gone was left behind by it.
    leftovers = [pid for pid in session_members(process.pid) if pid != process.pid] \
        if process.poll() is not None else []
    kill_session(process.pid)
    if process.poll() is None:
      process.kill()
      process.wait()
    process.stdout.close()
  return Completed(returncode if not timed_out else -signal.SIGKILL, list(tail), timed_out,
                   process.pid, leftovers)


def _has_data(process) -> bool:
  import select
  readable, _, _ = select.select([process.stdout], [], [], 0)
  return bool(readable)


class Completed:
  """The outcome of run_in_own_session."""

  def __init__(self, returncode: int, tail: List[str], timed_out: bool, session_id: int,
               leftovers: List[int]):
    self.returncode = returncode
    self.tail = tail
    self.timed_out = timed_out
    self.session_id = session_id
    self.leftovers = leftovers  # processes the child left in its session (then killed)

  @property
  def output(self) -> str:
    return "\n".join(self.tail)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`python -m federated.processes [--timeout S] -- COMMAND...`: COMMAND in its own session.

  For `make test`: the test run's own leftovers (a TFF worker that escaped a test) are
  killed when it ends, so make never waits on a pipe a stray worker holds open.
  """
  import argparse
  import sys
  parser = argparse.ArgumentParser(prog="federated.processes")
  parser.add_argument("--timeout", type=float, default=None)
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("no command given")
  completed = run_in_own_session(command, on_line=lambda line: print(line, flush=True),
                                 timeout=args.timeout)
  if completed.timed_out:
    print(f"federated.processes: {command[0]} ran past {args.timeout:g} s and was killed",
          file=sys.stderr)
    return 124  # as timeout(1)
  return completed.returncode


if __name__ == "__main__":
  raise SystemExit(main())
