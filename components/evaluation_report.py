"""EvaluationReport: utility, fidelity, membership attacks and disclosure, side by side.

Reads the pipeline's raw patient splits (ExampleGen), the released synthetic table,
the released DP classifier, the generator's privacy record and the discriminator kept
for the audit, plus, when present, TFX Evaluator's metrics (the DP classifier and its
non-private twin) and the federated step's results. Writes `report.json` and a
self-contained `report.html` into its output artifact.

Splits: the real test split only scores models (utility); attacks use training
patients as members and eval-split patients, which no trainer touches, as non-members.
"""


import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact
from tfx.utils import path_utils

from clinical_dp import memory
from clinical_dp.console import say
from clinical_dp.example_tables import read_example_table
from clinical_dp.files import write_text_atomically
from clinical_dp.names import ColumnKeys, binary_label_spec, user_labels
from clinical_dp.report_format import json_safe
from clinical_dp.spec import DatasetSpec, parse_spec
from clinical_dp.validation import InvalidInputError, validate_table
from components.evaluation import (audit, baselines, disclosure, fidelity, missingness, plots,
                                   report_html, utility, verdicts)
from components.evaluation.audit import AuditConfig
from components.evaluation.step_clock import StepClock, silent
from components.evaluation.report_html import REPORT_HTML, REPORT_JSON
from components.evaluation.verdicts import Thresholds
from components.evaluation.utility import UtilityConfig
from components import early_start
from components.federated_step import FederatedResults
from components.report_references import load_references, references_command
from components.release import compose_released, spec_record
from components.synthetic_data import SYNTHETIC_CSV
from federated.config import RESULTS_FILE
from trainers import dp_training, features
from trainers.gan_run_fn import DISCRIMINATOR_WEIGHTS

SEX_COLUMN = "sex"


class EvaluationReportArtifact(artifact.Artifact):
  """A directory with report.json and report.html."""
  TYPE_NAME = "clinical_dp.EvaluationReport"  # namespaced: Kubeflow compiles only those


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  utility: UtilityConfig = UtilityConfig()
  audit: AuditConfig = AuditConfig()
  thresholds: Thresholds = Thresholds()

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> "ReportConfig":
    raw = json.loads(text) if text else {}
    return cls(utility=UtilityConfig(**raw.get("utility", {})),
               audit=AuditConfig(**raw.get("audit", {})),
               thresholds=Thresholds(**raw.get("thresholds", {})))


def fast_report_config() -> ReportConfig:
  """Fewer bootstrap draws and shadow models, for tests and smoke runs."""
  return ReportConfig(utility=UtilityConfig(bootstrap_samples=50, forest_trees=50),
                      audit=AuditConfig(shadow_models=2))


def split_files(examples_uri: str, split: str) -> List[str]:
  files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
  if not files:
    raise FileNotFoundError(f"no examples in split '{split}' under {examples_uri}")
  return files


def read_split(examples_uri: str, split: str, spec: DatasetSpec) -> pd.DataFrame:
  """One split of raw patients as a table (the user's column names, the label as 1 / 0)."""
  keys = ColumnKeys.for_spec(spec)
  table = read_example_table(split_files(examples_uri, split),
                             [keys.key(c) for c in spec.required_columns])
  table.columns = list(spec.required_columns)
  return table


def records_at(examples_uri: str, split: str, positions: np.ndarray) -> List[bytes]:
  """The split's serialized tf.Examples (the pipeline's feature keys,
  clinical_dp/names.py) at `positions` in read_split's row order, in that order; only
  those are kept (a million-patient split's records would take gigabytes)."""
  wanted = {int(p): i for i, p in enumerate(positions)}
  found: List[Optional[bytes]] = [None] * len(positions)
  start = 0
  records = tf.data.TFRecordDataset(split_files(examples_uri, split), compression_type="GZIP")
  for batch in records.batch(8192).as_numpy_iterator():  # 16x faster than one by one
    for offset in range(len(batch)):
      if start + offset in wanted:
        found[wanted[start + offset]] = batch[offset]
    start += len(batch)
  return found


