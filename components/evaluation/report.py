"""The report: headline verdicts, then utility, fidelity, attacks, disclosure and the
full privacy record, as report.json and a self-contained report.html.

The HTML is written for a clinician and a privacy officer: every number says what it
is measured on, plots are embedded as data URIs, and nothing is fetched from outside.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import statistics
from typing import Dict, List, Optional

from components.evaluation.utility import MODEL_NAMES, MODELS, paired_difference_interval


@dataclasses.dataclass(frozen=True)
class Thresholds:
  """What the report calls good enough (the project's targets, issue 4)."""
  synthetic_relative_auroc: float = 0.97  # of real-trained AUROC, for LR and RF
  released_max_auroc: float = 0.55  # membership attacks on released artifacts
  positive_control_min_auroc: float = 0.6  # the attacks must beat this on the control
  correlation_spearman: float = 0.9


def utility_verdict(utility: Dict, thresholds: Thresholds) -> Dict:
  ratios = utility.get("synthetic_relative_to_real", {})
  key = [ratios.get(m) for m in ("lr", "rf")]
  if any(r is None for r in key):
    reasons = []
    for model in ("lr", "rf"):
      for source in ("real", "synthetic"):
        result = utility.get(source, {}).get(model, {})
        reason = result.get("auroc_reason") or result.get("error")
        if reason and reason not in reasons:
          reasons.append(reason)
    return {"status": "unknown",
            "text": "Utility could not be measured" + (": " + "; ".join(reasons) + "."
                                                       if reasons else " (see the table).")}
  worst = min(key)
  status = "meets target" if worst >= thresholds.synthetic_relative_auroc else "below target"
  return {"status": status, "worst_relative_auroc": worst,
          "text": (f"Models trained on the synthetic patients reach {ratios['lr']:.0%} "
                   f"(logistic regression) and {ratios['rf']:.0%} (random forest) of the AUROC "
                   f"of the same models trained on the real patients, on real held-out "
                   f"patients (target {thresholds.synthetic_relative_auroc:.0%}).")}


def fidelity_verdict(fidelity: Dict, thresholds: Thresholds) -> Dict:
  """Utility alone can hide synthetic columns far from the real ones; say so up front."""
  rho, ks = fidelity.get("correlation_spearman"), fidelity.get("median_ks")
  if rho is None:
    reason = (fidelity.get("correlation_reason")
              or fidelity.get("correlation", {}).get("reason"))
    text = "Correlation structure could not be measured" + (f": {reason}." if reason else ".")
    if ks is not None:
      text += (f" Per-column distributions: median Kolmogorov-Smirnov distance {ks:.2f} "
               "(0 identical, 1 no overlap; see Fidelity).")
    return {"status": "unknown", "text": text}
  status = "meets target" if rho >= thresholds.correlation_spearman else "below target"
  text = (f"Correlation structure agrees at {rho:.2f} (target "
          f"{thresholds.correlation_spearman:.2f}; SPRINT_gan 0.88).")
  if ks is not None:
    text += (f" Per-column distributions: median Kolmogorov-Smirnov distance {ks:.2f} "
             "(0 identical, 1 no overlap; see Fidelity).")
  return {"status": status, "text": text}


# What the released table is compared with the baselines on: name, higher is better.
BASELINE_MEASURES = {"lr_relative_auroc": ("LR AUROC ratio", True),
                     "rf_relative_auroc": ("RF AUROC ratio", True),
                     "svm_relative_auroc": ("SVM AUROC ratio", True),
                     "knn_relative_auroc": ("kNN AUROC ratio", True),
                     "correlation_spearman": ("correlation Spearman", True),
                     "median_ks": ("median KS", False)}


def comparison_measures(utility: Dict, fidelity: Dict) -> Dict[str, Optional[float]]:
  """The measures a table is compared on (BASELINE_MEASURES), None where n/a."""
  ratios = utility.get("synthetic_relative_to_real", {})
  measures = {f"{m}_relative_auroc": ratios.get(m) for m in MODELS}
  measures.update(correlation_spearman=fidelity.get("correlation_spearman"),
                  median_ks=fidelity.get("median_ks"))
  return measures


def _paired_auroc_interval(ours: Dict, theirs: Dict, model: str) -> Optional[list]:
  """95% interval of the difference in `model`'s test AUROC, ours minus theirs, over the
  paired bootstrap draws (same test resamples); None where either lacks them."""
  draws = lambda use: use.get("synthetic", {}).get(model, {}).get("auroc_bootstrap")
  return paired_difference_interval(draws(ours), draws(theirs))


def _names(measures: List[str]) -> str:
  return ", ".join(BASELINE_MEASURES[m][0] for m in measures)


def baseline_verdict(utility: Dict, fidelity: Dict, baselines: Dict[str, Dict]) -> Dict:
  """Does the released table beat each DP baseline (not released) on every measure both
  have: the AUROC ratios to real of the four models, correlation Spearman, median KS?

  An AUROC ratio whose difference is inside its 95% paired bootstrap interval over the
  test patients is level, not a win or a loss: on a small test split most are. (The
  fidelity measures have no such interval and are compared as they are.)"""
  ours = comparison_measures(utility, fidelity)
  comparisons, sentences = {}, []
  for key, baseline in baselines.items():
    theirs = comparison_measures(baseline["utility"], baseline["fidelity"])
    ahead, level, behind, not_measured, intervals = [], [], [], [], {}
    for measure, (_, higher_is_better) in BASELINE_MEASURES.items():
      mine, other = ours[measure], theirs[measure]
      if mine is None or other is None:
        not_measured.append(measure)
        continue
      model = measure[:-len("_relative_auroc")] if measure.endswith("_relative_auroc") else None
      interval = model and _paired_auroc_interval(utility, baseline["utility"], model)
      if interval:
        intervals[measure] = interval
      if interval and interval[0] <= 0.0 <= interval[1]:
        level.append(measure)
      elif (mine >= other) if higher_is_better else (mine <= other):
        ahead.append(measure)
      else:
        behind.append(measure)
    compared = len(ahead) + len(level) + len(behind)
    outcome = ("unknown" if not compared else "behind" if behind else
               "beats" if ahead else "level")
    comparisons[key] = {"beats": None if outcome == "unknown" else outcome == "beats",
                        "outcome": outcome, "ahead": ahead, "level": level,
                        "behind": behind, "not_measured": not_measured,
                        "auroc_difference_ci": intervals, "released": ours,
                        "baseline": theirs}
    name = baseline.get("name", key)
    tie = f"; level on {len(level)} ({_names(level)})" if level else ""
    if not_measured and compared:
      tie += f"; not measured: {_names(not_measured)}"
    if outcome == "unknown":
      sentences.append(f"no measure could be compared with the {name}")
    elif outcome == "level":
      sentences.append(f"it is level with the {name} on all {len(level)} measures compared "
                       f"({_names(level)})")
    elif outcome == "beats":
      sentences.append(f"it beats the {name} on {len(ahead)} of {compared} measures{tie}")
    else:
      lead = f", ahead on {len(ahead)}" if ahead else ""
      sentences.append(f"it is behind the {name} on {len(behind)} of {compared} measures "
                       f"({_names(behind)}){lead}{tie}")
  outcomes = {c["outcome"] for c in comparisons.values()} - {"unknown"}
  status = ("unknown" if not outcomes else "behind a baseline" if "behind" in outcomes
            else "beats baselines" if outcomes == {"beats"} else "level with a baseline")
  text = ("The released table against simple DP baselines fitted at the same budget and "
          "not released (AUROC ratios of LR, RF, SVM and kNN, correlation Spearman, median "
          "KS; an AUROC ratio is level when the difference is inside its 95% paired "
          "bootstrap interval over the test patients): "
          + ("; ".join(sentences) if sentences else "none were fitted") + ".")
  return {"status": status, "text": text, "comparisons": comparisons}


def attack_verdict(attack: Dict, thresholds: Thresholds) -> Dict:
  control, strongest = attack.get("positive_control_auroc"), attack.get("membership_auroc")
  if control is None or strongest is None:
    return {"status": "unknown",
            "text": "The membership attacks could not be scored (see the audit table)."}
  if control < thresholds.positive_control_min_auroc:
    return {"status": "inconclusive",
            "text": (f"Inconclusive: the attacks did not work on a deliberately overfit "
                     f"non-private model either (AUROC {control:.2f}), so their failure on "
                     "the released artifacts proves little.")}
  if strongest <= thresholds.released_max_auroc:
    return {"status": "pass",
            "text": (f"The strongest membership attack on the released artifacts reaches "
                     f"AUROC {strongest:.2f} (0.5 is a coin toss; target at most "
                     f"{thresholds.released_max_auroc:.2f}), while the same attacks reach "
                     f"{control:.2f} on a deliberately overfit model.")}
  counts = attack.get("strongest", {})
  members, non_members = counts.get("members"), counts.get("non_members")
  if members and non_members:
    # The headline is the strongest of several attacks, so its interval is widened for
    # all of them (Bonferroni): the largest of k noisy AUROCs is biased upwards.
    attacks = max(1, int(attack.get("attacks_compared") or 1))
    z = statistics.NormalDist().inv_cdf(1 - 0.025 / attacks)
    low = strongest - z * auroc_standard_error(strongest, members, non_members)
    if low <= thresholds.released_max_auroc:
      # A small table: few members and non-members make the attack AUROC too noisy to
      # call a leak (its interval reaches the target).
      tried = f", corrected for the {attacks} attacks tried," if attacks > 1 else ""
      return {"status": "inconclusive",
              "text": (f"Inconclusive: a membership attack reaches AUROC {strongest:.2f} on a "
                       f"released artifact (target at most "
                       f"{thresholds.released_max_auroc:.2f}), but on only {members} members "
                       f"and {non_members} non-members its 95% interval{tried} reaches down "
                       f"to {low:.2f}: too few patients to tell a leak from chance.")}
  return {"status": "fail",
          "text": (f"Review before release: a membership attack reaches AUROC {strongest:.2f} "
                   f"on a released artifact (target at most {thresholds.released_max_auroc:.2f}).")}


def auroc_standard_error(auroc: float, positives: int, negatives: int) -> float:
  """Hanley and McNeil's (1982) standard error of an AUROC from its two group sizes."""
  q1, q2 = auroc / (2 - auroc), 2 * auroc ** 2 / (1 + auroc)
  variance = (auroc * (1 - auroc) + (positives - 1) * (q1 - auroc ** 2)
              + (negatives - 1) * (q2 - auroc ** 2)) / (positives * negatives)
  return math.sqrt(max(variance, 0.0))


def json_safe(value):
  """The report with NaN and infinities as None (null), recursively: report.json must be
  valid JSON, and a measure that cannot be computed is n/a, not a number."""
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy scalars
    return json_safe(value.item())
  return value


def _fmt(value, digits: int = 3, reason: Optional[str] = None) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a" + (f" <small>({html.escape(reason)})</small>" if reason else "")
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return html.escape(str(value))


def _ci(result: Dict, key: str) -> str:
  interval = result.get(f"{key}_ci")
  value = result.get(key)
  if value is None:
    reason = result.get(f"{key}_reason") or result.get("error")
    return "n/a" + (f" <small>({html.escape(reason)})</small>" if reason else "")
  return f"{value:.3f}" + (f" <small>({interval[0]:.3f}&ndash;{interval[1]:.3f})</small>"
                           if interval else "")


def _table(header: List[str], rows: List[List[str]]) -> str:
  head = "".join(f"<th>{h}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(png: Optional[bytes], alt: str) -> str:
  if not png:
    return ""
  data = base64.b64encode(png).decode("ascii")
  return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _utility_section(report: Dict, plots: Dict[str, bytes]) -> str:
  utility = report["utility"]
  ratios = utility["synthetic_relative_to_real"]
  rows = [[MODEL_NAMES[m], _ci(utility["real"][m], "auroc"), _ci(utility["synthetic"][m], "auroc"),
           _fmt(ratios[m], 2), _ci(utility["real"][m], "accuracy"),
           _ci(utility["synthetic"][m], "accuracy")] for m in MODELS]
  control = utility["shuffled_label_control"]
  parts = [
      "<h2>Utility: train on synthetic, test on real</h2>",
      f"<p>Each model is trained once on the real training patients and once on the "
      f"synthetic patients, then tested on the same {utility['test_patients']} rows of real "
      "test patients that no training, tuning or selection has seen. Brackets: 95% "
      "bootstrap intervals over those rows.</p>",
      _table(["model", "AUROC, trained on real", "AUROC, trained on synthetic",
              "synthetic / real", "accuracy, real", "accuracy, synthetic"], rows),
      f"<p><b>Shuffled-label control</b> (logistic regression on the synthetic patients with "
      f"their labels permuted): AUROC {_ci(control, 'auroc')}. It must be near 0.5; if it "
      "were not, the evaluation itself would be leaking labels.</p>",
      _image(plots.get("utility"), "AUROC by model, real vs synthetic training data"),
      _complete_case(utility), _baseline_utility(report)]
  models = utility.get("dp_models", {})
  if models:
    rows = []
    for name, result in models.items():
      slices = result.get("slices", {})
      for slice_name in sorted(slices, key=lambda k: (k != "overall", k)):
        metrics = slices[slice_name]
        rows.append([html.escape(name), html.escape(slice_name), _fmt(metrics.get("auroc")),
                     _fmt(metrics.get("accuracy")), _fmt(metrics.get("examples"), 0)])
    parts += ["<h3>The DP classifier beside its non-private twin (TFX Evaluator, TFMA)</h3>",
              "<p>On the same real test split, overall and by slice.</p>",
              _table(["model", "slice", "AUROC", "accuracy", "test rows"], rows)]
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
      _table(["trained on", "training rows"] + [f"AUROC, {MODEL_NAMES[m]}" for m in MODELS],
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
  rows = [[MODEL_NAMES[m], _fmt(report["utility"]["real"][m].get("auroc"))]
          + [_fmt(s["utility"]["synthetic_relative_to_real"].get(m), 2) + " <small>(AUROC "
             + _ci(s["utility"]["synthetic"][m], "auroc") + ")</small>" for _, s in sources]
          for m in MODELS]
  return "\n".join([
      "<h3>Beside simple DP baselines (not released)</h3>",
      "<p>The same models trained on tables from two simple DP generators fitted inside the "
      "report on the same training patients at the same privacy budget, never released: a DP "
      "Gaussian copula and independent DP marginals. Each cell: AUROC as a fraction of "
      "trained on real.</p>",
      _table(["model", "AUROC, trained on real"] + [h for h, _ in sources], rows)])


def _fidelity_comparison(report: Dict) -> str:
  """Each fidelity measure for the released table and every DP baseline."""
  sources = _sources(report)
  def row(name, value, real=""):
    return [name, real] + [value(s["fidelity"]) for _, s in sources]
  rows = [row("correlation Spearman (higher is better)",
              lambda f: _fmt(f["correlation_spearman"], reason=f.get("correlation_reason"))),
          row("median KS (lower is better)", lambda f: _fmt(f["median_ks"])),
          row("largest KS", lambda f: _fmt(f["max_ks"])),
          row("largest total variation", lambda f: _fmt(f["max_total_variation"])),
          row("label rate", lambda f: _fmt(f["label_rate"]["synthetic"]),
              _fmt(report["fidelity"]["label_rate"]["real"]))]
  for series in report["fidelity"].get("trajectory_error", {}):
    rows.append(row(f"{html.escape(series)}: largest error of a median per visit and class",
                    lambda f, s=series: _fmt(f["trajectory_error"][s]["max"], 2)))
  saturation = report["fidelity"]["saturation"]
  rows.append(row("largest share of a column's values at a bound",
                  lambda f: _fmt(f["saturation"]["max_synthetic"]),
                  _fmt(saturation["max_real"])))
  return _table(["measure", "real"] + [h for h, _ in sources], rows)


def _trajectory_error_table(report: Dict) -> str:
  sources = _sources(report)
  rows = []
  for series, error in report["fidelity"].get("trajectory_error", {}).items():
    for label, by_class in error["by_class"].items():
      per_visit = by_class.get("per_visit")
      rows.append([html.escape(series), html.escape(label)]
                  + [_fmt(s["fidelity"]["trajectory_error"][series]["by_class"]
                          .get(label, {}).get("max"), 2,
                          s["fidelity"]["trajectory_error"][series]["by_class"]
                          .get(label, {}).get("reason")) for _, s in sources]
                  + [", ".join(_fmt(v, 1) for v in per_visit) if per_visit else "n/a"])
  if not rows:
    return "<p>Median trajectory error: n/a <small>(the table has no series)</small>.</p>"
  return "\n".join([
      "<h3>Median trajectories: largest error per series and class</h3>",
      "<p>|median synthetic - median real| at each visit, in the series' clinical units; "
      "the largest over visits.</p>",
      _table(["series", "class"] + [h for h, _ in sources]
             + ["released synthetic, per visit"], rows)])


def _saturation_table(report: Dict) -> str:
  sources = _sources(report)
  saturation = report["fidelity"]["saturation"]
  if not saturation["columns"]:
    return ("<p>Values at a bound: n/a <small>(" + html.escape(saturation.get("reason", ""))
            + ")</small>.</p>")
  columns = sorted(saturation["columns"].items(),
                   key=lambda kv: -(kv[1]["synthetic"] or 0.0))[:8]
  rows = [[html.escape(column), _fmt(shares["real"])]
          + [_fmt(s["fidelity"]["saturation"]["columns"][column]["synthetic"])
             for _, s in sources] for column, shares in columns]
  return "\n".join([
      "<h3>Values at a public bound (the 8 most saturated columns)</h3>",
      "<p>Share of a numeric column's values equal to the spec's min or max: a generator "
      "squashed into its output range piles patients up there.</p>",
      _table(["column", "real"] + [h for h, _ in sources], rows)])


def _fidelity_section(report: Dict, plots: Dict[str, bytes]) -> str:
  fidelity = report["fidelity"]
  def distance(measures):
    value = measures.get("ks", measures.get("total_variation"))
    return -(value if value is not None else 0.0)
  marginals = sorted(fidelity["marginals"].items(), key=lambda kv: distance(kv[1]))
  rows = [[html.escape(column), _fmt(m.get("ks"), reason=m.get("reason")),
           _fmt(m.get("wasserstein")), _fmt(m.get("total_variation"))]
          for column, m in marginals[:12]]
  rate = fidelity["label_rate"]
  correlation_reason = (fidelity.get("correlation_reason")
                        or fidelity.get("correlation", {}).get("reason"))
  return "\n".join([
      "<h2>Fidelity: do synthetic patients look like real ones?</h2>",
      f"<p>Correlation structure (SPRINT_gan's measure: Spearman correlation between the "
      f"real and synthetic correlation matrices' lower triangles): "
      f"<b>{_fmt(fidelity['correlation_spearman'], reason=correlation_reason)}</b> "
      f"(SPRINT_gan, private: 0.879). "
      f"Label rate: real {_fmt(rate['real'])}, synthetic {_fmt(rate['synthetic'])}.</p>",
      "" if fidelity.get("trajectories", {}).get("real") else
      "<p>Median trajectories: n/a <small>(the table has no series)</small>.</p>",
      _image(plots.get("trajectories"), "median trajectories by visit and class"),
      _image(plots.get("correlation"), "correlation matrices, real and synthetic"),
      "<h3>Every fidelity measure, beside the DP baselines</h3>",
      _fidelity_comparison(report),
      _trajectory_error_table(report), _saturation_table(report),
      "<h3>Per-column distributions (the 12 least alike)</h3>",
      "<p>Kolmogorov-Smirnov statistic and Wasserstein distance (as a fraction of the "
      "column's clinical range) for numbers, total variation for categories; 0 is "
      "identical.</p>",
      _table(["column", "KS", "Wasserstein", "total variation"], rows)])


def _missingness_section(report: Dict, plots: Dict[str, bytes]) -> str:
  """Real vs synthetic holes (components/evaluation/missingness.py); only with missing
  values modeled."""
  holes = report.get("missingness")
  if not holes:
    return ""
  pair = holes.get("co_missingness_columns") or []
  rows = [["missing rate: largest difference of a column", "", "",
           _fmt(holes["max_rate_error"])],
          ["missingness patterns: distinct, and total variation distance",
           _fmt(holes["patterns"]["real"]), _fmt(holes["patterns"]["synthetic"]),
           _fmt(holes["pattern_tvd"])],
          ["co-missingness: largest difference of the indicator correlations", "", "",
           _fmt(holes["co_missingness_error"])
           + (f" <small>({html.escape(' and '.join(pair))})</small>" if pair else "")]]
  if "monotonicity_violations" in holes:
    share = lambda v: f"{_fmt(v['share'])} <small>({v['rows']} rows)</small>"
    violations = holes["monotonicity_violations"]
    rows += [["rows with a visit observed after a missing one", share(violations["real"]),
              share(violations["synthetic"]), ""],
             ["dropout curve: largest difference of the share still observed", "", "",
              _fmt(holes.get("max_dropout_curve_error"))]]
  columns = sorted(((c, r) for c, r in holes["columns"].items()
                    if r["real"] or r["synthetic"]), key=lambda kv: -(kv[1]["difference"] or 0))
  labels = list(next(iter(holes["columns"].values()))["by_class"]) if holes["columns"] else []
  by_column = [[html.escape(column), _fmt(r["real"]), _fmt(r["synthetic"]),
                _fmt(r["difference"])]
               + [f"{_fmt(r['by_class'][k]['real'])} / {_fmt(r['by_class'][k]['synthetic'])}"
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
      _table(["measure", "real", "synthetic", "difference"], rows),
      _image(plots.get("dropout"), "share of patients still observed per visit, real vs "
             "synthetic, by class"),
      "<h3>Missing rate per column</h3>",
      _table(["column", "real", "synthetic", "difference"]
             + [f"class {html.escape(k)}: real / synthetic" for k in labels], by_column)
      if by_column else "<p>No cell is missing in either table.</p>"])


def _attack_section(report: Dict, plots: Dict[str, bytes]) -> str:
  attack = report["attack"]
  rows = []
  for target, results in attack["targets"].items():
    for name, result in results.items():
      rows.append([html.escape(target), "yes" if target in attack["released"] else "no",
                   html.escape(name), _fmt(result["auroc"], reason=result.get("reason")),
                   _fmt(result.get("tpr_at_fpr", {}).get("0.01")),
                   _fmt(result.get("tpr_at_fpr", {}).get("0.001")),
                   _fmt(result.get("advantage")),
                   f"{result['members']} / {result['non_members']}"])
  return "\n".join([
      "<h2>Privacy audit: membership inference</h2>",
      f"<p>{html.escape(attack['setup'])}</p>",
      _table(["target", "released", "attack", "AUROC", "TPR at 1% FPR", "TPR at 0.1% FPR",
              "advantage", "members / non-members"], rows),
      _image(plots.get("attacks"), "attack AUROC per target"),
      f"<p><b>Verdict:</b> {html.escape(report['headline']['privacy']['text'])}</p>"])


def _disclosure_section(report: Dict) -> str:
  d = report["disclosure"]
  rows = [["distance to closest training record (median)", _fmt(d["dcr_synthetic_median"]),
           _fmt(d["dcr_holdout_median"]), _fmt(d["dcr_ratio"], reason=d.get("dcr_reason"))],
          ["nearest / second-nearest distance ratio (median)", _fmt(d["nndr_synthetic_median"]),
           _fmt(d["nndr_holdout_median"]), _fmt(d["nndr_ratio"], reason=d.get("nndr_reason"))]]
  return "\n".join([
      "<h2>Synthetic-record disclosure</h2>",
      "<p>Is a synthetic patient closer to a training patient than a new real patient is? "
      "A ratio near 1 means no; well below 1 would suggest copying.</p>",
      _table(["measure", "synthetic rows", "real held-out rows", "ratio"], rows),
      f"<p>Exact copies of training rows among the synthetic rows: "
      f"<b>{d['exact_copies']}</b>. Share of synthetic rows closer to a training row than "
      f"95% of real held-out rows are: {_fmt(d['share_closer_than_holdout_5th_percentile'])} "
      "(0.05 expected).</p>"
      + (f"<p><small>{html.escape(d['note'])}</small></p>" if d.get("note") else "")])


def _federated_section(federated: Optional[Dict]) -> str:
  if not federated:
    return ""
  rows = []
  for name, result in federated.get("algorithms", {}).items():
    rows.append([html.escape(name), _fmt(result.get("auroc")), _fmt(result.get("accuracy")),
                 _fmt(result.get("epsilon"), 2),
                 "n/a" if result.get("delta") is None else f"{result['delta']:g}",
                 html.escape(str(result.get("privacy_unit", ""))), _fmt(result.get("rounds"), 0)])
  return "\n".join(["<h2>Federated learning across sites</h2>",
                    "<p>Pooled real test patients of every site.</p>",
                    _table(["algorithm", "AUROC", "accuracy", "epsilon", "delta", "unit",
                            "rounds"], rows)])


def _privacy_section(report: Dict) -> str:
  parts = ["<h2>Full privacy record</h2>"]
  for artifact, record in report["privacy"]["artifacts"].items():
    rows = [[html.escape(k), html.escape(json.dumps(v) if isinstance(v, (dict, list)) else str(v))]
            for k, v in record.items()]
    parts += [f"<h3>{html.escape(artifact)}</h3>", _table(["field", "value"], rows)]
  together = report["privacy"].get("all_released_together")
  if together:
    parts.append(f"<p>Released together: epsilon {together['epsilon']:.3f}, delta "
                 f"{together['delta']:g} ({html.escape(together['composition'])}).</p>")
  return "\n".join(parts)


# The report's first words: report.json's first key, report.html's first lines.
NOT_FOR_RELEASE = (
    "Not for release. This report is computed from the real patients and is not "
    "differentially private: its real-data trajectories, correlations, distances to real "
    "patients, per-site and per-slice results and attack scores describe real patients. It "
    "is for the data owner only. What may be shared is the run's release/ folder (its "
    "PRIVACY.md states every guarantee).")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f5f7}
img{max-width:100%;display:block;margin:.8em 0}.headline{display:flex;gap:1em;flex-wrap:wrap}
.card{flex:1 1 280px;border-radius:8px;padding:1em;border:1px solid #ccc}
.card h2{border:none;margin:0 0 .3em 0;font-size:1.15em}.big{font-size:2em;font-weight:600}
.pass,.meets,.beats{background:#eaf6ec;border-color:#7bc38a}.fail,.below,.behind{background:#fdf0e6;
border-color:#e3a06b}.inconclusive,.unknown{background:#f4f4f4}.level{background:#eef3fa;
border-color:#8aa9d6}small{color:#555}
.private{background:#fdecea;border:2px solid #c62828;border-radius:8px;padding:.8em 1em}
"""


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
      f'<div class="big">{_fmt(use.get("worst_relative_auroc"), 2)}</div>'
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
      f"<style>{_STYLE}</style></head><body>",
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
