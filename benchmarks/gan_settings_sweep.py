"""How the default DP GAN settings are chosen: a sweep on simulated data only.

Each candidate GanConfig is trained at the release's budget (epsilon 1, delta 1e-5 per
patient by default) on simulated `sprint` and `icu` tables drawn with another seed than
the demo's (0), split by patient as the pipeline splits (8 train : 1 eval : 1 test; the
eval share is left out as the pipeline leaves it out of training). The synthetic table
(as many rows as the train split) is scored by the report's own scoring path
(components/evaluation_report.score_table): train on synthetic, test on real, as a ratio
to trained on real (LR, RF, SVM, kNN), and fidelity to the train split (correlation
Spearman, median and max KS, the largest per-visit median trajectory error of each
series in clinical units). The DP baselines of the report (copula, independent
marginals) are fitted at the same budget as reference rows, and the real test split
against the train split gives the noise floor of the fidelity measures.

No user data is involved, so choosing the defaults here costs no privacy; they must
never be tuned on the user's table.

Candidates that need a word:
- copula_only: the default's own released statistics with no refinement. The generator
  learning rate is 0, so Adam never moves it from its start, which is exactly the copula
  (the residual is zero-initialized); with the same seed the statistics' noise draws are
  those of `default`, so default vs copula_only isolates what the DP discriminator adds.
  One epoch of discriminator steps still runs (their output is discarded) and is charged,
  so the epsilon shown is the whole budget.
- copula_0.99: the same with 99% of the budget on the statistics: would the
  refinement's share be better spent on less noisy statistics?
- paper_generator: statistics_share 0, SPRINT_gan's generator learned from noise alone,
  at the default batch and epochs.

  nice -n 5 .venv/bin/python benchmarks/gan_settings_sweep.py --kinds sprint,icu,skewed \
      --candidates default,copula_only,residual_penalty_1 --repeats 2 [--out sweep.json]
"""

import os
import sys

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)  # this checkout's modules, tests/ among them

import clinical_dp  # noqa: E402,F401  (selects Keras 2 before TensorFlow)

import dataclasses  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clinical_dp.names import binary_label_spec  # noqa: E402
from clinical_dp.simulators import KINDS, simulate, write_simulated  # noqa: E402
from clinical_dp.spec import DatasetSpec  # noqa: E402
from clinical_dp.validation import validate_table  # noqa: E402
from components import evaluation_report  # noqa: E402
from components.evaluation import baselines, fidelity, utility  # noqa: E402
from components.evaluation.utility import UtilityConfig  # noqa: E402
from trainers import features, gan, gan_export, gan_trainer  # noqa: E402
from trainers.dp_training import PrivacyBudget  # noqa: E402
from tests import real_shaped  # noqa: E402

