"""The federated runtime (.venv-federated) is set up and sees the project's shared code."""

import os
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT

FEDERATED_PYTHON = os.path.join(PROJECT_ROOT, ".venv-federated", "bin", "python")

PROBE = """
import tensorflow as tf, tensorflow_federated as tff, tensorflow_privacy
from clinical_dp.simulators import simulate
frame, spec = simulate("icu", patients=50, sites=2)
print(tff.__version__, tf.__version__, spec.site_column, frame[spec.site_column].nunique())
"""


@pytest.mark.skipif(not os.path.exists(FEDERATED_PYTHON), reason="run scripts/setup.sh first")
def test_federated_runtime_imports_tff_and_the_project():
  # A session of its own, so nothing the import starts can outlive the test.
  result = subprocess.run([FEDERATED_PYTHON, "-c", PROBE], capture_output=True, text=True,
                          timeout=300, start_new_session=True, cwd="/")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split()[-4:] == ["0.87.0", "2.14.1", "hospital", "2"]
