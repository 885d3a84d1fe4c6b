"""The report's sub-samples against the full tables, on one finished run.

Runs the EvaluationReport's measurements (components/evaluation_report.build_report) on
the artifacts of a finished `clinical-dp run` (found through its run_summary.json) with
each configuration of --configs: `capped`, the default ReportConfig, whose models fit
seeded sub-samples of large tables (UtilityConfig.max_training_rows and
max_fidelity_rows, AuditConfig.max_shadow_rows), and `full`, every cap off (every model
on every row, fidelity on whole tables, baselines as large as the released table), or
`fidelity_full`, the models' caps kept and fidelity's off (for a million patients).
Prints, for each, every AUROC of the utility table with its 95% bootstrap interval over
the test patients, the difference capped - full with its paired interval (both
configurations score on the same resamples of the same test split), the shuffled-label
control, the median KS and correlation Spearman of the released table and each baseline
with their intervals, the attacks, and the seconds of each sub-step; writes it all as
JSON with --out. The sub-sample is good enough where every paired interval holds 0 or
the difference is a small fraction of the figure's own interval.

  .venv/bin/python benchmarks/report_subsampling.py --run_dir DIR [--out FILE.json]
      [--max_fidelity_rows 20000]
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional

from absl import app, flags
import numpy as np

from clinical_dp.report_format import json_safe
from clinical_dp.spec import load_spec
from components import evaluation_report
from components.evaluation import utility
from components.synthetic_data import SYNTHETIC_CSV
from pipelines.run_summary import latest_outputs
from tfx.utils import path_utils
from trainers.gan_run_fn import DISCRIMINATOR_WEIGHTS

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "a finished `clinical-dp run` directory")
flags.DEFINE_list("configs", ["capped", "full"], "report configurations to run, in order")
flags.DEFINE_string("out", None, "write the figures and seconds here as JSON (and each "
                    "configuration's report beside it, OUT.<config>.report.json)")
flags.DEFINE_bool("from_reports", False, "compare the reports an earlier run with the same "
                  "--out wrote, without measuring again")
flags.DEFINE_integer("max_fidelity_rows", None, "the capped configuration's fidelity cap "
                     "(UtilityConfig.max_fidelity_rows; default: the ReportConfig's), to "
                     "show a sub-sample's fidelity on a table the default cap leaves whole")
flags.mark_flag_as_required("run_dir")


def _configs() -> Dict[str, evaluation_report.ReportConfig]:
  capped = evaluation_report.ReportConfig()
  if FLAGS.max_fidelity_rows is not None:
    capped = dataclasses.replace(capped, utility=dataclasses.replace(
        capped.utility, max_fidelity_rows=FLAGS.max_fidelity_rows or None))
  full = dataclasses.replace(
      capped, utility=dataclasses.replace(capped.utility, max_training_rows=None,
                                          max_fidelity_rows=None),
      audit=dataclasses.replace(capped.audit, max_shadow_rows=None))
  # the models' sub-samples kept, fidelity and the baselines at full size: affordable at a
  # million patients, where `full` would fit kNN and the SVM on 801 166 rows
  fidelity_full = dataclasses.replace(
      capped, utility=dataclasses.replace(capped.utility, max_fidelity_rows=None))
  return {"capped": capped, "full": full, "fidelity_full": fidelity_full}


def _artifacts(run_dir: str) -> Dict[str, str]:
  """The URIs build_report reads, from the run's summary."""
  with open(os.path.join(run_dir, "run_summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  uri = {(o["component"], o["name"]): o["uri"] for o in latest_outputs(summary["artifacts"])}
  return {
      "examples_uri": uri[("CsvExampleGen", "examples")],
      "synthetic_csv": os.path.join(uri[("SyntheticDataGen", "synthetic_examples")],
                                    SYNTHETIC_CSV),
      "generator_dir": path_utils.serving_model_path(uri[("GanTrainer", "model")]),
      "classifier_dir": path_utils.serving_model_path(uri[("DpClassifierTrainer", "model")]),
      "discriminator_weights": os.path.join(uri[("GanTrainer", "model_run")],
                                            DISCRIMINATOR_WEIGHTS),
  }


def _tables(report: Dict) -> Dict[str, Dict]:
  """{table: {model: metrics}}: the real and released tables' models and the baselines'."""
  tables = {"real": report["utility"]["real"], "synthetic": report["utility"]["synthetic"]}
  for name, baseline in report["baselines"].items():
    tables[name] = baseline["utility"]["synthetic"]
  return tables


def _interval(values: Optional[List[float]]) -> str:
  return "n/a" if not values else f"[{values[0]:.4f}, {values[1]:.4f}]"


def _figure(value: Optional[float]) -> str:
  return "n/a" if value is None else f"{value:.4f}"


def _compare_utility(reports: Dict[str, Dict]) -> List[Dict]:
  names = list(reports)
  rows = []
  for table in _tables(reports[names[0]]):
    for model in utility.MODELS:
      row = {"table": table, "model": model}
      for name in names:
        metrics = _tables(reports[name])[table][model]
        row[name] = {"auroc": metrics.get("auroc"), "auroc_ci": metrics.get("auroc_ci"),
                     "fitted_on_rows": metrics.get("fitted_on_rows",
                                                   metrics.get("train_patients"))}
      if len(names) == 2:
        first, second = (_tables(reports[n])[table][model] for n in names)
        if first.get("auroc") is not None and second.get("auroc") is not None:
          row["difference"] = first["auroc"] - second["auroc"]
          row["difference_ci"] = utility.paired_difference_interval(
              first.get("auroc_bootstrap"), second.get("auroc_bootstrap"))
      rows.append(row)
  return rows


def _ratio_draws(report: Dict, model: str) -> Optional[np.ndarray]:
  """Synthetic / real AUROC on each bootstrap resample of the test split (the same
  resamples for both: utility.bootstrap_resamples)."""
  use = report["utility"]
  real, synthetic = (use[s][model].get("auroc_bootstrap") for s in ("real", "synthetic"))
  if not real or not synthetic or len(real) != len(synthetic):
    return None
  return np.asarray(synthetic) / np.asarray(real)


def _percentiles(draws: Optional[np.ndarray]) -> Optional[List[float]]:
  return None if draws is None else [float(np.percentile(draws, 2.5)),
                                     float(np.percentile(draws, 97.5))]


def _compare_ratios(reports: Dict[str, Dict]) -> Dict[str, Dict]:
  """Each model's synthetic / real AUROC ratio (the report's headline) per configuration
  with its bootstrap interval, and the paired interval of the two configurations'
  difference."""
  names = list(reports)
  result = {}
  for model in utility.MODELS:
    draws = {n: _ratio_draws(reports[n], model) for n in names}
    row = {n: {"ratio": reports[n]["utility"]["synthetic_relative_to_real"][model],
               "ratio_ci": _percentiles(draws[n])} for n in names}
    if len(names) == 2 and all(d is not None for d in draws.values()):
      row["difference_ci"] = _percentiles(draws[names[0]] - draws[names[1]])
    result[model] = row
  return result


def _fidelity_tables(report: Dict) -> Dict[str, Dict]:
  """{table: fidelity}: the released table's and each baseline's."""
  return {"synthetic": report["fidelity"],
          **{name: baseline["fidelity"] for name, baseline in report["baselines"].items()}}


def _compare_fidelity(reports: Dict[str, Dict]) -> List[Dict]:
  """Median KS and the correlation Spearman of every table scored, with their bootstrap
  intervals and the rows measured, per configuration."""
  names = list(reports)
  rows = []
  for table in _fidelity_tables(reports[names[0]]):
    for measure in ("median_ks", "correlation_spearman"):
      row = {"table": table, "measure": measure}
      for name in names:
        fid = _fidelity_tables(reports[name])[table]
        bootstrap = fid.get("bootstrap", {})
        row[name] = {"value": fid.get(measure), "ci": bootstrap.get(f"{measure}_ci"),
                     "rows": bootstrap.get("rows")}
      rows.append(row)
  return rows


def _headline(report: Dict) -> Dict:
  fid, attack = report["fidelity"], report["attack"]
  return {
      "synthetic_relative_to_real": report["utility"]["synthetic_relative_to_real"],
      "shuffled_label_control": {k: report["utility"]["shuffled_label_control"].get(k)
                                 for k in ("auroc", "auroc_ci")},
      "correlation_spearman": fid["correlation_spearman"], "median_ks": fid["median_ks"],
      "max_ks": fid["max_ks"],
      "membership_auroc": attack["membership_auroc"],
      "strongest": {k: attack["strongest"].get(k) for k in ("artifact", "attack")},
      "positive_control_auroc": attack["positive_control_auroc"],
      "attacks": {f"{target}.{name}": result.get("auroc")
                  for target, results in attack["targets"].items()
                  for name, result in results.items()},
      "dcr_ratio": report["disclosure"].get("dcr_ratio"),
      "baselines": report["headline"]["baselines"]["status"],
      "sub_sampled": report.get("sub_sampled"),
  }


def main(_):
  spec_path = json.load(open(os.path.join(FLAGS.run_dir, "run_args.json"),
                             encoding="utf-8"))["spec"]
  spec = load_spec(spec_path)
  artifacts = _artifacts(FLAGS.run_dir)
  configs = _configs()
  reports, seconds = {}, {}
  for name in FLAGS.configs:
    if FLAGS.from_reports:
      with open(f"{FLAGS.out}.{name}.report.json", encoding="utf-8") as f:
        reports[name] = json.load(f)
      seconds[name] = sum(reports[name]["step_seconds"].values())  # the steps' sum
      continue
    print(f"--- {name}")
    start = time.perf_counter()
    reports[name], _ = evaluation_report.build_report(spec, configs[name], **artifacts,
                                                      log=print)
    seconds[name] = time.perf_counter() - start
    print(f"--- {name}: {seconds[name]:.0f} s")
    if FLAGS.out:  # each report as soon as it is made: the comparison below reads them
      with open(f"{FLAGS.out}.{name}.report.json", "w", encoding="utf-8") as f:
        json.dump(json_safe(reports[name]), f)
  rows = _compare_utility(reports)
  names = list(reports)
  print("\nAUROC on the real test split, 95% bootstrap interval over its patients"
        + (f"; {names[0]} - {names[1]} with its paired interval" if len(names) == 2 else ""))
  for row in rows:
    cells = [f"{row[n]['auroc'] and round(row[n]['auroc'], 4)} {_interval(row[n]['auroc_ci'])}"
             f" ({row[n]['fitted_on_rows']} rows)" for n in names]
    difference = (f"  {row['difference']:+.4f} {_interval(row['difference_ci'])}"
                  if "difference" in row else "")
    print(f"  {row['table']:<10} {row['model']:<4} " + "  ".join(cells) + difference)
  ratios = _compare_ratios(reports)
  print("\nsynthetic / real AUROC ratio (the headline), 95% interval over the same resamples"
        + (f"; paired interval of {names[0]} - {names[1]}" if len(names) == 2 else ""))
  for model, row in ratios.items():
    print(f"  {model:<4} " + "  ".join(
        f"{n} {_figure(row[n]['ratio'])} {_interval(row[n]['ratio_ci'])}" for n in names)
          + (f"  difference {_interval(row['difference_ci'])}" if "difference_ci" in row
             else ""))
  fidelity_rows = _compare_fidelity(reports)
  print("\nfidelity, 95% bootstrap interval (rows measured: real / synthetic)")
  for row in fidelity_rows:
    print(f"  {row['table']:<12} {row['measure']:<20} " + "  ".join(
        f"{n} {_figure(row[n]['value'])} {_interval(row[n]['ci'])} "
        f"({(row[n]['rows'] or {}).get('real')} / {(row[n]['rows'] or {}).get('synthetic')})"
        for n in names))
  headlines = {name: _headline(report) for name, report in reports.items()}
  for name, headline in headlines.items():
    control = headline["shuffled_label_control"]
    print(f"\n{name}: ratios " + ", ".join(
        f"{m} {_figure(v)}" for m, v in headline["synthetic_relative_to_real"].items())
          + f"; shuffled-label control {_figure(control['auroc'])} "
          f"{_interval(control['auroc_ci'])}; Spearman {_figure(headline['correlation_spearman'])}"
          f", median KS {_figure(headline['median_ks'])}; strongest attack "
          f"{_figure(headline['membership_auroc'])} ({headline['strongest']['artifact']}, "
          f"{headline['strongest']['attack']}), control "
          f"{_figure(headline['positive_control_auroc'])}; DCR ratio "
          f"{_figure(headline['dcr_ratio'])}; baselines: {headline['baselines']}")
    print("  attacks: " + ", ".join(f"{k} {_figure(v)}" for k, v in headline["attacks"].items()))
    print(f"  {seconds[name]:.0f} s; steps: " + ", ".join(
        f"{k} {v:.0f}" for k, v in reports[name]["step_seconds"].items()))
  if FLAGS.out:
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      json.dump(json_safe({"run_dir": FLAGS.run_dir, "seconds": seconds, "utility": rows,
                           "ratios": ratios,
                           "fidelity": fidelity_rows, "headline": headlines,
                           "step_seconds": {n: r["step_seconds"] for n, r in reports.items()}}),
                f, indent=2)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
