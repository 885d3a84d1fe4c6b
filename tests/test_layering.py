"""The package folders form floors, and nothing imports upward.

Ground floor first: shared services (clinical_dp/: spec, validation, simulators, names,
files, the console, the report format), then the trainers, the federated runtime, the
TFX components, the pipeline and its runners, Kubeflow, and on top the command line
(cli/). A module may import its own package and any floor below it, never one above:
so a floor can be read, tested and changed knowing only what is under it. An AST walk,
no import: every import statement, at module level or inside a function, counts.
Tests, benchmarks and scripts stand outside the house and may import anything.
"""

import ast
import os
from typing import Dict, Iterator, List, Set, Tuple

from tests.conftest import PROJECT_ROOT

FLOORS = ("clinical_dp", "trainers", "federated", "components", "pipelines", "kubeflow", "cli")
FLOOR = {package: floor for floor, package in enumerate(FLOORS)}


def _modules(package: str) -> Iterator[str]:
  for directory, _, files in os.walk(os.path.join(PROJECT_ROOT, package)):
    for name in sorted(files):
      if name.endswith(".py"):
        yield os.path.join(directory, name)


def _imported_packages(path: str) -> Iterator[Tuple[int, str]]:
  """(line, top-level project package) of each absolute import in the file."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module]
    else:
      continue
    for name in names:
      top = name.split(".")[0]
      if top in FLOOR:
        yield node.lineno, top


def _edges() -> Tuple[Dict[str, Set[str]], List[str]]:
  """Package -> the other packages it imports, and every upward import found."""
  edges: Dict[str, Set[str]] = {package: set() for package in FLOORS}
  upward = []
  for package in FLOORS:
    for path in _modules(package):
      for line, imported in _imported_packages(path):
        if imported == package:
          continue
        edges[package].add(imported)
        if FLOOR[imported] > FLOOR[package]:
          upward.append(f"{os.path.relpath(path, PROJECT_ROOT)}:{line} imports {imported} "
                        f"(floor {FLOOR[imported]}, above {package}'s {FLOOR[package]})")
  return edges, upward


def test_every_package_folder_has_a_floor():
  """A new top-level package must be given its floor here, else it escapes the check."""
  ignored = {"tests", "benchmarks", "scripts", "requirements", "outputs", "docs"}
  packages = {name for name in os.listdir(PROJECT_ROOT)
              if os.path.isfile(os.path.join(PROJECT_ROOT, name, "__init__.py"))}
  assert packages - ignored == set(FLOORS)


def test_no_import_runs_upward():
  _, upward = _edges()
  assert not upward, "\n".join(upward)


def test_no_cycle_among_the_package_folders():
  edges, _ = _edges()
  state: Dict[str, int] = {}  # 1: on the current path, 2: done

  def cycle_from(package: str, path: List[str]) -> List[str]:
    state[package] = 1
    for imported in sorted(edges[package]):
      if state.get(imported) == 1:
        return path + [package, imported]
      if imported not in state:
        found = cycle_from(imported, path + [package])
        if found:
          return found
    state[package] = 2
    return []

  for package in FLOORS:
    if package not in state:
      cycle = cycle_from(package, [])
      assert not cycle, " -> ".join(cycle)


def test_the_check_sees_an_upward_import(tmp_path):
  """The walk finds imports inside functions too (the lazy ones of the CLI and runners)."""
  module = tmp_path / "lazy.py"
  module.write_text("import os\n\ndef f():\n  from pipelines.runner import run_pipeline\n"
                    "  import kubeflow.config\n  from . import sibling\n")
  assert list(_imported_packages(str(module))) == [(4, "pipelines"), (5, "kubeflow")]