def read_synthetic(synthetic_csv: str, spec: DatasetSpec) -> pd.DataFrame:
  """The released table, typed and with the label as 1 / 0, as the real splits are read."""
  checked = validate_table(synthetic_csv, spec)
  if not checked.ok:
    raise InvalidInputError(checked.findings)
  return checked.table


def with_user_labels(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
  """The label as the user's classes, for what the report shows by class."""
  return frame.assign(**{spec.label_column: user_labels(frame[spec.label_column], spec)})


def encode(frame: pd.DataFrame, spec: DatasetSpec) -> Tuple[np.ndarray, List[np.ndarray],
                                                            np.ndarray]:
  inputs, labels = features.encode_table(frame, spec)
  return features.flatten_inputs(inputs), inputs, labels.reshape(-1)


def _sample(encoded: Tuple[np.ndarray, List[np.ndarray], np.ndarray], examples_uri: str,
            split: str, limit: int, seed: int) -> audit.Records:
  """At most `limit` patients of an encoded split, in a seeded random order."""
  x, inputs, y = encoded
  order = np.random.default_rng(seed).permutation(len(y))[:limit]
  return audit.Records(x[order], [a[order] for a in inputs], y[order],
                       records_at(examples_uri, split, order))


def tfma_slices(evaluation_uri: str, keys: ColumnKeys) -> Dict[str, Dict[str, Dict]]:
  """{model: {slice: {auroc, accuracy, examples}}} from TFX Evaluator's output, slices
  named by the user's columns."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  names = {"auc": "auroc", "binary_accuracy": "accuracy", "example_count": "examples"}
  result: Dict[str, Dict[str, Dict]] = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    slice_name = "overall" if not metrics.slice_key.single_slice_keys else ", ".join(
        f"{keys.name(k.column)}={_slice_value(k)}" for k in metrics.slice_key.single_slice_keys)
    for pair in metrics.metric_keys_and_values:
      if (pair.key.name in names and not pair.key.is_diff  # is_diff: candidate - baseline
          and not pair.key.HasField("sub_key")):
        model = pair.key.model_name or "candidate"
        value = pair.value.double_value.value
        result.setdefault(model, {}).setdefault(slice_name, {})[names[pair.key.name]] = value
  return result


def _slice_value(key) -> str:
  kind = key.WhichOneof("kind")
  value = getattr(key, kind)
  return value.decode() if isinstance(value, bytes) else str(value)


def privacy_section(generator_record: Dict, classifier_record: Dict,
                    spec_spent: Sequence[Dict] = ()) -> Dict:
  """The synthetic table's guarantee up front (it is the generator's: post-processing);
  the total includes the DP statistics the spec was written from (`spec_spent`, its
  privacy_spent), as ReleasePusher's does."""
  keys = ("epsilon", "delta", "relation", "unit", "accountant", "sampling")
  artifacts = {"synthetic table and generator": generator_record,
               "dp classifier": classifier_record}
  trained = {"generator": generator_record, "dp classifier": classifier_record}
  if spec_spent:
    artifacts["spec"] = trained["spec"] = spec_record(spec_spent)
  return {
      **{k: generator_record[k] for k in keys},
      "artifact": "synthetic table (post-processing of the DP generator)",
      "artifacts": artifacts,
      "all_released_together": compose_released(trained),
  }


def score_table(table: pd.DataFrame, x: np.ndarray, y: np.ndarray, train: pd.DataFrame,
                x_test: np.ndarray, y_test: np.ndarray, real_utility: Dict,
                user_spec: DatasetSpec, config: UtilityConfig,
                clock: Optional[StepClock] = None) -> Dict:
  """Utility and fidelity of one table of synthetic patients (label 1 / 0; encoded as x, y)
  against the real splits: the one code path of the released table and the baselines."""
  clock = clock or silent()
  with clock.step("utility models"):
    use = {"real": real_utility,
           **utility.utility_table({"synthetic": (x, y)}, x_test, y_test, config)}
  use["synthetic_relative_to_real"] = utility.relative_to_real(use, "synthetic")
  with clock.step("shuffled-label control"):
    use["shuffled_label_control"] = utility.shuffled_label_control(x, y, x_test, y_test,
                                                                   config)
  use["test_patients"] = int(len(y_test))
  with clock.step("fidelity"):
    fid = fidelity.fidelity_report(with_user_labels(fidelity_rows(train, config), user_spec),
                                   with_user_labels(fidelity_rows(table, config), user_spec),
                                   user_spec, config.fidelity_bootstrap_samples,
                                   config.fidelity_bootstrap_rows, config.seed)
  return {"utility": use, "fidelity": fid}


