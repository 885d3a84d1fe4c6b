"""federated.json and a self-contained federated.html (tables and inline SVG)."""

from __future__ import annotations

import html
import json
import math
from typing import Dict, List

from clinical_dp.report_format import compact_cell, json_safe

_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


def dumps(results: Dict) -> str:
  return json.dumps(json_safe(results), indent=2, sort_keys=False, allow_nan=False)


def _curve_svg(algorithms: Dict[str, Dict], width=640, height=300) -> str:
  points = [(a, r["eval_rounds"], r["auroc_per_round"]) for a, r in algorithms.items()]
  values = [v for _, _, vs in points for v in vs if v is not None]
  max_round = max([max(rs) for _, rs, _ in points if rs] + [1])
  low = min(values + [0.5]) if values else 0.5
  low = math.floor(low * 20) / 20
  pad = 40

  def xy(rnd, value):
    x = pad + (width - 2 * pad) * rnd / max_round
    y = height - pad - (height - 2 * pad) * (value - low) / max(1e-9, 1.0 - low)
    return f"{x:.1f},{y:.1f}"

  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="eval AUROC per round">',
           f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
           'fill="none" stroke="#999"/>',
           f'<text x="{pad}" y="{pad - 8}" font-size="11">eval AUROC ({low:.2f} to 1)</text>',
           f'<text x="{width - pad}" y="{height - 10}" font-size="11" text-anchor="end">'
           f'round (max {max_round})</text>']
  for i, (name, rounds, curve) in enumerate(points):
    line = " ".join(xy(r, v) for r, v in zip(rounds, curve) if v is not None)
    colour = _COLOURS[i % len(_COLOURS)]
    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                 f'points="{line}"/>')
    parts.append(f'<text x="{width - pad + 4}" y="{pad + 14 * (i + 1)}" font-size="10" '
                 f'fill="{colour}">{html.escape(name)}</text>')
  parts.append("</svg>")
  return "".join(parts)


def _tradeoff_svg(algorithms: Dict[str, Dict], width=640, height=300) -> str:
  """Test AUROC against epsilon (log scale); non-private runs sit at the right edge."""
  pad = 50
  finite = [r["epsilon"] for r in algorithms.values()
            if r["epsilon"] not in (None, math.inf) and r["epsilon"] > 0]
  lo, hi = (min(finite), max(finite)) if finite else (1.0, 10.0)
  lo, hi = math.log10(lo) - 0.3, math.log10(hi) + 0.6
  aurocs = [r["auroc"] for r in algorithms.values() if r["auroc"] is not None]
  a_lo = math.floor(min(aurocs + [0.9]) * 20) / 20
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'role="img" aria-label="test AUROC against epsilon">',
           f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
           'fill="none" stroke="#999"/>',
           f'<text x="{pad}" y="{pad - 8}" font-size="11">test AUROC ({a_lo:.2f} to 1) '
           'against epsilon (log scale; right edge: not private)</text>']
  for i, (name, r) in enumerate(algorithms.items()):
    if r["auroc"] is None:
      continue
    eps = r["epsilon"]
    fx = 1.0 if eps in (None, math.inf) else (math.log10(max(eps, 1e-6)) - lo) / (hi - lo)
    fx = max(0.0, fx)
    x = pad + (width - 2 * pad) * min(1.0, fx)
    y = height - pad - (height - 2 * pad) * (r["auroc"] - a_lo) / max(1e-9, 1 - a_lo)
    colour = _COLOURS[i % len(_COLOURS)]
    label = f"{name} ({'inf' if eps in (None, math.inf) else f'{eps:.2f}'})"
    parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
                 f'<text x="{x - 6:.1f}" y="{y - 7 - 10 * (i % 2):.1f}" font-size="10" '
                 f'text-anchor="end" fill="{colour}">{html.escape(label)}</text>')
  parts.append("</svg>")
  return "".join(parts)


def render_html(results: Dict) -> str:
  algorithms = results["algorithms"]
  rows: List[str] = []
  for name, r in algorithms.items():
    rows.append("<tr>" + "".join(f"<td>{compact_cell(v)}</td>" for v in (
        name, r["auroc"], r["accuracy"],
        "not private" if r["epsilon"] in (None, math.inf) else r["epsilon"], r["delta"],
        r["privacy_unit"], r["rounds"], r["wall_seconds"], r["seconds_per_round"])) + "</tr>")
  sites = results["sites"]
  site_rows = []
  for name, r in algorithms.items():
    site_rows.append(f"<tr><td>{html.escape(name)}</td>" + "".join(
        f"<td>{compact_cell(r['per_site'][s]['auroc'], 3)}</td>" for s in sites) + "</tr>")
  config = html.escape(json.dumps(results["config"], indent=1))
  return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Federated DP comparison</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>Federated learning with differential privacy: {html.escape(results['dataset']['spec'])}</h1>
<p>{len(sites)} sites; test metrics on the held-out patient split (pooled and per site);
curves on the eval split. Epsilon at the stated delta, RDP accountant, for the stated unit;
"not private" rows are references that no site could run.</p>
<h2>Comparison</h2>
<table><tr><th>algorithm</th><th>test AUROC</th><th>test accuracy</th><th>epsilon</th>
<th>delta</th><th>privacy unit</th><th>rounds</th><th>wall s</th><th>s / round</th></tr>
{''.join(rows)}</table>
<h2>Privacy against utility</h2>{_tradeoff_svg(algorithms)}
<h2>AUROC per round (eval split)</h2>{_curve_svg(algorithms)}
<h2>Test AUROC per site</h2>
<table><tr><th>algorithm</th>{''.join(f'<th>{html.escape(s)}</th>' for s in sites)}</tr>
{''.join(site_rows)}</table>
<h2>Configuration</h2><pre>{config}</pre>
</body></html>
"""