_UNREFINED = dict(generator_learning_rate=0.0, epochs=1)  # see copula_only above
CANDIDATES = {
    "default": gan.GanConfig(),
    "pooled_correlation": gan.GanConfig(correlation_by_class=False),
    "class_correlation": gan.GanConfig(correlation_by_class=True),
    "no_visit_smoothing": gan.GanConfig(smooth_visits=False),
    "no_visit_correlations": gan.GanConfig(smooth_visit_correlations=False),
    "copula_only": gan.GanConfig(**_UNREFINED),
    "copula_0.99": gan.GanConfig(statistics_share=0.99, **_UNREFINED),
    "paper_generator": gan.GanConfig(statistics_share=0.0),
    "residual_penalty_1": gan.GanConfig(residual_penalty=1.0),
    "residual_penalty_100": gan.GanConfig(residual_penalty=100.0),
    "g_lr_2e-5": gan.GanConfig(generator_learning_rate=2e-5),
    "g_lr_1e-3": gan.GanConfig(generator_learning_rate=1e-3),
    "share_0.8": gan.GanConfig(statistics_share=0.8),
    "share_0.9": gan.GanConfig(statistics_share=0.9),
    "marginal_weight_0.4": gan.GanConfig(marginal_weight=0.4),
    "marginal_weight_0.6": gan.GanConfig(marginal_weight=0.6),
    "correlation_clip_0.8": gan.GanConfig(correlation_clip=0.8),
    "correlation_clip_1.0": gan.GanConfig(correlation_clip=1.0),
    "bins_12": gan.GanConfig(statistics_bins=12),
    "bins_16": gan.GanConfig(statistics_bins=16),
    "bins_24": gan.GanConfig(statistics_bins=24),
    "equal_bins": gan.GanConfig(scale_weight=0.0),  # bins of the public bounds (issue 24)
    "scale_weight_0.05": gan.GanConfig(scale_weight=0.05),
    "scale_weight_0.2": gan.GanConfig(scale_weight=0.2),
    "scale_mix_0.5": gan.GanConfig(scale_mix=0.5),
    "scale_mix_0.95": gan.GanConfig(scale_mix=0.95),
    "scale_public_0.05": gan.GanConfig(scale_public=0.05),
    "scale_public_0.2": gan.GanConfig(scale_public=0.2),  # before: no held range
}
DELTA = 1e-5
SKEWED = "skewed"
# Fewer bootstrap draws and trees than the report: the sweep reads point estimates.
UTILITY = UtilityConfig(bootstrap_samples=20, forest_trees=50)

FLAGS = flags.FLAGS
flags.DEFINE_list("kinds", ["sprint", "icu"],
                  f"simulated tables, of {list(KINDS) + [SKEWED]} ({SKEWED}: the skewed-lab "
                  "test table of tests/real_shaped.py, 4000 patients with holes and dropout)")
flags.DEFINE_integer("seed", 11, "simulation seed (never 0, the demo table's)")
flags.DEFINE_float("target_epsilon", 1.0, "budget of each candidate and baseline")
flags.DEFINE_list("candidates", list(CANDIDATES), "names of the configurations to try")
flags.DEFINE_integer("repeats", 2, "training seeds per candidate; the rows are their means")
flags.DEFINE_boolean("baselines", True, "also fit the report's DP baselines")
flags.DEFINE_string("out", None, "optional JSON file for every measured row")


@dataclasses.dataclass
class _Split:
  """A simulated table split by patient, encoded as the report encodes the real splits."""
  spec: DatasetSpec  # the label as 1 / 0, as the pipeline stores it
  user_spec: DatasetSpec
  train: pd.DataFrame
  test: pd.DataFrame
  inputs: List[np.ndarray]
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  max_rows_per_patient: int
  real_utility: Dict

  def score(self, table: pd.DataFrame, x: Optional[np.ndarray] = None,
            y: Optional[np.ndarray] = None) -> Dict:
    if x is None:
      x, _, y = evaluation_report.encode(table, self.spec)
    return evaluation_report.score_table(table, x, y, self.train, self.x_test, self.y_test,
                                         self.real_utility, self.user_spec, UTILITY)


def _patient_split(table: pd.DataFrame, id_column: Optional[str], seed: int
                   ) -> Tuple[pd.DataFrame, pd.DataFrame]:
  """Train and test rows, 8 : 1 of 10 shares of patients (a patient's rows stay together,
  as the pipeline's hash split on the id keeps them)."""
  ids = table[id_column] if id_column else pd.Series(np.arange(len(table)), table.index)
  patients = ids.unique()
  share = np.random.default_rng(seed).permutation(len(patients)) % 10
  train = set(patients[share < 8])
  test = set(patients[share == 9])
  return (table[ids.isin(train)].reset_index(drop=True),
          table[ids.isin(test)].reset_index(drop=True))