def fidelity_rows(frame: pd.DataFrame, config: UtilityConfig) -> pd.DataFrame:
  """The rows of `frame` that fidelity and missingness measure (utility.fidelity_subsample),
  in the table's order."""
  kept = utility.fidelity_subsample(len(frame), config)
  return frame if kept is None else frame.iloc[kept].reset_index(drop=True)


def fit_baselines(train: pd.DataFrame, x_train: np.ndarray, y_train: np.ndarray,
                  spec: DatasetSpec, generator_record: Dict, patients: int, seed: int,
                  score, log=say, clock: Optional[StepClock] = None) -> Dict[str, Dict]:
  """The DP baselines (components/evaluation/baselines.py) at the generator's budget, each
  sampled to `patients` patients and scored by `score(table, x, y)`; never released.
  `clock` times each baseline's fit and sample, and its scoring inside `clock.about`."""
  clock = clock or silent()
  target, delta = baseline_budget(generator_record)
  rows = (int(train[spec.id_column].value_counts().max())
          if spec.id_column and len(train) else 1)  # as features.max_rows_per_patient
  log(f"  EvaluationReport: DP baselines (copula, independent marginals) at epsilon "
      f"{target:g}, {patients} patients each")
  result = {}
  for index, name in enumerate(baselines.BASELINES):
    with clock.about(baselines.BASELINE_NAMES[name]):
      with clock.step("fit and sample"):
        fitted = baselines.fit_and_sample(name, x_train, y_train,
                                          features.PatientLayout.from_spec(spec), target,
                                          delta, rows, patients, seed + index)
        table = features.table_from_flat(fitted.flat, fitted.labels, spec)
        x, _, y = encode(table, spec)
      result[name] = {"name": baselines.BASELINE_NAMES[name], "released": False,
                      **score(table, x, y), "privacy": fitted.privacy}
      del fitted, table, x, y
      memory.return_free_memory()  # a baseline's table is as large as the released one
  return result


