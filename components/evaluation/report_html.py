"""report.html: headline verdicts, then utility, fidelity, attacks, disclosure and the
full privacy record, for a clinician and a privacy officer.

Every number says what it is measured on; the verdicts come from
components/evaluation/verdicts.py and the page's look from html_page.py.
"""

from __future__ import annotations

import html
import json
from typing import Dict, List, Optional

from clinical_dp.report_format import cell
from components.evaluation.html_page import STYLE, image, table
from components.evaluation.utility import MODEL_NAMES, MODELS

# The report's two files, in DIR/report/ (the pipeline's) and DIR/public_report/.
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

# The report's first words: report.json's first key, report.html's first lines.
NOT_FOR_RELEASE = (
    "Not for release. This report is computed from the real patients and is not "
    "differentially private: its real-data trajectories, correlations, distances to real "
    "patients, per-site and per-slice results and attack scores describe real patients. It "
    "is for the data owner only. What may be shared is the run's release/ folder (its "
    "PRIVACY.md states every guarantee).")

def _ci(result: Dict, key: str) -> str:
  interval = result.get(f"{key}_ci")
  value = result.get(key)
  if value is None:
    reason = result.get(f"{key}_reason") or result.get("error")
    return "n/a" + (f" <small>({html.escape(reason)})</small>" if reason else "")
  return f"{value:.3f}" + (f" <small>({interval[0]:.3f}&ndash;{interval[1]:.3f})</small>"
                           if interval else "")


def _utility_section(report: Dict, plots: Dict[str, bytes]) -> str:
  utility = report["utility"]
  ratios = utility["synthetic_relative_to_real"]
  rows = [[MODEL_NAMES[m], _ci(utility["real"][m], "auroc"), _ci(utility["synthetic"][m], "auroc"),
           cell(ratios[m], 2), _ci(utility["real"][m], "accuracy"),
           _ci(utility["synthetic"][m], "accuracy")] for m in MODELS]
  control = utility["shuffled_label_control"]
  parts = [
      "<h2>Utility: train on synthetic, test on real</h2>",
      f"<p>Each model is trained once on the real training patients and once on the "
      f"synthetic patients, then tested on the same {utility['test_patients']} rows of real "
      "test patients that no training, tuning or selection has seen. Brackets: 95% "
      "bootstrap intervals over those rows.</p>",
      table(["model", "AUROC, trained on real", "AUROC, trained on synthetic",
             "synthetic / real", "accuracy, real", "accuracy, synthetic"], rows),
      f"<p><b>Shuffled-label control</b> (logistic regression on the synthetic patients with "
      f"their labels permuted): AUROC {_ci(control, 'auroc')}. It must be near 0.5; if it "
      "were not, the evaluation itself would be leaking labels.</p>",
      image(plots.get("utility"), "AUROC by model, real vs synthetic training data"),
      _complete_case(utility), _baseline_utility(report)]
  models = utility.get("dp_models", {})
  if models:
    rows = []
    for name, result in models.items():
      slices = result.get("slices", {})
      for slice_name in sorted(slices, key=lambda k: (k != "overall", k)):
        metrics = slices[slice_name]
        rows.append([html.escape(name), html.escape(slice_name), cell(metrics.get("auroc")),
                     cell(metrics.get("accuracy")), cell(metrics.get("examples"), 0)])
    parts += ["<h3>The DP classifier beside its non-private twin (TFX Evaluator, TFMA)</h3>",
              "<p>On the same real test split, overall and by slice.</p>",
              table(["model", "slice", "AUROC", "accuracy", "test rows"], rows)]
  return "\n".join(parts)


def _complete_case(utility: Dict) -> str:
  """With missing values modeled: the real-data models on the complete training rows only,
  beside the same models on all of them, and how the models see a hole."""
  case = utility.get("complete_case_real")
  if not case:
    return ""
  rows = [["real (TRTR)", f"{case['rows_all']}"]
          + [_ci(utility["real"][m], "auroc") for m in MODELS],
          ["complete-case real (TRTR)", f"{case['rows_kept']} of {case['rows_all']}"]
          + [_ci(case["models"][m], "auroc") for m in MODELS]]
  return "\n".join([
      "<h3>Complete cases only</h3>",
      f"<p>The same real-data models trained only on the {case['rows_kept']} of "
      f"{case['rows_all']} real training rows without any missing modeled cell, scored by "
      "the same code on the same full test split: what dropping incomplete patients would "
      "give. The models' encoding of "
      f"{html.escape(utility.get('missing_value_rule', 'missing values'))}.</p>",
      table(["trained on", "training rows"] + [f"AUROC, {MODEL_NAMES[m]}" for m in MODELS],
            rows)])