def _simulated_split(kind: str, seed: int, directory: str) -> _Split:
  frame, user_spec = (real_shaped.skewed_labs_with_dropout(seed=seed) if kind == SKEWED
                      else simulate(kind, seed=seed))
  table = validate_table(write_simulated(directory, frame, user_spec)[0], user_spec).table
  spec = binary_label_spec(user_spec)  # validated tables hold the label as 1 / 0
  train, test = _patient_split(table, spec.id_column, seed)
  inputs, labels = features.encode_table(train, spec)
  x_test, _, y_test = evaluation_report.encode(test, spec)
  x_train, y_train = features.flatten_inputs(inputs), labels.reshape(-1)
  rows = features.max_rows_per_patient({spec.id_column: train[spec.id_column].to_numpy()},
                                       spec.id_column) if spec.id_column else 1
  real = utility.utility_table({"real": (x_train, y_train)}, x_test, y_test, UTILITY)["real"]
  return _Split(spec, user_spec, train, test, inputs, x_train, y_train, x_test, y_test, rows,
                real)


def _check_unrefined(trained: gan_trainer.TrainedGan) -> None:
  """copula_only must sample the released copula: its residual never left zero."""
  residual = trained.generator.get_layer("residual").get_weights()
  if any(np.any(w != 0) for w in residual):
    raise AssertionError("the unrefined copula generator moved during training")


def _train_and_sample(split: _Split, config: gan.GanConfig, seed: int, directory: str
                      ) -> Tuple[pd.DataFrame, float, float]:
  """The candidate's synthetic table, the epsilon it spent and train + sample seconds."""
  budget = PrivacyBudget(FLAGS.target_epsilon, DELTA)
  start = time.perf_counter()
  trained = gan_trainer.train_gan(split.inputs, split.y_train.reshape(-1, 1), split.spec,
                                  config, budget, seed=seed,
                                  max_rows_per_patient=split.max_rows_per_patient,
                                  log=lambda _: None)
  if config.generator_learning_rate == 0 and config.statistics_share:
    _check_unrefined(trained)
  # The trainer may widen the latent to the copula's codes: sample with its config.
  export_dir = gan_export.export_generator(trained.generator, split.spec,
                                           trained.config.latent_dim, directory)
  table = gan_export.generate_table(export_dir, split.spec, len(split.train),
                                    trained.positive_rate)
  return table, trained.record.epsilon, time.perf_counter() - start


def _baseline_rows(split: _Split, seed: int) -> Dict[str, Dict]:
  """The report's DP baselines at the same budget, each timed for its fit + sample."""
  seconds = []
  clock = [time.perf_counter()]

  def score(table, x, y):
    # fit_baselines fits and samples a baseline, then scores it: the time since the
    # previous score returned is that baseline's fit + sample.
    seconds.append(time.perf_counter() - clock[0])
    scored = split.score(table, x, y)
    clock[0] = time.perf_counter()
    return scored

  fitted = evaluation_report.fit_baselines(
      split.train, split.x_train, split.y_train, split.spec,
      {"target_epsilon": FLAGS.target_epsilon, "delta": DELTA}, len(split.train), seed,
      score, log=lambda _: None)
  return {f"baseline_{name}": _measures(fitted[name], fitted[name]["privacy"]["epsilon"],
                                        seconds[index])
          for index, name in enumerate(baselines.BASELINES)}


def _measures(scored: Dict, epsilon: Optional[float], seconds: Optional[float]) -> Dict:
  """The numbers one row prints, from score_table's {"utility", "fidelity"}."""
  fid = scored["fidelity"]
  row = {"epsilon": epsilon, "seconds": seconds,
         **{name: scored["utility"]["synthetic_relative_to_real"][name]
            for name in utility.MODELS},
         "spearman": fid["correlation_spearman"], "median_ks": fid["median_ks"],
         "max_ks": fid["max_ks"]}
  row.update({f"trajectory_{series}": error["max"]
              for series, error in fid["trajectory_error"].items()})
  return row


