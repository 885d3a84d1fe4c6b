"""The lines `clinical-dp run` ends with: the run summary (pipelines/run_summary.py) as
text for the terminal."""

from __future__ import annotations

import os
from typing import Dict, List

from pipelines.run_directory import FEDERATED_DIR, SUMMARY_FILE


def format_summary(summary: Dict) -> str:
  source = summary["input"]
  lines = [f"clinical-dp run finished in {summary['seconds']:.0f} s: {summary['dataset']}",
           f"  input     {source['source']}: {source['rows_in_file']} rows, "
           f"{source['rows_dropped_missing']} dropped for missing values, "
           f"{source['rows_used']} used ({source['patients_used']} patients"
           + (", fast subsample" if source["subsampled"] else "") + ")",
           f"  splits    by {summary['split_by']}: " + ", ".join(
               f"{k} {v}" for k, v in summary["split_rows"].items()) + " rows"]
  lines.append(f"  released ({summary['training_mode']} training mode; PRIVACY.md in "
               f"{summary['share']['release']}):")
  privacy = summary["privacy"]
  for key, path in summary["released"].items():
    record = privacy["artifacts"][key]
    lines.append(f"    {key:<22} epsilon {record['epsilon']:.3f} at delta {record['delta']:g} "
                 f"({record['unit']}): {path}")
  together = privacy["all_released_together"]
  if summary["released"]:
    lines.append(f"    all released together: epsilon {together['epsilon']:.3f}, delta "
                 f"{together['delta']:g} per patient, "
                 f"{together.get('relation', 'relation not stated')} ({together['composition']})")
    for relation, group in together.get("other_relations", {}).items():
      lines.append(f"      {relation}, not added: epsilon {group['epsilon']:.3f}, delta "
                   f"{group['delta']:g} ({', '.join(group['artifacts'])})")
  if privacy.get("not_released"):
    lines.append(f"    trained for the comparison, not released: "
                 f"{', '.join(privacy['not_released'])} (--release-federated chooses)")
  if "report" in summary:
    lines.extend(_headline_lines(summary["report"]))
  if FEDERATED_DIR in summary.get("results", {}):
    lines.extend(_federated_lines(summary["results"][FEDERATED_DIR]))
  lines.append(f"  artifacts {summary['pipeline_root']} ({len(summary['artifacts'])} outputs, "
               f"listed in {SUMMARY_FILE})")
  lines.append(f"  metadata  {summary['metadata']}")
  lines.append(f"  share     {summary['share']['release']}: {summary['share']['note']}")
  return "\n".join(lines)


def _number(value) -> str:
  """A measure to three decimals, or n/a where the report could not compute it."""
  return "n/a" if value is None else f"{value:.3f}"


def _headline_lines(report: Dict) -> List[str]:
  h = report["headline"]
  ratio = h["synthetic_relative_auroc"]
  return [
      "  report:",
      "    utility   test AUROC trained on real / on synthetic: " + ", ".join(
          f"{m} {_number(h['real_auroc'][m])} / {_number(h['synthetic_auroc'][m])}"
          + (f" ({ratio[m]:.0%})" if ratio.get(m) is not None else "") for m in h["real_auroc"]),
      f"              shuffled-label control AUROC {_number(h['shuffled_label_control_auroc'])}",
      f"    fidelity  correlation-structure Spearman {_number(h['correlation_spearman'])}",
      f"    privacy   epsilon {h['epsilon']:.3f} at delta {h['delta']:g} per {h['unit']}; "
      f"strongest membership attack AUROC {_number(h['membership_auroc'])} "
      f"({h['strongest_attack']}), positive control {_number(h['positive_control_auroc'])}: "
      f"{h['attack_verdict']}",
      f"              DCR ratio {_number(h['dcr_ratio'])}, exact copies {h['exact_copies']}",
      f"    report    {report['html']}"]


def _federated_lines(federated_dir: str) -> List[str]:
  """Test AUROC and epsilon of each federated algorithm, from federated.json."""
  from components.evaluation_report import read_federated  # pylint: disable=g-import-not-at-top
  from federated.config import RESULTS_FILE  # pylint: disable=g-import-not-at-top
  algorithms = read_federated(federated_dir)["algorithms"]
  def privacy(result):
    epsilon = result.get("epsilon")
    if epsilon is None:
      return "not private"
    return f"epsilon {epsilon:.2f} per {result['privacy_unit']}"
  return (["  federated test AUROC across sites:"]
          + [f"    {name:<12} {_number(result['auroc'])} ({privacy(result)})"
             for name, result in algorithms.items()]
          + [f"    results   {os.path.join(federated_dir, RESULTS_FILE)}"])