def _sources(report: Dict) -> List[tuple]:
  """(column heading, scored table) for the released table, then each DP baseline."""
  return [("released synthetic", report)] + [
      (f"{html.escape(b.get('name', key))} <small>(not released)</small>", b)
      for key, b in (report.get("baselines") or {}).items()]


def _baseline_utility(report: Dict) -> str:
  """AUROC ratio to real per model for the released table beside the DP baselines."""
  if not report.get("baselines"):
    return ""
  sources = _sources(report)
  rows = [[MODEL_NAMES[m], cell(report["utility"]["real"][m].get("auroc"))]
          + [cell(s["utility"]["synthetic_relative_to_real"].get(m), 2) + " <small>(AUROC "
             + _ci(s["utility"]["synthetic"][m], "auroc") + ")</small>" for _, s in sources]
          for m in MODELS]
  return "\n".join([
      "<h3>Beside simple DP baselines (not released)</h3>",
      "<p>The same models trained on tables from two simple DP generators fitted inside the "
      "report on the same training patients at the same privacy budget, never released: a DP "
      "Gaussian copula and independent DP marginals. Each cell: AUROC as a fraction of "
      "trained on real.</p>",
      table(["model", "AUROC, trained on real"] + [h for h, _ in sources], rows)])


def _draws_ci(fidelity: Dict, measure: str) -> str:
  """' (low-high)': the measure's 95% bootstrap interval over the real and synthetic rows,
  where it was drawn."""
  interval = fidelity.get("bootstrap", {}).get(f"{measure}_ci")
  return (f" <small>({interval[0]:.3f}&ndash;{interval[1]:.3f})</small>" if interval else "")


def _bootstrap_note(fidelity: Dict) -> str:
  """What the fidelity intervals resample, and what they leave out."""
  drawn = fidelity.get("bootstrap")
  if not drawn or not drawn.get("samples"):
    return ""
  drawn_rows = drawn["rows_per_resample"]
  size = (f" ({max(drawn_rows.values())} rows of a table per resample at most, the spread "
          "scaled to the whole tables')" if drawn_rows != drawn.get("rows") else "")
  return ("<p><small>In brackets: 95% bootstrap intervals over " f"{drawn['samples']} "
          "resamples of the real training rows and the synthetic rows" + size + ". They "
          "show the sampling noise of the rows only: the DP noise of the one release is "
          "not in them (a second release, at a second budget, would differ by that too: by "
          "about 0.05 of correlation Spearman on a simulated table of 3200 patients with "
          "skewed labs). A comparison with a baseline whose paired interval holds 0 counts "
          "as level."
          "</small></p>")


def _fidelity_comparison(report: Dict) -> str:
  """Each fidelity measure for the released table and every DP baseline."""
  sources = _sources(report)
  def row(name, value, real=""):
    return [name, real] + [value(s["fidelity"]) for _, s in sources]
  rows = [row("correlation Spearman (higher is better)",
              lambda f: cell(f["correlation_spearman"], reason=f.get("correlation_reason"))
              + _draws_ci(f, "correlation_spearman")),
          row("median KS (lower is better)",
              lambda f: cell(f["median_ks"]) + _draws_ci(f, "median_ks")),
          row("largest KS", lambda f: cell(f["max_ks"])),
          row("largest total variation", lambda f: cell(f["max_total_variation"])),
          row("label rate", lambda f: cell(f["label_rate"]["synthetic"]),
              cell(report["fidelity"]["label_rate"]["real"]))]
  for series in report["fidelity"].get("trajectory_error", {}):
    rows.append(row(f"{html.escape(series)}: largest error of a median per visit and class",
                    lambda f, s=series: cell(f["trajectory_error"][s]["max"], 2)))
  saturation = report["fidelity"]["saturation"]
  rows.append(row("largest share of a column's values at a bound",
                  lambda f: cell(f["saturation"]["max_synthetic"]),
                  cell(saturation["max_real"])))
  return table(["measure", "real"] + [h for h, _ in sources], rows)