def _noise_floor(split: _Split) -> Dict:
  """The real test split's fidelity to the train split (utility ratio 1 by definition)."""
  # Under the 1 / 0 label spec both tables already hold the labels it names.
  scored = {"fidelity": fidelity.fidelity_report(split.train, split.test, split.spec),
            "utility": {"synthetic_relative_to_real": dict.fromkeys(utility.MODELS, 1.0)}}
  return _measures(scored, None, None)


def _mean(rows: List[Dict]) -> Dict:
  """Per measure, the mean over repeats of the values that were measured."""
  result = {}
  for key in rows[0]:
    values = [r[key] for r in rows if r.get(key) is not None]
    result[key] = float(np.mean(values)) if values else None
  return result


def _format(value: Optional[float], width: int, digits: int) -> str:
  return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def _width(series: str) -> int:
  return max(10, len(series) + 6)


def _print_header(series: List[str]) -> None:
  print(f"{'kind':<7}{'candidate':<22}{'eps':>6}{'sec':>6}{'LR':>7}{'RF':>7}{'SVM':>7}"
        f"{'kNN':>7}{'Spear':>7}{'medKS':>7}{'maxKS':>7}"
        + "".join(f"{'traj ' + s:>{_width(s)}}" for s in series), flush=True)


def _print_row(kind: str, name: str, row: Dict, series: List[str]) -> None:
  print(f"{kind:<7}{name:<22}{_format(row['epsilon'], 6, 3)}{_format(row['seconds'], 6, 1)}"
        + "".join(_format(row[m], 7, 3) for m in utility.MODELS)
        + "".join(_format(row[m], 7, 3) for m in ("spearman", "median_ks", "max_ks"))
        + "".join(_format(row.get(f"trajectory_{s}"), _width(s), 1) for s in series),
        flush=True)


def _sweep_kind(kind: str, tmp: str) -> Dict[str, Dict]:
  split = _simulated_split(kind, FLAGS.seed, f"{tmp}/{kind}")
  series = [s.name for s in split.spec.series]
  print(f"\nsimulated {kind} seed {FLAGS.seed}: {len(split.train)} training rows "
        f"(max {split.max_rows_per_patient} per patient), {len(split.test)} test rows; "
        f"epsilon {FLAGS.target_epsilon:g}, delta {DELTA:g} per patient; "
        f"mean of {FLAGS.repeats} seeds"
        + ("; traj: max |median synthetic - real| per visit and class" if series else ""),
        flush=True)
  _print_header(series)
  result = {"real_test_split": _noise_floor(split)}
  _print_row(kind, "(real test split)", result["real_test_split"], series)
  if FLAGS.baselines:
    repeats = [_baseline_rows(split, seed) for seed in range(1, FLAGS.repeats + 1)]
    for name in repeats[0]:
      result[name] = _mean([r[name] for r in repeats])
      _print_row(kind, name, result[name], series)
  for name in FLAGS.candidates:
    rows = []
    for seed in range(1, FLAGS.repeats + 1):
      table, epsilon, seconds = _train_and_sample(split, CANDIDATES[name], seed,
                                                  f"{tmp}/{kind}-{name}-{seed}")
      rows.append(_measures(split.score(table), epsilon, seconds))
    result[name] = _mean(rows)
    _print_row(kind, name, result[name], series)
  return result


def main(_):
  logging.set_verbosity(logging.ERROR)  # TensorFlow's SavedModel notes would bury the rows
  if FLAGS.seed == 0:
    raise app.UsageError("--seed 0 draws the demo's table; choose the defaults on another")
  unknown = sorted(set(FLAGS.candidates) - set(CANDIDATES))
  if unknown:
    raise app.UsageError(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
  with tempfile.TemporaryDirectory() as tmp:
    result = {kind: _sweep_kind(kind, tmp) for kind in FLAGS.kinds}
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump({"seed": FLAGS.seed, "target_epsilon": FLAGS.target_epsilon, "delta": DELTA,
                 "repeats": FLAGS.repeats, "rows": result}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
