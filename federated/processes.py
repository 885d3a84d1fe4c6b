"""Running TFF work in a child session and cleaning up after it.

TFF's execution contexts start `worker_binary` processes that outlive Python and
keep its stdout and stderr open, so a caller waiting on those pipes hangs. Every
TFF run is therefore a child in a session of its own; when it ends, whatever is
left in that session is killed. Pure Python, no TensorFlow: the pipeline runtime
(the TFX component) uses it too.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from typing import Callable, Deque, List, Optional, Sequence


def stat_fields(pid: int) -> Optional[List[str]]:
  """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...),
  or None once the process is gone. The name may contain spaces, so split after ")"."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      stat = f.read()
  except OSError:
    return None
  return stat[stat.rfind(")") + 2:].split()


def session_members(session_id: int) -> List[int]:
  """Process ids in a session (read from /proc; Linux)."""
  members = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      fields = stat_fields(int(entry))
      if fields and int(fields[3]) == session_id:
        members.append(int(entry))
  return members


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


def run_in_own_session(command: Sequence[str], on_line: Optional[Callable[[str], None]] = None,
                       timeout: Optional[float] = None, tail_lines: int = 40,
                       **popen_kwargs) -> "Completed":
  """Runs `command` as a session leader, streams its merged output, kills leftovers.

  Returns the exit code and the last `tail_lines` lines. The session is cleaned up
  on every exit path (also on timeout or when the caller is interrupted).
  """
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
