"""components/early_start.py: the federated child started once ExampleGen has written the
examples (or at the gate), adopted in its turn."""

import os
import sys
import time

import pytest

from clinical_dp.process_tree import running
from components import early_start

# A stand-in for federated.simulate: prints, then writes its result into --output.
_WRITES = ("import os, sys, time; print('first line', flush=True); time.sleep(float(sys.argv[1]));"
           " os.makedirs(sys.argv[4]);"
           " open(os.path.join(sys.argv[4], 'federated.json'), 'w').write('{}')")


def _command(examples, output, seconds=0.0):
  return [sys.executable, "-c", _WRITES, str(seconds), examples, "--output", output]


@pytest.fixture(autouse=True)
def _nothing_left():
  yield
  early_start.clear()


def test_the_gate_starts_the_planned_child_and_its_step_adopts_it(tmp_path):
  early_start.plan(lambda examples, staging: _command(examples, staging), str(tmp_path))
  early_start.gate_passed("examples-uri")
  early_start.gate_passed("examples-uri")  # once: the plan is used up
  assert early_start.adopt(_command("other-uri", "x")) is None  # another command: not ours
  child = early_start.adopt(_command("examples-uri", str(tmp_path / "artifact")))
  assert child is not None and early_start.adopt(child.command) is None  # adopted once
  completed = early_start.finish(child, str(tmp_path / "artifact"))
  assert completed.returncode == 0 and child.lines == ["first line"]
  assert os.listdir(tmp_path / "artifact") == ["federated.json"]
  assert sorted(os.listdir(tmp_path)) == ["artifact"]  # the staging directory is gone


def test_example_gen_finishing_starts_the_child_on_its_newest_examples(tmp_path):
  root = tmp_path / "tfx" / "CsvExampleGen" / "examples"
  for execution, splits in (("3", ["Split-train"]), ("12", ["Split-train", "Split-eval"]),
                            ("15", [])):  # 15: made, never written (no split)
    for split in splits or [""]:
      os.makedirs(root / execution / split, exist_ok=True)
  early_start.plan(lambda examples, staging: _command(examples, staging), str(tmp_path),
                   ("CsvExampleGen", str(root)))
  early_start.component_finished("StatisticsGen")  # not the planned ExampleGen
  assert early_start.adopt(_command(str(root / "12"), "x")) is None
  early_start.component_finished("CsvExampleGen")
  early_start.gate_passed(str(root / "12"))  # already started: the gate starts no other
  assert early_start.adopt(_command(str(root / "3"), "x")) is None
  child = early_start.adopt(_command(str(root / "12"), str(tmp_path / "artifact")))
  assert child is not None and early_start.adopt(child.command) is None
  assert early_start.finish(child, str(tmp_path / "artifact")).returncode == 0


def test_without_examples_at_example_gen_the_gate_starts_the_child(tmp_path):
  early_start.plan(lambda examples, staging: _command(examples, staging), str(tmp_path),
                   ("CsvExampleGen", str(tmp_path / "no-such-directory")))
  early_start.component_finished("CsvExampleGen")
  early_start.gate_passed("examples-uri")
  child = early_start.adopt(_command("examples-uri", str(tmp_path / "artifact")))
  assert child is not None
  assert early_start.finish(child, str(tmp_path / "artifact")).returncode == 0


def test_without_a_plan_the_gate_starts_nothing(tmp_path):
  early_start.gate_passed("examples-uri")
  assert early_start.adopt(_command("examples-uri", str(tmp_path))) is None


def test_a_child_never_adopted_is_ended_and_its_staging_removed(tmp_path):
  early_start.plan(lambda examples, staging: _command(examples, staging, seconds=120),
                   str(tmp_path))
  early_start.gate_passed("examples-uri")
  child = early_start._children[0]  # pylint: disable=protected-access
  for _ in range(100):
    if child.session is not None:
      break
    time.sleep(0.05)
  assert running(child.session)
  started = time.time()
  early_start.clear()  # the run failed, or was interrupted, before FederatedStep's turn
  assert time.time() - started < 20 and not running(child.session)
  assert os.listdir(tmp_path) == []


def test_a_failed_child_leaves_nothing_in_the_artifact(tmp_path):
  early_start.plan(lambda examples, staging: [sys.executable, "-c", "raise SystemExit(3)",
                                              "--output", staging], str(tmp_path))
  early_start.gate_passed("examples-uri")
  child = early_start.adopt([sys.executable, "-c", "raise SystemExit(3)", "--output", "a"])
  completed = early_start.finish(child, str(tmp_path / "artifact"))
  assert completed.returncode == 3
  assert os.listdir(tmp_path) == []
