"""Keeping a long run's resident memory near what it holds (glibc, Linux).

`clinical-dp run` runs every component in one process (LocalDagRunner), so memory a
component freed but the allocator kept counts against every later one. Two glibc
habits made the difference, measured on the report of a 100 000-patient run
(docs/benchmarks.md): with one malloc arena per thread (up to 8 per core: TensorFlow,
Beam and sklearn start many threads) freed blocks sit scattered across arenas, and free
pages inside a heap are returned to the system only on request. Limiting the arenas
lowered the report's peak from 2.43 to 2.08 GB at the same speed, and a trim after it
returned another 0.3 GB. Elsewhere (no glibc) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import signal
import threading
from typing import Optional

# mallopt's parameter number for the arena limit (glibc malloc.h).
_M_ARENA_MAX = -8
RUN_ARENAS = 2
_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


@functools.lru_cache(maxsize=1)  # find_library runs `ldconfig -p`: once per process
def _glibc() -> Optional[ctypes.CDLL]:
  name = ctypes.util.find_library("c")
  if not name:
    return None
  try:
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
  except OSError:
    return None


def limit_malloc_arenas(arenas: int = RUN_ARENAS) -> bool:
  """At most `arenas` malloc arenas for threads started from now on (call it before
  TensorFlow's import); True where glibc took the setting."""
  libc = _glibc()
  return bool(libc and libc.mallopt(_M_ARENA_MAX, arenas) == 1)


def resident_bytes() -> Optional[int]:
  """This process's resident set now (Linux /proc), or None."""
  try:
    with open("/proc/self/statm", encoding="ascii") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except (OSError, ValueError, IndexError):
    return None


def return_free_memory() -> None:
  """Collects unreachable Python objects, then hands the allocator's free pages back to
  the system (between components: what one freed no longer counts against the next).

  SIGINT and SIGTERM wait until it is done: the collection runs finalizers, and the
  run's interrupt (clinical_dp/console.py raises it from the signal handler) raised
  inside a `__del__` would be ignored by Python and the run would go on."""
  main = threading.current_thread() is threading.main_thread()
  held = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS) if main else None
  try:
    gc.collect()
    libc = _glibc()
    if libc is not None:
      libc.malloc_trim(0)
  finally:
    if held is not None:
      signal.pthread_sigmask(signal.SIG_SETMASK, held)
