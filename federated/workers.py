"""TFF worker processes on this machine, and the addresses of workers elsewhere.

`python -m federated.simulate --workers N` starts N `worker_binary` processes (TFF's
C++ executor service, shipped in the tensorflow_federated wheel) on free loopback ports
and spreads each round's sites over them; `--worker-address HOST:PORT` uses workers that
already run (a Kubernetes StatefulSet, kubeflow/federated-workers.yaml). This module is
the process side, pure Python (no TensorFlow): it must start the workers before
TensorFlow's threads exist, and the pipeline runtime reads WorkersConfig.

A worker started here dies with the process that started it on every ending: close()
on a normal end or an exception (Ctrl-C included), and the kernel's parent-death signal
(prctl PR_SET_PDEATHSIG) when that process is killed outright or its SIGTERM handler
never runs.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import os
import signal
import socket
import subprocess
import time
from typing import List, Optional, Sequence, Tuple

# The port worker_binary listens on in the Kubernetes manifest and the README example.
DEFAULT_WORKER_PORT = 8000
# How long a started worker may take to accept connections (it loads TensorFlow).
STARTUP_SECONDS = 60.0


class NoWorkersLeft(RuntimeError):
  """Every worker of the run is gone; the run cannot go on (exit status 1)."""


@dataclasses.dataclass(frozen=True)
class WorkersConfig:
  """Where the federated rounds run: infrastructure, not what is trained, so neither
  federated.json's config nor a model's privacy record holds it (federated.json lists
  the workers that ran under "runtime").

  workers 0 and no addresses: TFF's own single local process (the default).
  round_timeout 0: a deadline scaled to the rounds measured so far (execution.py).
  """
  workers: int = 0
  addresses: Tuple[str, ...] = ()
  round_timeout: float = 0.0

  def __post_init__(self):
    if self.workers < 0:
      raise ValueError(f"--workers must be 0 or more, got {self.workers}")
    if self.workers and self.addresses:
      raise ValueError("give --workers N (start workers here) or --worker-address "
                       "HOST:PORT (use running ones), not both")
    for address in self.addresses:
      parse_address(address)
    if self.round_timeout < 0:
      raise ValueError(f"--round-timeout must be 0 (automatic) or positive, got "
                       f"{self.round_timeout}")

  @property
  def remote(self) -> bool:
    """True when the rounds run on worker_binary processes this code talks to itself."""
    return bool(self.workers or self.addresses)

  def to_args(self) -> List[str]:
    """federated.simulate's flags for this setting (empty for the default)."""
    args: List[str] = []
    if self.workers:
      args += ["--workers", str(self.workers)]
    for address in self.addresses:
      args += ["--worker-address", address]
    if self.round_timeout:
      args += ["--round-timeout", repr(self.round_timeout)]
    return args


def add_worker_flags(parser) -> None:
  """--workers, --worker-address, --round-timeout on an argparse parser."""
  group = parser.add_argument_group("workers (where the rounds run; not part of the config)")
  group.add_argument("--workers", type=int, default=0,
                     help="start N TFF worker processes on loopback and spread each round's "
                          "sites over them (default 0: TFF's single local process)")
  group.add_argument("--worker-address", action="append", default=[], metavar="HOST:PORT",
                     help="use a running worker_binary (repeatable), e.g. the StatefulSet "
                          "of kubeflow/federated-workers.yaml")
  group.add_argument("--round-timeout", type=float, default=0.0, metavar="SECONDS",
                     help="deadline of one round on the workers (after the first, which "
                          "compiles) before they are probed and the round retried on the "
                          "live ones (default 0: automatic)")


def workers_config(args) -> WorkersConfig:
  return WorkersConfig(workers=args.workers, addresses=tuple(args.worker_address),
                       round_timeout=args.round_timeout)


def parse_address(address: str) -> Tuple[str, int]:
  host, colon, port = address.rpartition(":")
  if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"--worker-address must be HOST:PORT, got {address!r}")
  return host.strip("[]"), int(port)


