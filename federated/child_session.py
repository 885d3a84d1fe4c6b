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
from typing import Callable, Deque, Iterator, List, Optional, Sequence

from clinical_dp.process_tree import kill_session, running, session_members, stat_fields, terminate


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


def kill_own_workers() -> List[int]:
  """Terminates the worker_binary children of this process (TFF starts them and
  leaves them running after Python exits); returns their ids."""
  mine = [pid for pid in worker_binaries()
          if (fields := stat_fields(pid)) and int(fields[1]) == os.getpid()]
  terminate(lambda: [pid for pid in mine if running(pid)], grace_seconds=3.0)
  return mine


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
                       on_start: Optional[Callable[[int], None]] = None,
                       **popen_kwargs) -> "Completed":
  """Runs `command` as a session leader, streams its merged output, kills leftovers.

  Returns the exit code and the last `tail_lines` lines. The session is cleaned up
  on every exit path: also on timeout, when the caller is interrupted (Ctrl-C, or an
  exception its signal handler raises) and, where the caller has no SIGTERM handler of
  its own, on SIGTERM (then SystemExit(143) is raised once the session is gone).
  `on_start` gets the session's id (the child's pid) as soon as it runs.
  """
  with sigterm_as_exit():
    return _run_and_clean_up(command, on_line, timeout, tail_lines, on_start, **popen_kwargs)


def _run_and_clean_up(command, on_line, timeout, tail_lines, on_start,
                      **popen_kwargs) -> "Completed":
  tail: Deque[str] = collections.deque(maxlen=tail_lines)
  process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                             **popen_kwargs)
  if on_start:
    on_start(process.pid)
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
  """`python -m federated.child_session [--timeout S] -- COMMAND...`: COMMAND in its own session.

  For `make test`: the test run's own leftovers (a TFF worker that escaped a test) are
  killed when it ends, so make never waits on a pipe a stray worker holds open.
  """
  import argparse
  import sys
  parser = argparse.ArgumentParser(prog="federated.child_session")
  parser.add_argument("--timeout", type=float, default=None)
  parser.add_argument("command", nargs=argparse.REMAINDER)
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("no command given")
  completed = run_in_own_session(command, on_line=lambda line: print(line, flush=True),
                                 timeout=args.timeout)
  if completed.timed_out:
    print(f"federated.child_session: {command[0]} ran past {args.timeout:g} s and was killed",
          file=sys.stderr)
    return 124  # as timeout(1)
  return completed.returncode


if __name__ == "__main__":
  raise SystemExit(main())