def _trajectory_error_table(report: Dict) -> str:
  sources = _sources(report)
  rows = []
  for series, error in report["fidelity"].get("trajectory_error", {}).items():
    for label, by_class in error["by_class"].items():
      per_visit = by_class.get("per_visit")
      rows.append([html.escape(series), html.escape(label)]
                  + [cell(s["fidelity"]["trajectory_error"][series]["by_class"]
                          .get(label, {}).get("max"), 2,
                          s["fidelity"]["trajectory_error"][series]["by_class"]
                          .get(label, {}).get("reason")) for _, s in sources]
                  + [", ".join(cell(v, 1) for v in per_visit) if per_visit else "n/a"])
  if not rows:
    return "<p>Median trajectory error: n/a <small>(the table has no series)</small>.</p>"
  return "\n".join([
      "<h3>Median trajectories: largest error per series and class</h3>",
      "<p>|median synthetic - median real| at each visit, in the series' clinical units; "
      "the largest over visits.</p>",
      table(["series", "class"] + [h for h, _ in sources]
            + ["released synthetic, per visit"], rows)])


def _saturation_table(report: Dict) -> str:
  sources = _sources(report)
  saturation = report["fidelity"]["saturation"]
  if not saturation["columns"]:
    return ("<p>Values at a bound: n/a <small>(" + html.escape(saturation.get("reason", ""))
            + ")</small>.</p>")
  columns = sorted(saturation["columns"].items(),
                   key=lambda kv: -(kv[1]["synthetic"] or 0.0))[:8]
  rows = [[html.escape(column), cell(shares["real"])]
          + [cell(s["fidelity"]["saturation"]["columns"][column]["synthetic"])
             for _, s in sources] for column, shares in columns]
  return "\n".join([
      "<h3>Values at a public bound (the 8 most saturated columns)</h3>",
      "<p>Share of a numeric column's values equal to the spec's min or max: a generator "
      "squashed into its output range piles patients up there.</p>",
      table(["column", "real"] + [h for h, _ in sources], rows)])


def _fidelity_section(report: Dict, plots: Dict[str, bytes]) -> str:
  fidelity = report["fidelity"]
  def distance(measures):
    value = measures.get("ks", measures.get("total_variation"))
    return -(value if value is not None else 0.0)
  marginals = sorted(fidelity["marginals"].items(), key=lambda kv: distance(kv[1]))
  rows = [[html.escape(column), cell(m.get("ks"), reason=m.get("reason")),
           cell(m.get("wasserstein")), cell(m.get("total_variation"))]
          for column, m in marginals[:12]]
  rate = fidelity["label_rate"]
  correlation_reason = (fidelity.get("correlation_reason")
                        or fidelity.get("correlation", {}).get("reason"))
  return "\n".join([
      "<h2>Fidelity: do synthetic patients look like real ones?</h2>",
      f"<p>Correlation structure (SPRINT_gan's measure: Spearman correlation between the "
      f"real and synthetic correlation matrices' lower triangles): "
      f"<b>{cell(fidelity['correlation_spearman'], reason=correlation_reason)}</b>"
      f"{_draws_ci(fidelity, 'correlation_spearman')} (SPRINT_gan, private: 0.879). "
      f"Label rate: real {cell(rate['real'])}, synthetic {cell(rate['synthetic'])}.</p>",
      "" if fidelity.get("trajectories", {}).get("real") else
      "<p>Median trajectories: n/a <small>(the table has no series)</small>.</p>",
      image(plots.get("trajectories"), "median trajectories by visit and class"),
      image(plots.get("correlation"), "correlation matrices, real and synthetic"),
      "<h3>Every fidelity measure, beside the DP baselines</h3>",
      _bootstrap_note(fidelity),
      _fidelity_comparison(report),
      _trajectory_error_table(report), _saturation_table(report),
      "<h3>Per-column distributions (the 12 least alike)</h3>",
      "<p>Kolmogorov-Smirnov statistic and Wasserstein distance (as a fraction of the "
      "column's clinical range) for numbers, total variation for categories; 0 is "
      "identical.</p>",
      table(["column", "KS", "Wasserstein", "total variation"], rows)])


