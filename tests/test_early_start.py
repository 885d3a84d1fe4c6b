"""components/early_start.py: the federated child started on the prepared input, once
ExampleGen has written the examples, or at the gate, and adopted in its turn."""

import os
import sys
import time

import pytest

from clinical_dp.process_tree import running
from components import early_start
from pipelines import component_ids

STEP = early_start.FEDERATED_STEP


def test_the_adopters_are_named_as_the_pipeline_names_them():
  assert early_start.FEDERATED_STEP == component_ids.FEDERATED_STEP_ID
  assert early_start.EVALUATION_REPORT == component_ids.REPORT_ID

# A stand-in for federated.simulate: prints, then writes its result into --output.
_WRITES = ("import os, sys, time; print('first line', flush=True); time.sleep(float(sys.argv[1]));"
           " os.makedirs(sys.argv[-1]);"
           " open(os.path.join(sys.argv[-1], 'federated.json'), 'w').write('{}')")


def _command(source, output, seconds=0.0):
  return [sys.executable, "-c", _WRITES, str(seconds), *source, "--output", output]


def _step(output):
  """FederatedStep's command on an input, writing into `output` (adopt's command_for)."""
  return lambda source: _command(source, output)


def _plan(tmp_path, example_gen=None, seconds=0.0):
  early_start.plan(STEP, lambda source, staging: _command(source, staging, seconds),
                   str(tmp_path), example_gen)


@pytest.fixture(autouse=True)
def _nothing_left():
  yield
  early_start.clear()


def test_the_gate_starts_the_planned_child_and_its_step_adopts_it(tmp_path):
  _plan(tmp_path)
  early_start.gate_passed("examples-uri")
  early_start.gate_passed("examples-uri")  # once: the plan is used up
  assert early_start.adopt(STEP, _step("x"), "other-uri") is None  # other rows: not ours
  assert early_start.adopt(STEP, lambda source: _command(source, "x", 1), "examples-uri") is None
  child = early_start.adopt(STEP, _step(str(tmp_path / "artifact")), "examples-uri")
  assert child is not None and early_start.adopt(STEP, _step("x"), "examples-uri") is None  # once
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
  _plan(tmp_path, ("CsvExampleGen", str(root)))
  early_start.component_finished("StatisticsGen")  # not the planned ExampleGen
  assert early_start.adopt(STEP, _step("x"), str(root / "12")) is None
  early_start.component_finished("CsvExampleGen")
  early_start.gate_passed(str(root / "12"))  # already started: the gate starts no other
  assert early_start.adopt(STEP, _step("x"), str(root / "3")) is None
  child = early_start.adopt(STEP, _step(str(tmp_path / "artifact")), str(root / "12"))
  assert child is not None and early_start.adopt(STEP, _step("x"), str(root / "12")) is None
  assert early_start.finish(child, str(tmp_path / "artifact")).returncode == 0


def test_the_child_on_the_prepared_input_is_adopted_for_the_examples_made_from_it(tmp_path):
  _plan(tmp_path, ("CsvExampleGen", str(tmp_path / "examples")))
  prepared = ["--prepared", "input/data.csv", "--split-buckets", "train=8,eval=1,test=1"]
  early_start.prepared_written(STEP, prepared, "split:single_split,num_files:1,total_bytes:10")
  early_start.component_finished("CsvExampleGen")  # already started: no other
  early_start.gate_passed("examples-uri")
  assert len(early_start._children) == 1  # pylint: disable=protected-access
  # Examples made from another file, or no fingerprint at all: other rows.
  assert early_start.adopt(STEP, _step("x"), "examples-uri",
                           "split:single_split,num_files:1,total_bytes:11") is None
  assert early_start.adopt(STEP, _step("x"), "examples-uri") is None
  # The same rows, but another command (more rounds, say): not the step's child.
  assert early_start.adopt(STEP, lambda source: _command(source, "x", 1), "examples-uri",
                           "split:single_split,num_files:1,total_bytes:10") is None
  child = early_start.adopt(STEP, _step(str(tmp_path / "artifact")), "examples-uri",
                            "split:single_split,num_files:1,total_bytes:10")
  assert child is not None and child.source == prepared
  assert child.command[-4:-2] == prepared[-2:]  # it ran on the prepared input
  assert early_start.finish(child, str(tmp_path / "artifact")).returncode == 0
  assert os.listdir(tmp_path / "artifact") == ["federated.json"]


def test_without_examples_at_example_gen_the_gate_starts_the_child(tmp_path):
  _plan(tmp_path, ("CsvExampleGen", str(tmp_path / "no-such-directory")))
  early_start.component_finished("CsvExampleGen")
  early_start.gate_passed("examples-uri")
  child = early_start.adopt(STEP, _step(str(tmp_path / "artifact")), "examples-uri")
  assert child is not None
  assert early_start.finish(child, str(tmp_path / "artifact")).returncode == 0


def test_without_a_plan_the_gate_starts_nothing(tmp_path):
  early_start.gate_passed("examples-uri")
  assert early_start.adopt(STEP, _step(str(tmp_path)), "examples-uri") is None


def test_a_child_never_adopted_is_ended_and_its_staging_removed(tmp_path):
  _plan(tmp_path, seconds=120)
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
  fails = lambda source, output: [sys.executable, "-c", "raise SystemExit(3)", *source,
                                  "--output", output]
  early_start.plan(STEP, fails, str(tmp_path))
  early_start.gate_passed("examples-uri")
  child = early_start.adopt(STEP, lambda source: fails(source, "a"), "examples-uri")
  completed = early_start.finish(child, str(tmp_path / "artifact"))
  assert completed.returncode == 3
  assert os.listdir(tmp_path) == []


def test_each_adopter_adopts_only_its_own_child(tmp_path):
  """The federated child and the report's references, planned side by side, start at
  ExampleGen's end and are adopted each by its own component."""
  root = tmp_path / "examples"
  os.makedirs(root / "4" / "Split-train")
  _plan(tmp_path, ("CsvExampleGen", str(root)))
  early_start.plan(early_start.EVALUATION_REPORT,
                   lambda source, staging: _command(source, staging, 0.5), str(tmp_path),
                   ("CsvExampleGen", str(root)))
  early_start.component_finished("CsvExampleGen")
  assert sorted(c.adopter for c in early_start._children) == [  # pylint: disable=protected-access
      "EvaluationReport", STEP]
  report = lambda source: _command(source, "x", 0.5)
  assert early_start.adopt(STEP, report, str(root / "4")) is None  # the report's command
  child = early_start.adopt(early_start.EVALUATION_REPORT, report, str(root / "4"))
  assert child is not None and child.adopter == "EvaluationReport"
  assert early_start.finish(child, str(tmp_path / "report")).returncode == 0
  assert early_start.adopt(STEP, _step(str(tmp_path / "step")), str(root / "4")) is not None
