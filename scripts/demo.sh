#!/usr/bin/env bash
# The main job on the embedded default data: simulate the SPRINT-like trial and run
# the pipeline on it. Outputs land under outputs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/demo}"
.venv/bin/clinical-dp simulate --kind sprint --out "$OUT/data"
# The non-private twin lets the report set the DP classifier beside it (never released).
.venv/bin/clinical-dp run --data "$OUT/data/data.csv" --spec "$OUT/data/spec.yaml" \
  --output "$OUT/run" --non-private-twin "$@"
echo "demo: outputs under $OUT: what may be shared $OUT/run/release/ (PRIVACY.md), report $OUT/run/report/report.html (not for release), federated $OUT/run/federated/, summary $OUT/run/run_summary.json"
