"""The report's headline verdicts: is the synthetic data useful, faithful, better than
simple DP baselines, and do membership attacks on the released artifacts fail?

Each verdict is a status and a sentence, computed from the measures in the report; the
HTML (components/evaluation/report_html.py) shows them as the first cards.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Dict, List, Optional

from components.evaluation.utility import MODELS, paired_difference_interval


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


def _paired_interval(ours: Dict, theirs: Dict, measure: str) -> Optional[list]:
  """95% interval of ours minus theirs over paired bootstrap draws: an AUROC ratio's
  model's test AUROC over the same test resamples (its real-data denominator is common
  to both), a fidelity measure over the same resamples of the real training rows
  (fidelity.fidelity_bootstrap); None where either lacks its draws."""
  if measure.endswith("_relative_auroc"):
    model = measure[:-len("_relative_auroc")]
    draws = lambda use: use["utility"].get("synthetic", {}).get(model, {}).get("auroc_bootstrap")
  else:
    draws = lambda use: use["fidelity"].get("bootstrap", {}).get(measure)
  return paired_difference_interval(draws(ours), draws(theirs))


def _names(measures: List[str]) -> str:
  return ", ".join(BASELINE_MEASURES[m][0] for m in measures)


def baseline_verdict(utility: Dict, fidelity: Dict, baselines: Dict[str, Dict]) -> Dict:
  """Does the released table beat each DP baseline (not released) on every measure both
  have: the AUROC ratios to real of the four models, correlation Spearman, median KS?

  A measure whose difference is inside its 95% paired bootstrap interval is level, not a
  win or a loss: the AUROC ratios over the test patients (on a small test split most are
  level), correlation Spearman and median KS over the real training rows and each
  table's synthetic rows. A measure without draws is compared as it is."""
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
      interval = _paired_interval({"utility": utility, "fidelity": fidelity}, baseline,
                                  measure)
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
                        "difference_ci": intervals, "released": ours,
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
          "KS; a measure is level when the difference is inside its 95% paired bootstrap "
          "interval: over the test patients for an AUROC ratio, over the real training and "
          "the synthetic rows for the fidelity measures; the DP noise of one release is "
          "not resampled): "
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