def sub_samples(config: ReportConfig, train_rows: int, synthetic_rows: int, members: int,
                holdout_rows: int, non_members: int) -> Dict:
  """What the report measured on seeded sub-samples of a large table, and how big they
  were, with a sentence for the page's data note ("" when nothing was sub-sampled)."""
  fitted = {table: min(rows, config.utility.max_training_rows or rows)
            for table, rows in (("real training", train_rows), ("synthetic", synthetic_rows))}
  shadow = audit.shadow_rows(synthetic_rows, config.audit)
  sentences = []
  if any(fitted[t] < rows for t, rows in (("real training", train_rows),
                                          ("synthetic", synthetic_rows))):
    sentences.append(
        f"Each utility model (and the shuffled-label control and complete-case models) is "
        f"fitted on at most {config.utility.max_training_rows} rows of its table, a seeded "
        f"sub-sample: {fitted['real training']} of {train_rows} real training rows, "
        f"{fitted['synthetic']} of {synthetic_rows} synthetic (the baselines' alike); the "
        f"test split is scored whole.")
  measured = {table: min(rows, config.utility.max_fidelity_rows or rows)
              for table, rows in (("real training", train_rows), ("synthetic", synthetic_rows))}
  baseline = utility.baseline_patients(config.utility, synthetic_rows)
  if measured != {"real training": train_rows, "synthetic": synthetic_rows}:
    sentences.append(
        f"Fidelity and missingness are measured on at most {config.utility.max_fidelity_rows} "
        f"rows of each table, a seeded sub-sample: {measured['real training']} of "
        f"{train_rows} real training rows, {measured['synthetic']} of {synthetic_rows} "
        f"synthetic.")
  if baseline < synthetic_rows:
    sentences.append(f"Each DP baseline samples {baseline} patients, as many as its largest "
                     f"sub-sample.")
  if shadow < synthetic_rows // 2:
    sentences.append(f"Each shadow model of the DP classifier trains on {shadow} synthetic "
                     f"patients (half the table would be {synthetic_rows // 2}).")
  if members < train_rows or non_members < holdout_rows:
    sentences.append(f"The membership attacks score {members} of {train_rows} training and "
                     f"{non_members} of {holdout_rows} eval-split patients.")
  return {
      "utility_models": {"max_training_rows": config.utility.max_training_rows,
                         "rows_fitted": fitted,
                         "rows": {"real training": train_rows, "synthetic": synthetic_rows}},
      "fidelity": {"max_fidelity_rows": config.utility.max_fidelity_rows,
                   "rows_measured": measured},
      "baselines": {"patients": baseline, "released_patients": synthetic_rows},
      "shadow_models": {"max_shadow_rows": config.audit.max_shadow_rows, "rows": shadow,
                        "half_synthetic_table": synthetic_rows // 2},
      "attacks": {"members": members, "of_training": train_rows, "non_members": non_members,
                  "of_eval": holdout_rows},
      "note": "".join(" " + s for s in sentences),
  }


def patients_and_rows(frame: pd.DataFrame, spec: DatasetSpec) -> str:
  """'N patients', and their rows where some patient has several (readmissions)."""
  patients = (int(frame[spec.id_column].nunique()) if spec.id_column in frame
              else len(frame))
  return f"{patients} patients" + (f" ({len(frame)} rows)" if patients != len(frame) else "")


@dataclasses.dataclass
class RealSplits:
  """The real splits the report reads, with their encodings (the label as 1 / 0)."""
  train: pd.DataFrame
  test: pd.DataFrame
  train_encoded: Tuple[np.ndarray, List[np.ndarray], np.ndarray]
  x_test: np.ndarray
  y_test: np.ndarray

  @classmethod
  def read(cls, examples_uri: str, spec: DatasetSpec) -> "RealSplits":
    """`spec`: the user's; the tables are encoded under binary_label_spec(spec)."""
    train = read_split(examples_uri, "train", spec)
    test = read_split(examples_uri, "test", spec)
    x_test, _, y_test = encode(test, binary_label_spec(spec))
    return cls(train, test, encode(train, binary_label_spec(spec)), x_test, y_test)


@dataclasses.dataclass
class References:
  """What the released table is measured against that needs no generator: the utility
  models trained on the real training table (and, with `missing: model`, on its
  complete cases) and the DP baselines, scored as the released table is."""
  real_utility: Dict
  complete_case_real: Optional[Dict]
  baselines: Dict[str, Dict]
  step_seconds: Dict[str, float]


def baseline_budget(generator_record: Dict) -> Tuple[float, float]:
  """The (epsilon, delta) the DP baselines are fitted at: the generator's target."""
  return (generator_record.get("target_epsilon") or generator_record["epsilon"],
          generator_record["delta"])


def compute_references(real: RealSplits, user_spec: DatasetSpec, config: ReportConfig,
                       budget: Tuple[float, float], released_patients: int, log=say,
                       clock: Optional[StepClock] = None,
                       measured_train: Optional[pd.DataFrame] = None) -> References:
  """The report's references (`References`) for a released table of `released_patients`
  from a generator trained at `budget`. A function of the real splits, the configuration
  and those two numbers only, so that it can run before the generator has been trained
  (components/report_references.py, beside the chain). `measured_train`: the caller's
  fidelity_rows(real.train), when it has drawn them already."""
  clock = clock or StepClock(log)
  spec = binary_label_spec(user_spec)
  x_train, _, y_train = real.train_encoded
  with clock.step("utility models, real training table"):
    real_utility = utility.utility_table({"real": (x_train, y_train)}, real.x_test,
                                         real.y_test, config.utility)["real"]
  complete_case_real = None
  if user_spec.models_missing:
    complete = ~missingness.missing_mask(real.train, spec.feature_columns).any(
        axis=1).to_numpy()
    with clock.step("complete-case models, real training table"):
      complete_case_real = utility.complete_case(x_train, y_train, complete, real.x_test,
                                                 real.y_test, config.utility)
  if measured_train is None:
    measured_train = fidelity_rows(real.train, config.utility)
  def score(table, x, y):
    return score_table(table, x, y, measured_train, real.x_test, real.y_test, real_utility,
                       user_spec, config.utility, clock)
  target, delta = budget
  baselines_scored = fit_baselines(
      real.train, x_train, y_train, spec, {"target_epsilon": target, "delta": delta},
      utility.baseline_patients(config.utility, released_patients), config.audit.seed, score,
      log, clock)
  return References(real_utility, complete_case_real, baselines_scored, dict(clock.seconds))


# (the generator's budget, the released table's patients) -> the references computed
# beside the chain for them, or None (components/report_references.py)
AdoptReferences = Callable[[Tuple[float, float], int], Optional[References]]


def build_report(spec: DatasetSpec, config: ReportConfig, examples_uri: str,
                 synthetic_csv: str, generator_dir: str, classifier_dir: str,
                 discriminator_weights: str, evaluation_uri: Optional[str] = None,
                 federated: Optional[Dict] = None, log=say,
                 adopt_references: Optional[AdoptReferences] = None
                 ) -> Tuple[Dict, Dict[str, bytes]]:
  """Every measurement of the report, and its figures, under the user's column names.
  Each sub-step's seconds are said through `log` as it ends and kept in `step_seconds`.
  `adopt_references`: the references already computed beside the chain, when they were
  computed for this generator's budget and table size; else they are computed here."""
  seed = config.audit.seed
  clock = StepClock(log)
  with clock.step("reading the splits and the synthetic table"):
    real = RealSplits.read(examples_uri, spec)
    train, test, train_encoded = real.train, real.test, real.train_encoded
    holdout = read_split(examples_uri, "eval", spec)
    synthetic = read_synthetic(synthetic_csv, spec)
    user_spec, spec = spec, binary_label_spec(spec)  # every table here holds the label as 1/0
    x_train = train_encoded[0]
    x_test, y_test = real.x_test, real.y_test
    x_synthetic, _, y_synthetic = encode(synthetic, spec)
    memory.return_free_memory()  # the CSV's cells as text: twice the table, now garbage
  generator_record = dp_training.read_privacy_record(generator_dir)
  classifier_record = dp_training.read_privacy_record(classifier_dir)

  log(f"  EvaluationReport: utility and fidelity ({len(train)} real training, "
      f"{len(synthetic)} synthetic, {len(test)} real test rows)")
  # The real rows fidelity and missingness measure, drawn once for every table scored
  # (score_table's own fidelity_rows leaves a table at or below the cap as it is).
  measured_train = fidelity_rows(train, config.utility)
  budget = baseline_budget(generator_record)
  references = adopt_references(budget, len(synthetic)) if adopt_references else None
  if references is None:
    references = compute_references(real, user_spec, config, budget, len(synthetic), log,
                                    clock, measured_train)
  else:
    clock.seconds.update({f"{step} (beside the chain)": seconds
                          for step, seconds in references.step_seconds.items()})
  real_utility = references.real_utility
  with clock.about("released table"):
    scored = score_table(synthetic, x_synthetic, y_synthetic, measured_train, x_test, y_test,
                         real_utility, user_spec, config.utility, clock)
  use, fid = scored["utility"], scored["fidelity"]
  holes = None
  if user_spec.models_missing:
    use["complete_case_real"] = references.complete_case_real
    use["missing_value_rule"] = missingness.MODEL_ENCODING_RULE
    with clock.step("missingness"):
      holes = missingness.missingness_fidelity(
          with_user_labels(measured_train, user_spec),
          with_user_labels(fidelity_rows(synthetic, config.utility), user_spec), user_spec)
  use["dp_models"] = {}
  if evaluation_uri:
    slices = tfma_slices(evaluation_uri, ColumnKeys.for_spec(user_spec))
    for model, name in (("candidate", "DP classifier"), ("baseline", "non-private twin")):
      if model in slices:
        use["dp_models"][name] = {"slices": slices[model]}
  compared = references.baselines

  log("  EvaluationReport: membership attacks (shadow models, positive control)")
  members = _sample(train_encoded, examples_uri, "train", config.audit.max_records, seed)
  non_members = _sample(encode(holdout, spec), examples_uri, "eval", config.audit.max_records,
                        seed)
  discriminator = audit.load_discriminator(discriminator_weights, spec,
                                           generator_record["gan_config"])
  targets = {}
  with clock.step("attacks, dp_classifier"):
    targets["dp_classifier"] = audit.audit_dp_classifier(
        classifier_dir, classifier_record, members, non_members, x_synthetic, y_synthetic,
        config.audit)
  with clock.step("attacks, synthetic_data"):
    targets["synthetic_data"] = audit.audit_synthetic_data(x_synthetic, members, non_members)
  with clock.step("attacks, gan_discriminator"):
    targets["gan_discriminator"] = audit.audit_discriminator(discriminator, members,
                                                             non_members)
  with clock.step("attacks, positive_control"):
    targets["positive_control"] = audit.audit_positive_control(
        members, non_members, x_synthetic, y_synthetic, config.audit)
  released = ("dp_classifier", "synthetic_data")
  measured = [(t, a, r) for t in released for a, r in targets[t].items()
              if r.get("auroc") is not None]  # an attack on an empty set is n/a
  strongest = max(measured, key=lambda item: item[2]["auroc"], default=(None, None, {}))
  controls = [r["auroc"] for r in targets["positive_control"].values()
              if r.get("auroc") is not None]
  attack = {
      "membership_auroc": strongest[2].get("auroc"),
      "attacks_compared": len(measured),  # the strongest of these is the headline
      "strongest": {"artifact": strongest[0], "attack": strongest[1], **strongest[2]},
      "positive_control_auroc": max(controls, default=None),
      "released": list(released),
      "targets": targets,
      "thresholds": dataclasses.asdict(config.thresholds),
      "setup": (f"Members: {len(members.y)} training patients; non-members: "
                f"{len(non_members.y)} eval-split patients, which no model trained on. "
                "Shadow models are trained the way the target was, each on "
                f"{audit.shadow_rows(len(y_synthetic), config.audit)} patients drawn from "
                "the released synthetic table. The positive control is a deliberately overfit "
                f"non-private random forest (fully grown trees) trained on "
                f"{min(config.audit.control_members, len(members.y))} of the members. "
                "The GAN discriminator is not released; it is attacked because it is the "
                "only network that saw patients."),
  }

  log("  EvaluationReport: disclosure")
  n = min(len(x_synthetic), len(non_members.y))
  with clock.step("disclosure, distances"):
    disc = disclosure.disclosure_report(x_train, non_members.x[:n], x_synthetic[:n])
  with clock.step("disclosure, exact copies"):
    disc["exact_copies"] = disclosure.exact_copies(
        train, synthetic, spec.feature_columns + [spec.label_column])

  sampled = sub_samples(config, len(train), len(synthetic), len(members.y),
                        len(holdout), len(non_members.y))
  result = {
      "not_for_release": report_html.NOT_FOR_RELEASE,
      "dataset": spec.name,
      "data_note": (f"Real data, split by patient: {patients_and_rows(train, spec)} for "
                    f"training, {patients_and_rows(holdout, spec)} for eval and "
                    f"{patients_and_rows(test, spec)} for test. Synthetic: "
                    f"{len(synthetic)} patients." + sampled["note"]),
      "sub_sampled": sampled,
      "privacy": privacy_section(generator_record, classifier_record, spec.privacy_spent),
      "utility": use, "fidelity": fid, "baselines": compared, "attack": attack,
      "disclosure": disc,
  }
  if holes is not None:
    result["missingness"] = holes
  if federated:
    result["federated"] = federated
  result["headline"] = {"utility": verdicts.utility_verdict(use, config.thresholds),
                        "fidelity": verdicts.fidelity_verdict(fid, config.thresholds),
                        "baselines": verdicts.baseline_verdict(use, fid, compared),
                        "privacy": verdicts.attack_verdict(attack, config.thresholds)}
  with clock.step("figures"):
    figures = {"utility": plots.utility_bars(use, compared),
               "trajectories": plots.trajectories(fid, spec.label_column),
               "correlation": plots.correlation_matrices(fid),
               "attacks": plots.attack_bars(attack)}
    if holes is not None:
      figures["dropout"] = plots.dropout_curves(holes, spec.label_column)
  result["step_seconds"] = clock.seconds
  return result, figures


def read_federated(uri: str) -> Dict:
  with tf.io.gfile.GFile(os.path.join(uri, RESULTS_FILE)) as f:
    return json.load(f)


def write_report(result: Dict, figures: Dict[str, bytes], directory: str) -> Tuple[str, str]:
  os.makedirs(directory, exist_ok=True)
  html_path = write_text_atomically(os.path.join(directory, REPORT_HTML),
                                    report_html.render_html(result, figures))
  json_path = write_text_atomically(os.path.join(directory, REPORT_JSON),
                                    json.dumps(json_safe(result), indent=2, allow_nan=False))
  return json_path, html_path


@tfx.dsl.components.component
def EvaluationReport(  # pylint: disable=invalid-name
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    synthetic_examples: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.Examples],
    generator: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    gan_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    classifier: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    report_dir: tfx.dsl.components.OutputArtifact[EvaluationReportArtifact],
    spec_yaml: tfx.dsl.components.Parameter[str],
    report_config: tfx.dsl.components.Parameter[str] = "",
    evaluation: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ModelEvaluation] = None,
    federated_results: tfx.dsl.components.InputArtifact[FederatedResults] = None,
) -> None:
  """Writes report.json and report.html for the run."""
  spec = parse_spec(spec_yaml)
  with tempfile.TemporaryDirectory(dir=report_dir.uri) as scratch:
    result, figures = build_report(
        spec, ReportConfig.from_json(report_config), examples.uri,
        os.path.join(synthetic_examples.uri, SYNTHETIC_CSV),
        path_utils.serving_model_path(generator.uri),
        path_utils.serving_model_path(classifier.uri),
        os.path.join(gan_run.uri, DISCRIMINATOR_WEIGHTS),
        evaluation_uri=evaluation.uri if evaluation else None,
        federated=read_federated(federated_results.uri) if federated_results else None,
        adopt_references=_references_beside_chain(examples.uri, spec_yaml, report_config,
                                                  scratch))
  write_report(result, figures, report_dir.uri)


def _references_beside_chain(examples_uri: str, spec_yaml: str, report_config: str,
                             scratch: str) -> AdoptReferences:
  """The references started beside the chain (components/report_references.py), if one
  was started with the command this report would run: the same examples, spec,
  configuration, budget and size. A child that failed is reported in the log and the
  references are computed here."""
  def adopt(budget: Tuple[float, float], released_patients: int) -> Optional[References]:
    def command_for(source: List[str]) -> List[str]:
      return references_command(sys.executable, source, spec_yaml, report_config, budget,
                                released_patients, scratch)
    child = early_start.adopt(early_start.EVALUATION_REPORT, command_for, examples_uri)
    if child is None:
      return None
    say(f"  EvaluationReport: its references started beside the chain "
        f"{time.time() - child.started:.0f} s ago; waiting for them")
    completed = early_start.finish(child, scratch)
    for line in child.lines:  # its steps to the console, library output to the log
      (say if line.startswith("  EvaluationReport: ") else print)(line)
    if completed.returncode != 0:
      print(completed.output, flush=True)
      say(f"  EvaluationReport: the references beside the chain failed (exit status "
          f"{completed.returncode}; its lines are in the log); computing them here")
      return None
    return load_references(scratch)
  return adopt
