"""Progress lines with elapsed seconds for the report's sub-steps.

On a large table the report runs for minutes; one line as each sub-step ends
("  EvaluationReport: utility models, released table: 42 s") shows where the time goes,
on the console while it runs and in report.json afterwards (`step_seconds`).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, Iterator


class StepClock:
  """Times named sub-steps, says each one's seconds through `log` as it ends and keeps
  them, in order, in `seconds`. A name used twice adds up. Inside `about(subject)` a
  step is named "step, subject" (the same scoring steps for each table scored)."""

  def __init__(self, log: Callable[[str], None], prefix: str = "  EvaluationReport: "):
    self._log = log
    self._prefix = prefix
    self._subject = ""
    self.seconds: Dict[str, float] = {}

  @contextlib.contextmanager
  def about(self, subject: str) -> Iterator[None]:
    previous, self._subject = self._subject, subject
    try:
      yield
    finally:
      self._subject = previous

  @contextlib.contextmanager
  def step(self, name: str) -> Iterator[None]:
    name = f"{name}, {self._subject}" if self._subject else name
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 2)
    self._log(f"{self._prefix}{name}: {elapsed:.0f} s")


def silent() -> StepClock:
  """A clock that says nothing (callers that time nothing, e.g. the benchmarks)."""
  return StepClock(lambda _: None)