def _missingness_section(report: Dict, plots: Dict[str, bytes]) -> str:
  """Real vs synthetic holes (components/evaluation/missingness.py); only with missing
  values modeled."""
  holes = report.get("missingness")
  if not holes:
    return ""
  pair = holes.get("co_missingness_columns") or []
  rows = [["missing rate: largest difference of a column", "", "",
           cell(holes["max_rate_error"])],
          ["missingness patterns: distinct, and total variation distance",
           cell(holes["patterns"]["real"]), cell(holes["patterns"]["synthetic"]),
           cell(holes["pattern_tvd"])],
          ["co-missingness: largest difference of the indicator correlations", "", "",
           cell(holes["co_missingness_error"])
           + (f" <small>({html.escape(' and '.join(pair))})</small>" if pair else "")]]
  if "monotonicity_violations" in holes:
    share = lambda v: f"{cell(v['share'])} <small>({v['rows']} rows)</small>"
    violations = holes["monotonicity_violations"]
    rows += [["rows with a visit observed after a missing one", share(violations["real"]),
              share(violations["synthetic"]), ""],
             ["dropout curve: largest difference of the share still observed", "", "",
              cell(holes.get("max_dropout_curve_error"))]]
  columns = sorted(((c, r) for c, r in holes["columns"].items()
                    if r["real"] or r["synthetic"]), key=lambda kv: -(kv[1]["difference"] or 0))
  labels = list(next(iter(holes["columns"].values()))["by_class"]) if holes["columns"] else []
  by_column = [[html.escape(column), cell(r["real"]), cell(r["synthetic"]),
                cell(r["difference"])]
               + [f"{cell(r['by_class'][k]['real'])} / {cell(r['by_class'][k]['synthetic'])}"
                  for k in labels] for column, r in columns]
  return "\n".join([
      "<h2>Missing values: do synthetic patients have holes where real ones do?</h2>",
      "<p>Missing rate per column, real training vs synthetic patients (SDMetrics' "
      "MissingValueSimilarity is 1 minus the difference); which columns go missing together "
      "(correlation of the missingness indicators, over the columns missing in at least 1% "
      "of the rows of both tables); the joint missingness patterns of the rows (as Mohapatra et al., "
      "PVLDB 2024, evaluate DP generation with missing data); and for the series, visits "
      "observed after a missing one (intermittent holes; a synthetic table drops out "
      "monotonically by construction) and the share of patients still observed at each "
      "visit. 0 is identical for every difference.</p>",
      table(["measure", "real", "synthetic", "difference"], rows),
      image(plots.get("dropout"), "share of patients still observed per visit, real vs "
            "synthetic, by class"),
      "<h3>Missing rate per column</h3>",
      table(["column", "real", "synthetic", "difference"]
            + [f"class {html.escape(k)}: real / synthetic" for k in labels], by_column)
      if by_column else "<p>No cell is missing in either table.</p>"])


def _attack_section(report: Dict, plots: Dict[str, bytes]) -> str:
  attack = report["attack"]
  rows = []
  for target, results in attack["targets"].items():
    for name, result in results.items():
      rows.append([html.escape(target), "yes" if target in attack["released"] else "no",
                   html.escape(name), cell(result["auroc"], reason=result.get("reason")),
                   cell(result.get("tpr_at_fpr", {}).get("0.01")),
                   cell(result.get("tpr_at_fpr", {}).get("0.001")),
                   cell(result.get("advantage")),
                   f"{result['members']} / {result['non_members']}"])
  return "\n".join([
      "<h2>Privacy audit: membership inference</h2>",
      f"<p>{html.escape(attack['setup'])}</p>",
      table(["target", "released", "attack", "AUROC", "TPR at 1% FPR", "TPR at 0.1% FPR",
             "advantage", "members / non-members"], rows),
      image(plots.get("attacks"), "attack AUROC per target"),
      f"<p><b>Verdict:</b> {html.escape(report['headline']['privacy']['text'])}</p>"])


def _disclosure_section(report: Dict) -> str:
  d = report["disclosure"]
  rows = [["distance to closest training record (median)", cell(d["dcr_synthetic_median"]),
           cell(d["dcr_holdout_median"]), cell(d["dcr_ratio"], reason=d.get("dcr_reason"))],
          ["nearest / second-nearest distance ratio (median)", cell(d["nndr_synthetic_median"]),
           cell(d["nndr_holdout_median"]), cell(d["nndr_ratio"], reason=d.get("nndr_reason"))]]
  return "\n".join([
      "<h2>Synthetic-record disclosure</h2>",
      "<p>Is a synthetic patient closer to a training patient than a new real patient is? "
      "A ratio near 1 means no; well below 1 would suggest copying.</p>",
      table(["measure", "synthetic rows", "real held-out rows", "ratio"], rows),
      f"<p>Exact copies of training rows among the synthetic rows: "
      f"<b>{d['exact_copies']}</b>. Share of synthetic rows closer to a training row than "
      f"95% of real held-out rows are: {cell(d['share_closer_than_holdout_5th_percentile'])} "
      "(0.05 expected).</p>"
      + (f"<p><small>{html.escape(d['note'])}</small></p>" if d.get("note") else "")])


