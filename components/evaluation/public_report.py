"""`clinical-dp report --public RUN_DIR`: a report that may be published.

It reads RUN_DIR/release/ and nothing else (the synthetic table and the privacy records
that ReleasePusher wrote), so everything in it is post-processing of DP outputs: the
synthetic table's own statistics and the guarantees. The pipeline's report compares with
the real patients and is for the data owner only. Pure pandas: no TensorFlow.
"""

import html
import json
import os
from typing import Dict, Tuple

import pandas as pd

from clinical_dp.files import write_text_atomically
from clinical_dp.release_layout import RELEASED_SYNTHETIC_CSV, RELEASE_DIR, RELEASE_PRIVACY_JSON
from components.evaluation.html_page import STYLE, table
from components.evaluation.report_html import REPORT_HTML, REPORT_JSON

PUBLIC_REPORT_DIR = "public_report"
PUBLIC_NOTE = ("May be published. Computed from the released artifacts alone (the synthetic "
               "table and the privacy records in release/), never from the real patients: "
               "every number here is post-processing of differentially private outputs.")


class NoReleaseError(ValueError):
  """The run directory has no complete release to report on."""


def read_release(run_dir: str) -> Tuple[pd.DataFrame, Dict]:
  release = os.path.join(run_dir, RELEASE_DIR)
  paths = [os.path.join(release, name) for name in (RELEASED_SYNTHETIC_CSV, RELEASE_PRIVACY_JSON)]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise NoReleaseError(f"{run_dir}: no complete release (missing {', '.join(missing)}); "
                         "run the pipeline to the end first")
  with open(paths[1], encoding="utf-8") as f:
    return pd.read_csv(paths[0]), json.load(f)


def column_statistics(table: pd.DataFrame) -> Dict[str, Dict]:
  """Per column: quantiles and moments of numbers, shares of categories."""
  result = {}
  for column in table.columns:
    values = table[column].dropna()
    if pd.api.types.is_numeric_dtype(values):
      q = values.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).tolist()
      result[column] = {"kind": "numeric", "count": int(len(values)),
                        "mean": float(values.mean()), "sd": float(values.std(ddof=0)),
                        "min": q[0], "q25": q[1], "median": q[2], "q75": q[3], "max": q[4]}
    elif values.nunique() <= min(50, len(values) - 1):  # ids: one per row, not listed
      shares = values.astype(str).value_counts(normalize=True).sort_index()
      result[column] = {"kind": "categorical", "count": int(len(values)),
                        "shares": {k: float(v) for k, v in shares.items()}}
  return result


def public_report(run_dir: str) -> Dict:
  table, privacy = read_release(run_dir)
  numeric = table.select_dtypes("number")
  correlation = numeric.corr(method="spearman") if numeric.shape[1] > 1 else pd.DataFrame()
  return {
      "public": PUBLIC_NOTE,
      "synthetic_patients": int(len(table)),
      "columns": column_statistics(table),
      "synthetic_spearman_correlation": {
          c: {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}
          for c, row in correlation.to_dict(orient="index").items()},
      "privacy": privacy,
  }


def _table(header, rows) -> str:
  """The pipeline report's table, its cells escaped here."""
  return table([html.escape(str(h)) for h in header],
               [[html.escape(str(c)) for c in row] for row in rows])


def _number(value) -> str:
  return "n/a" if value is None else f"{value:.4g}"


def render_html(report: Dict) -> str:
  together = report["privacy"]["all_released_together"]
  numeric = [(c, s) for c, s in report["columns"].items() if s["kind"] == "numeric"]
  categorical = [(c, s) for c, s in report["columns"].items() if s["kind"] == "categorical"]
  guarantees = [[name, _number(r["epsilon"]), f"{r['delta']:g}",
                 r.get("relation") or "not stated", r["unit"], r["accountant"],
                 r.get("sampling") or "not stated"]
                for name, r in report["privacy"]["artifacts"].items()]
  parts = [
      "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
      "<title>clinical-dp public report</title>",
      f"<style>{STYLE}</style></head><body>",
      f"<p><strong>{html.escape(report['public'])}</strong></p>",
      "<h1>Synthetic data release: its own statistics and its privacy guarantees</h1>",
      f"<p>{report['synthetic_patients']} synthetic patients. Released together: epsilon "
      f"{together['epsilon']:.3f} at delta {together['delta']:g} per patient, neighbours: "
      f"{html.escape(together.get('relation') or 'relation not stated')} "
      f"({html.escape(together['composition'])}).</p>",
      "<h2>Privacy records</h2>",
      _table(["artifact", "epsilon", "delta", "relation", "unit", "accountant", "sampling"],
             guarantees),
      "<h2>Numeric columns</h2>",
      _table(["column", "mean", "sd", "min", "q25", "median", "q75", "max"],
             [[c] + [_number(s[k]) for k in ("mean", "sd", "min", "q25", "median", "q75",
                                               "max")] for c, s in numeric]),
      "<h2>Categorical columns (shares)</h2>",
      _table(["column", "shares"], [[c, ", ".join(f"{k} {v:.3f}" for k, v in s["shares"].items())]
                                    for c, s in categorical]),
      "</body></html>"]
  return "\n".join(parts)


def write_public_report(run_dir: str, output: str = "") -> Tuple[str, str]:
  """report.json and report.html under `output` (default RUN_DIR/public_report)."""
  report = public_report(run_dir)
  output = output or os.path.join(run_dir, PUBLIC_REPORT_DIR)
  json_path = write_text_atomically(os.path.join(output, REPORT_JSON),
                                    json.dumps(report, indent=2, allow_nan=False))
  html_path = write_text_atomically(os.path.join(output, REPORT_HTML), render_html(report))
  return json_path, html_path
