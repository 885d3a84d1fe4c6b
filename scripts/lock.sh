#!/usr/bin/env bash
# Re-resolves both lock files from the top-level requirements (run by hand, then
# commit the locks). Uses scratch environments so the working runtimes stay as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3.11 -m venv "$scratch/pipeline"
"$scratch/pipeline/bin/pip" install -q pip==24.2
# TFX 1.16 declares Python < 3.11; without the extra pins pip backtracks for a long time.
"$scratch/pipeline/bin/pip" install -q --ignore-requires-python -r requirements/pipeline.in
"$scratch/pipeline/bin/pip" install -q --no-deps -r requirements/pipeline-nodeps.in
"$scratch/pipeline/bin/pip" freeze --exclude-editable > requirements/pipeline.lock
"$scratch/pipeline/bin/uv" venv -q -p python3.11 "$scratch/federated"
VIRTUAL_ENV="$scratch/federated" "$scratch/pipeline/bin/uv" pip install -q \
  --override requirements/federated-overrides.txt -r requirements/federated.in
VIRTUAL_ENV="$scratch/federated" "$scratch/pipeline/bin/uv" pip freeze > requirements/federated.lock
echo "lock: wrote requirements/pipeline.lock and requirements/federated.lock"
