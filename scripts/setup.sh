#!/usr/bin/env bash
# Creates the two runtimes from the lock files, idempotently:
#   .venv            pipeline runtime (TFX 1.16, TF 2.16, TF Privacy, Beam) + clinical-dp
#   .venv-federated  federated runtime (TensorFlow Federated 0.87, TF 2.14)
# A runtime whose lock file, set-up script and setup.py are unchanged since its last
# successful set-up is left alone, so a repeat run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

fingerprint() { cat "$@" scripts/setup.sh setup.py | sha256sum | cut -d' ' -f1; }

up_to_date() {  # venv stamp
  [[ -x "$1/bin/python" && -f "$1/.clinical-dp-stamp" && "$(cat "$1/.clinical-dp-stamp")" == "$2" ]]
}

quiet_pip() {  # the machine's pip config names local indexes that may be absent
  "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || return "${PIPESTATUS[0]}"
}

PIPELINE_STAMP="$(fingerprint requirements/pipeline.lock)"
if up_to_date .venv "$PIPELINE_STAMP"; then
  echo "setup: .venv is up to date"
else
  echo "setup: creating the pipeline runtime in .venv (TFX 1.16, TF 2.16; a few minutes the first time)"
  start=$SECONDS
  rm -f .venv/.clinical-dp-stamp
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  quiet_pip .venv/bin/python -m pip install -q pip==24.2 setuptools==75.8.0
  # TFX 1.16 declares Python < 3.11 but its compiled dependencies ship cp311 wheels
  # (see docs/design.md); the lock is complete, so no resolution is needed.
  quiet_pip .venv/bin/python -m pip install -q --no-deps --ignore-requires-python \
    -r requirements/pipeline.lock
  quiet_pip .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$PIPELINE_STAMP" > .venv/.clinical-dp-stamp
  echo "setup: .venv ready in $((SECONDS - start)) s"
fi

FEDERATED_STAMP="$(fingerprint requirements/federated.lock requirements/federated-overrides.txt)"
if up_to_date .venv-federated "$FEDERATED_STAMP"; then
  echo "setup: .venv-federated is up to date"
else
  echo "setup: creating the federated runtime in .venv-federated (TFF 0.87, TF 2.14)"
  start=$SECONDS
  rm -rf .venv-federated
  .venv/bin/uv venv -q -p "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" \
    .venv-federated
  # jaxlib 0.4.14, which TFF 0.87 pins, is not on PyPI; 0.4.13 works (docs/design.md).
  VIRTUAL_ENV="$ROOT/.venv-federated" .venv/bin/uv pip install -q --no-deps \
    --override requirements/federated-overrides.txt -r requirements/federated.lock
  # The project's pure-Python packages (spec, simulators, federated/) by path, no build.
  site="$(.venv-federated/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$ROOT" > "$site/clinical_dp_project.pth"
  echo "$FEDERATED_STAMP" > .venv-federated/.clinical-dp-stamp
  echo "setup: .venv-federated ready in $((SECONDS - start)) s"
fi
