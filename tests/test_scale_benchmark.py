"""benchmarks/scale.py reads the run's console: its patterns must match the lines the
runner and the report print (clinical_dp/console.py, components/evaluation/step_clock.py),
or its table would silently be empty."""

import logging

import pytest

from benchmarks import scale
from clinical_dp import console
from components.evaluation.step_clock import StepClock


def test_the_benchmark_reads_the_component_and_report_lines_as_they_are_printed():
  lines = []
  tracker = console.ComponentTracker(lines.append)
  for message in ("Component %s is running.", "Component %s is finished."):
    tracker.emit(logging.LogRecord("absl", logging.INFO, __file__, 1, message,
                                   ("EvaluationReport",), None))
  clock = StepClock(lines.append)
  with clock.about("released table"):
    with clock.step("utility models"):
      pass
  started, finished, step = lines
  assert scale._STARTED.match(started).group(1) == "EvaluationReport"  # pylint: disable=protected-access
  assert scale._FINISHED.match(finished).group(1) == "EvaluationReport"  # pylint: disable=protected-access
  assert scale._REPORT_STEP.match(step).group(1) == "utility models, released table"  # pylint: disable=protected-access
  assert not scale._STARTED.match(finished) and not scale._FINISHED.match(step)  # pylint: disable=protected-access


def test_slope_is_seconds_per_100k_patients():
  assert scale._slope([10_000, 100_000], [10.0, 100.0]) == pytest.approx(100.0)  # pylint: disable=protected-access
  assert scale._slope([10_000, 100_000, 1_000_000], [5.0, 50.0, 500.0]) == pytest.approx(50.0)  # pylint: disable=protected-access
  assert scale._slope([10_000], [3.0]) is None  # pylint: disable=protected-access
  assert scale._slope([10_000, 100_000], [3.0, None]) is None  # pylint: disable=protected-access