def worker_binary_path() -> str:
  """TFF's worker_binary, found without importing TensorFlow."""
  spec = importlib.util.find_spec("tensorflow_federated")
  if spec is None or not spec.submodule_search_locations:
    raise RuntimeError("tensorflow_federated is not installed: run with the federated "
                       "runtime (.venv-federated)")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data", "worker_binary")
  if not os.path.isfile(path):
    raise RuntimeError(f"TFF's worker binary is missing: {path}")
  return path


def free_port() -> int:
  """A port nothing listens on now (the worker binds it a moment later; a lost race
  shows as a worker that exits at once, and start() then tries another port)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def accepts_connections(host: str, port: int, timeout: float = 1.0) -> bool:
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
  _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclasses.dataclass
class Worker:
  address: str
  process: Optional[subprocess.Popen] = None  # None: a worker this process did not start

  @property
  def pid(self) -> Optional[int]:
    return self.process.pid if self.process else None

  def exited(self) -> bool:
    """True once a worker started here has ended (always False for others: their
    liveness is probed over gRPC)."""
    return self.process is not None and self.process.poll() is not None

  def describe(self) -> str:
    return f"{self.address} (pid {self.pid})" if self.process else self.address


class WorkerPool:
  """The workers of one run: started here (`start`) or given (`connect`)."""

  def __init__(self, workers: Sequence[Worker]):
    self.workers = list(workers)

  @classmethod
  def connect(cls, addresses: Sequence[str]) -> "WorkerPool":
    return cls([Worker(address) for address in addresses])

  @classmethod
  def start(cls, count: int, binary: Optional[str] = None,
            startup_seconds: float = STARTUP_SECONDS) -> "WorkerPool":
    """Starts `count` workers and waits until each accepts connections."""
    binary = binary or worker_binary_path()
    pool = cls([])
    try:
      for _ in range(count):
        pool.workers.append(_start_worker(binary, startup_seconds))
    except BaseException:
      pool.close()
      raise
    return pool

  @property
  def addresses(self) -> List[str]:
    return [w.address for w in self.workers]

  def started_here(self) -> List[Worker]:
    return [w for w in self.workers if w.process is not None]

  def close(self, grace_seconds: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, to every worker started here; waits for each."""
    mine = [w.process for w in self.started_here() if w.process.poll() is None]
    for process in mine:
      process.terminate()
    deadline = time.time() + grace_seconds
    for process in mine:
      try:
        process.wait(timeout=max(0.0, deadline - time.time()))
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

  def __enter__(self) -> "WorkerPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _start_worker(binary: str, startup_seconds: float, attempts: int = 3) -> Worker:
  for _ in range(attempts):
    port = free_port()
    # Its output is dropped: a worker holding the run's stdout would keep a caller
    # reading it waiting (docs/design.md). Same process group as the run, so Ctrl-C in a
    # terminal reaches it too.
    process = subprocess.Popen(
        [binary, f"--port={port}", "--max_concurrent_computation_calls=-1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent)
    deadline = time.time() + startup_seconds
    while time.time() < deadline and process.poll() is None:
      if accepts_connections("127.0.0.1", port, timeout=0.5):
        return Worker(f"localhost:{port}", process)
      time.sleep(0.1)
    if process.poll() is None:  # alive but deaf: give up on it
      process.kill()
      process.wait()
      raise RuntimeError(f"a TFF worker on port {port} did not accept connections within "
                         f"{startup_seconds:g} s")
  raise RuntimeError(f"could not start a TFF worker ({binary}) after {attempts} tries")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`python -m federated.workers [--port P]`: this process becomes one TFF worker.

  What a worker pod runs (kubeflow/federated-workers.yaml): the binary is found in the
  installed TFF wheel, so the image needs no path of its own, and exec keeps the process
  id, so the pod's SIGTERM reaches the worker itself.
  """
  import argparse  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(prog="federated.workers", description=main.__doc__.split(
      "\n\n")[0])
  parser.add_argument("--port", type=int, default=DEFAULT_WORKER_PORT)
  args = parser.parse_args(argv)
  binary = worker_binary_path()
  os.execv(binary, [binary, f"--port={args.port}", "--max_concurrent_computation_calls=-1"])
  return 1  # not reached


if __name__ == "__main__":
  raise SystemExit(main())