def _federated_section(federated: Optional[Dict]) -> str:
  if not federated:
    return ""
  rows = []
  for name, result in federated.get("algorithms", {}).items():
    rows.append([html.escape(name), cell(result.get("auroc")), cell(result.get("accuracy")),
                 cell(result.get("epsilon"), 2),
                 "n/a" if result.get("delta") is None else f"{result['delta']:g}",
                 html.escape(str(result.get("privacy_unit", ""))), cell(result.get("rounds"), 0)])
  return "\n".join(["<h2>Federated learning across sites</h2>",
                    "<p>Pooled real test patients of every site.</p>",
                    table(["algorithm", "AUROC", "accuracy", "epsilon", "delta", "unit",
                           "rounds"], rows)])


def _privacy_section(report: Dict) -> str:
  parts = ["<h2>Full privacy record</h2>"]
  for artifact, record in report["privacy"]["artifacts"].items():
    rows = [[html.escape(k), html.escape(json.dumps(v) if isinstance(v, (dict, list)) else str(v))]
            for k, v in record.items()]
    parts += [f"<h3>{html.escape(artifact)}</h3>", table(["field", "value"], rows)]
  together = report["privacy"].get("all_released_together")
  if together:
    parts.append(f"<p>Released together: epsilon {together['epsilon']:.3f}, delta "
                 f"{together['delta']:g} ({html.escape(together['composition'])}).</p>")
  return "\n".join(parts)


def _baseline_card(verdict: Optional[Dict]) -> str:
  if not verdict:
    return ""
  mark = {"beats baselines": "yes", "behind a baseline": "no",
          "level with a baseline": "level"}.get(verdict["status"], "n/a")
  return (f'<div class="card {verdict["status"].split()[0]}"><h2>Does it beat simple DP '
          f'baselines?</h2><div class="big">{mark}</div>'
          f'<p>{html.escape(verdict["text"])}</p></div>')


def render_html(report: Dict, plots: Dict[str, bytes]) -> str:
  headline = report["headline"]
  privacy = report["privacy"]
  use, safe = headline["utility"], headline["privacy"]
  cards = (
      f'<div class="card {use["status"].split()[0]}"><h2>Is the synthetic data useful?</h2>'
      f'<div class="big">{cell(use.get("worst_relative_auroc"), 2)}</div>'
      f'<p>{html.escape(use["text"])}</p>'
      f'<p>{html.escape(headline["fidelity"]["text"])}</p></div>'
      + _baseline_card(headline.get("baselines")) +
      f'<div class="card {safe["status"]}"><h2>How private is it?</h2>'
      f'<div class="big">&epsilon; = {privacy["epsilon"]:.2f}</div>'
      f'<p>Differential privacy: epsilon {privacy["epsilon"]:.3f} at delta {privacy["delta"]:g} '
      f'per {html.escape(privacy["unit"])}, neighbours: '
      f'{html.escape(privacy.get("relation") or "relation not stated")} '
      f'({html.escape(privacy["accountant"])} accountant, '
      f'{html.escape(privacy["sampling"])} sampling) for the synthetic table. '
      f'{html.escape(safe["text"])}</p></div>')
  return "\n".join([
      "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
      f"<title>clinical-dp report: {html.escape(report['dataset'])}</title>",
      f"<style>{STYLE}</style></head><body>",
      # Always first, whatever the dict holds: the page must never pass for a public one.
      f'<p class="private"><strong>{html.escape(NOT_FOR_RELEASE)}</strong></p>',
      f"<h1>Synthetic data and DP models for {html.escape(report['dataset'])}: "
      "utility, fidelity and privacy</h1>",
      f"<p><small>{html.escape(report['data_note'])}</small></p>",
      f'<div class="headline">{cards}</div>',
      _utility_section(report, plots), _fidelity_section(report, plots),
      _missingness_section(report, plots), _attack_section(report, plots), _disclosure_section(report),
      _federated_section(report.get("federated")), _privacy_section(report),
      "</body></html>"])
