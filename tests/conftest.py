"""Shared fixtures: small simulated tables and a way to call the CLI as a user would."""

import clinical_dp  # noqa: F401  (selects Keras 2 before any test imports TensorFlow)

import hashlib
import os
import subprocess
import sys

import pytest

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, env=None, timeout=900):
  """Runs `clinical-dp ARGS` in a child process; returns the CompletedProcess."""
  return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)],
                        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env,
                        timeout=timeout)


def file_digest(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _simulated(tmp_path_factory, kind):
  out = tmp_path_factory.mktemp(kind)
  result = run_cli("simulate", "--kind", kind, "--out", out, "--patients", 1500,
                   "--sites", 5 if kind == "sprint" else 4, "--seed", 7)
  assert result.returncode == 0, result.stderr
  return out


@pytest.fixture(scope="session")
def sprint_dir(tmp_path_factory):
  return _simulated(tmp_path_factory, "sprint")


@pytest.fixture(scope="session")
def icu_dir(tmp_path_factory):
  return _simulated(tmp_path_factory, "icu")
