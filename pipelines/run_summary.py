"""What a finished run produced, read back from ML Metadata, the release and the report:
DIR/run_summary.json, and the report and federated results copied under the run
directory."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Dict, List, Tuple

from clinical_dp.spec import DatasetSpec
from pipelines.component_ids import FEDERATED_STEP_ID, REPORT_ID
from pipelines.config import PipelineConfig
from pipelines.input_selection import PreparedInput
from pipelines.run_directory import FEDERATED_DIR, REPORT_DIR

# Results that are not released artifacts, copied out of the TFX pipeline root:
# (component, output, destination). The released ones are in release/ (ReleasePusher).
RESULTS = ((REPORT_ID, "report_dir", REPORT_DIR),
           (FEDERATED_STEP_ID, "federated_results", FEDERATED_DIR))

SHARE_NOTE = ("only this folder may be shared (its PRIVACY.md states every guarantee); the "
              "report and everything else here are computed from the real patients and "
              "stay with the data owner")


def _uris_by_output(outputs: List[Dict]) -> Dict[Tuple[str, str], str]:
  return {(o["component"], o["name"]): o["uri"] for o in outputs}


def collect_results(outputs: List[Dict], output_dir: str) -> Dict[str, str]:
  """Copies the report and the federated results under the run directory."""
  by_key = _uris_by_output(outputs)
  copied = {}
  for component, name, destination in RESULTS:
    if (component, name) in by_key:
      target = os.path.join(output_dir, destination)
      shutil.copytree(by_key[(component, name)], target)
      copied[destination] = target
  return copied


def report_headline(report_dir: str) -> Dict:
  """The numbers `run` ends with, read back from report.json."""
  from components.evaluation.report_html import REPORT_JSON  # pylint: disable=g-import-not-at-top
  with open(os.path.join(report_dir, REPORT_JSON)) as f:
    report = json.load(f)
  utility = report["utility"]
  return {
      "synthetic_relative_auroc": utility["synthetic_relative_to_real"],
      "real_auroc": {m: r.get("auroc") for m, r in utility["real"].items()},
      "synthetic_auroc": {m: r.get("auroc") for m, r in utility["synthetic"].items()},
      "shuffled_label_control_auroc": utility["shuffled_label_control"].get("auroc"),
      "correlation_spearman": report["fidelity"]["correlation_spearman"],
      "membership_auroc": report["attack"]["membership_auroc"],
      "strongest_attack": f"{report['attack']['strongest']['attack']} on "
                          f"{report['attack']['strongest']['artifact']}",
      "positive_control_auroc": report["attack"]["positive_control_auroc"],
      "attack_verdict": report["headline"]["privacy"]["status"],
      "dcr_ratio": report["disclosure"]["dcr_ratio"],
      "exact_copies": report["disclosure"]["exact_copies"],
      "epsilon": report["privacy"]["epsilon"], "delta": report["privacy"]["delta"],
      "unit": report["privacy"]["unit"],
  }


def latest_outputs(outputs: List[Dict]) -> List[Dict]:
  """The outputs of each component's last execution: after `run --resume`, ML Metadata
  also holds the first attempt's executions, which the resumed run reused (cached)."""
  last = {}
  for output in outputs:
    last[output["component"]] = max(last.get(output["component"], -1), output["execution_id"])
  return [o for o in outputs if o["execution_id"] == last[o["component"]]]


def summarize(config: PipelineConfig, spec: DatasetSpec, prepared: PreparedInput,
              seconds: float) -> Dict:
  """What the run produced, read back from ML Metadata and the release ReleasePusher wrote;
  the report and the federated results copied under the run directory."""
  from components.evaluation.report_html import REPORT_HTML, REPORT_JSON  # pylint: disable=g-import-not-at-top
  from components.release import read_release  # pylint: disable=g-import-not-at-top
  from pipelines.metadata import read_outputs, split_sizes  # pylint: disable=g-import-not-at-top
  outputs = latest_outputs(read_outputs(config.metadata_path))
  statistics = [o for o in outputs if o["type"] == "ExampleStatistics"]
  release = config.release_destination
  privacy = read_release(release)
  results = collect_results(outputs, config.output_dir)
  summary = {
      "pipeline_name": config.pipeline_name,
      "dataset": spec.name,
      "seconds": round(seconds, 1),
      "input": dataclasses.asdict(prepared),
      "split_by": spec.id_column or "whole row",
      "split_rows": split_sizes(statistics[0]["uri"]) if statistics else {},
      "training_mode": config.training.mode,
      "released": {k: os.path.join(release, k) for k in privacy["artifacts"]},
      "privacy": privacy,
      "metadata": config.metadata_path,
      "pipeline_root": config.pipeline_root,
      "results": results,
      "artifacts": outputs,
  }
  if REPORT_DIR in results:
    summary["report"] = {"html": os.path.join(results[REPORT_DIR], REPORT_HTML),
                         "json": os.path.join(results[REPORT_DIR], REPORT_JSON),
                         "headline": report_headline(results[REPORT_DIR])}
  summary["share"] = {"release": release, "note": SHARE_NOTE}  # last, as the console ends
  return summary
