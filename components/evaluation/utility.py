"""Utility: train simple models on one source of patients, test on held-out real patients.

SPRINT_gan's protocol (random forest, logistic regression, linear SVM, k nearest
neighbours trained on real, non-private synthetic or private synthetic data, tested on
the same real test split), with AUROC as well as accuracy and percentile bootstrap
intervals over the test patients. Hyperparameters are fixed here, never tuned: tuning
on the test split would make it a validation split.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from clinical_dp.report_format import auroc

MODELS = ("lr", "rf", "svm", "knn")
_LONGEST_FIRST = ("rf", "knn", "svm", "lr")
MODEL_NAMES = {"lr": "logistic regression", "rf": "random forest", "svm": "linear SVM",
               "knn": "k nearest neighbours"}


@dataclasses.dataclass(frozen=True)
class UtilityConfig:
  bootstrap_samples: int = 200
  confidence: float = 0.95
  forest_trees: int = 200
  neighbours: int = 15
  shuffle_repeats: int = 20  # label permutations averaged by the shuffled-label control
  # A model is fitted on at most this many training rows: a seeded sub-sample above it,
  # every row at or below (None: always every row), for the real, the synthetic and the
  # baselines' tables alike, so the synthetic / real ratio compares equal training sizes.
  # The forest, the SVM and kNN cost time linear or worse in the rows. Measured at 100 k
  # patients (docs/benchmarks.md, the report at scale): the four ratios on 20 000 rows
  # within their bootstrap intervals of those on all 79 984, in a quarter of the time;
  # kNN's and the forest's own AUROCs are lower (kNN on real 0.934 against 0.949). The
  # tables of the tests and `make demo` stay below the cap: unchanged.
  max_training_rows: Optional[int] = 20_000
  # Threads fitting the report's models side by side, and growing each forest's trees
  # (-1: one per core; 1: one after the other, here). Every fit is seeded, so the figures
  # do not depend on it.
  parallel_jobs: int = -1
  # Paired bootstrap of the fidelity measures (fidelity.fidelity_bootstrap): resamples,
  # and the rows drawn per resample above which it draws fewer and rescales the spread.
  fidelity_bootstrap_samples: int = 100
  fidelity_bootstrap_rows: int = 2000
  # Fidelity and missingness are measured on at most this many rows of the real training
  # table and of each synthetic table: a seeded sub-sample above it, every row at or below
  # (None: always every row). With both caps set, each DP baseline then samples only as
  # many patients as the larger cap, not as many as the released table: at a million
  # patients the 801 166-row tables, and a baseline's as large beside them, were the
  # report's peak memory. Measured at a million (docs/benchmarks.md, "A million patients
  # in 8 GB"): the median KS within the whole tables' interval, the Spearman 0.0011 lower
  # (fewer rows, noisier correlations), the comparisons with the baselines the same. The
  # tables of the tests and `make demo` stay below it.
  max_fidelity_rows: Optional[int] = 100_000
  seed: int = 0


def make_model(name: str, config: UtilityConfig):
  """A scikit-learn model with fixed settings (features are already on a [0, 1] scale)."""
  if name == "lr":
    return LogisticRegression(max_iter=2000)
  if name == "rf":
    # Its trees grow on parallel_jobs threads; random_state fixes each tree's draws up
    # front, so the forest is the same on any number of threads.
    return RandomForestClassifier(n_estimators=config.forest_trees,
                                  n_jobs=config.parallel_jobs, random_state=config.seed)
  if name == "svm":
    return LinearSVC(dual="auto", max_iter=5000, random_state=config.seed)
  if name == "knn":
    return KNeighborsClassifier(n_neighbors=config.neighbours)
  raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")


def decision_scores(model, x: np.ndarray) -> np.ndarray:
  """Higher means more likely positive: probabilities where the model has them."""
  if hasattr(model, "predict_proba"):
    return model.predict_proba(x)[:, list(model.classes_).index(1)]
  return model.decision_function(x)


def one_class_reason(y_true: np.ndarray, what: str = "the test split") -> Optional[str]:
  """Why AUROC is n/a on these labels, or None when both classes are present."""
  classes = np.unique(np.asarray(y_true).reshape(-1))
  if len(classes) >= 2:
    return None
  if not len(classes):
    return f"{what} is empty"
  return f"{what} has only label {classes.tolist()[0]}; AUROC needs both classes"


def bootstrap_resamples(y_true: np.ndarray, config: UtilityConfig) -> List[np.ndarray]:
  """Test patients drawn with replacement, `bootstrap_samples` times, keeping the draws
  that hold both classes (AUROC needs both). A function of y_true and the seed only, so
  every model scored on the same test split gets the same resamples: paired draws."""
  rng = np.random.default_rng(config.seed)
  labels = np.asarray(y_true, np.float64).reshape(-1)  # 1 / 0
  n = len(labels)
  draws = (rng.integers(0, n, n) for _ in range(config.bootstrap_samples))
  return [index for index in draws if np.ptp(labels[index]) > 0]  # both labels drawn


def percentile_interval(estimates, confidence: float) -> Optional[list]:
  if not len(estimates):
    return None
  tail = (1 - confidence) / 2 * 100
  return [float(np.percentile(estimates, tail)), float(np.percentile(estimates, 100 - tail))]


def _estimates(y_true: np.ndarray, values: np.ndarray, metric,
               resamples: List[np.ndarray]) -> list:
  return [metric(y_true[i], values[i]) for i in resamples]


def bootstrap_interval(y_true: np.ndarray, values: np.ndarray, metric, config: UtilityConfig
                       ) -> Optional[list]:
  """Percentile interval of metric(y, values) over the bootstrap resamples."""
  return percentile_interval(
      _estimates(y_true, values, metric, bootstrap_resamples(y_true, config)), config.confidence)


def paired_difference_interval(ours: Sequence[float], theirs: Sequence[float],
                               confidence: float = 0.95) -> Optional[list]:
  """Percentile interval of ours - theirs over paired bootstrap draws (the same resamples
  of one test split, as `bootstrap_resamples` makes them); None when they do not pair."""
  if ours is None or theirs is None or not len(ours) or len(ours) != len(theirs):
    return None
  return percentile_interval(np.asarray(ours) - np.asarray(theirs), confidence)


def auroc_draws(y_true: np.ndarray, scores: np.ndarray, resamples: List[np.ndarray]
                ) -> List[float]:
  """auroc(y_true[i], scores[i]) for each resample i (each holds both classes), from one
  sort of the scores: the Mann-Whitney statistic, ties counted half, each patient weighted
  by how often the resample drew it (the area under the ROC curve is that statistic, so
  this is roc_auc_score to float rounding). Calling roc_auc_score on each of 200 resamples
  of a 100 000-patient test split took about 8 s per model."""
  values, tie = np.unique(scores, return_inverse=True)
  tie = tie.reshape(-1)
  positive = (np.asarray(y_true).reshape(-1) == 1).astype(np.float64)
  draws = []
  for index in resamples:
    drawn = np.bincount(index, minlength=len(tie)).astype(np.float64)
    pos = np.bincount(tie, weights=drawn * positive, minlength=len(values))
    neg = np.bincount(tie, weights=drawn * (1.0 - positive), minlength=len(values))
    below = np.cumsum(neg) - neg
    draws.append(float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum())))
  return draws


def _accuracy(y_true: np.ndarray, predicted: np.ndarray) -> float:
  return float(np.mean(y_true == predicted))


def score_predictions(y_true: np.ndarray, scores: np.ndarray, predicted: np.ndarray,
                      config: UtilityConfig) -> Dict:
  """AUROC and accuracy with bootstrap intervals."""
  y_true, scores = np.asarray(y_true).reshape(-1), np.asarray(scores)
  resamples = bootstrap_resamples(y_true, config)
  draws = auroc_draws(y_true, scores, resamples)
  result = {"auroc": auroc(y_true, scores),
            "auroc_ci": percentile_interval(draws, config.confidence),
            # Kept so that two tables' models can be compared draw by draw.
            "auroc_bootstrap": [round(d, 6) for d in draws],
            "accuracy": _accuracy(y_true, predicted),
            "accuracy_ci": percentile_interval(
                _estimates(y_true, np.asarray(predicted), _accuracy, resamples),
                config.confidence),
            "test_patients": int(len(y_true))}
  reason = one_class_reason(y_true)
  if reason:
    result["auroc_reason"] = reason
  return result


def seeded_subsample(rows: int, cap: Optional[int], seed: Sequence[int]
                     ) -> Optional[np.ndarray]:
  """The positions (ascending) of `cap` of `rows` rows drawn without replacement from
  `seed` alone; None when every row is kept (no cap, or `rows` at or below it)."""
  if cap is None or rows <= cap:
    return None
  return np.sort(np.random.default_rng(list(seed)).choice(rows, cap, replace=False))


def training_subsample(rows: int, config: UtilityConfig) -> Optional[np.ndarray]:
  """The positions of the training rows a model is fitted on when there are more than
  `max_training_rows` (seeded_subsample); None when every row is used."""
  return seeded_subsample(rows, config.max_training_rows, [config.seed, rows])


def fidelity_subsample(rows: int, config: UtilityConfig) -> Optional[np.ndarray]:
  """The positions of a table's rows that fidelity and missingness measure when it has
  more than `max_fidelity_rows` (seeded_subsample, a stream apart from the models'); None
  when every row is used. The same for every table of as many rows: the real training
  rows are the same ones for the released table and each baseline (paired draws)."""
  return seeded_subsample(rows, config.max_fidelity_rows, [config.seed, rows, 1])


def baseline_patients(config: UtilityConfig, released_patients: int) -> int:
  """How many patients each DP baseline samples: no more than the largest table any of its
  measures reads (the models' and fidelity's sub-samples), and never more than the
  released table has."""
  caps = (config.max_training_rows, config.max_fidelity_rows)
  if any(cap is None for cap in caps):
    return released_patients
  return min(released_patients, max(caps))


def train_and_test(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, config: UtilityConfig) -> Dict:
  """One model trained on one source (on its seeded sub-sample above
  `max_training_rows`), scored on the real test split."""
  y_train = np.asarray(y_train).reshape(-1)
  rows = len(y_train)
  kept = training_subsample(rows, config)
  if kept is not None:
    x_train, y_train = x_train[kept], y_train[kept]
  classes = np.unique(y_train)
  if len(classes) < 2:
    return {"error": f"the training data has only label {classes.tolist()}; nothing to learn",
            "train_patients": int(rows)}
  model = make_model(name, config).fit(x_train, y_train)
  result = score_predictions(y_test, decision_scores(model, x_test), model.predict(x_test),
                             config)
  result["train_patients"] = int(rows)
  if kept is not None:
    result["fitted_on_rows"] = int(len(kept))  # a seeded sub-sample of train_patients
  return result


def side_by_side(calls: Sequence[Tuple[Callable, tuple]], jobs: int) -> list:
  """Each (function, arguments) called, results in the order given: on `jobs` threads
  (-1: one per core), or here one after the other when jobs is 1 or there is one call.
  The calls must not depend on each other or on shared random state.

  Threads, not processes: scikit-learn's fits and predictions run outside the GIL, the
  tables are shared rather than copied, and nothing outlives the call. (Worker
  processes were no faster here and gave different figures in the last digits: their
  BLAS ran on one thread, which sums in another order.)"""
  if jobs == 1 or len(calls) < 2:
    return [function(*arguments) for function, arguments in calls]
  return joblib.Parallel(n_jobs=jobs, backend="threading")(
      joblib.delayed(function)(*arguments) for function, arguments in calls)


def utility_table(sources: Dict[str, tuple], x_test: np.ndarray, y_test: np.ndarray,
                  config: UtilityConfig) -> Dict[str, Dict[str, Dict]]:
  """{source: {model: metrics}} for every training source (e.g. real, synthetic); the
  models are fitted side by side (`parallel_jobs`)."""
  # The forests first: the longest fits, so the others fill the second core meanwhile.
  pairs = [(source, name) for name in _LONGEST_FIRST for source in sources]
  results = side_by_side([(train_and_test, (name, *sources[source], x_test, y_test, config))
                          for source, name in pairs], config.parallel_jobs)
  table: Dict[str, Dict[str, Dict]] = {source: {} for source in sources}
  for (source, name), result in zip(pairs, results):
    table[source][name] = result
  return table


def complete_case(x: np.ndarray, y: np.ndarray, complete: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, config: UtilityConfig) -> Dict:
  """Real-data models trained only on the complete training rows (no missing modeled
  cell), scored on the same full test split: what dropping incomplete patients would
  have given, beside modeling their holes. {"models": {model: metrics}, "rows_kept",
  "rows_all"}."""
  complete = np.asarray(complete, bool).reshape(-1)
  y = np.asarray(y).reshape(-1)
  models = utility_table({"complete": (x[complete], y[complete])}, x_test, y_test, config)
  return {"models": models["complete"], "rows_kept": int(complete.sum()),
          "rows_all": int(len(complete))}


def shuffled_label_control(x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
                           y_test: np.ndarray, config: UtilityConfig) -> Dict:
  """Logistic regression on the same rows with their labels permuted: on average it must
  score at chance on the test split, or the evaluation is leaking labels somewhere.

  One permutation is not enough: a model fit to noise still points in some direction,
  and AUROC ignores how weakly, so a single run can land far from 0.5 either way when
  the test labels follow the features closely. The mean over permutations cannot.
  """
  rng = np.random.default_rng(config.seed + 1)
  y = np.asarray(y).reshape(-1)
  # The permutations are drawn here, in order, so the fits may run anywhere.
  no_bootstrap = dataclasses.replace(config, bootstrap_samples=0)
  runs = side_by_side([(train_and_test, ("lr", x, rng.permutation(y), x_test, y_test,
                                          no_bootstrap))
                       for _ in range(config.shuffle_repeats)], config.parallel_jobs)
  if any("error" in r for r in runs):
    return {"model": "lr", "error": runs[0].get("error", "a permutation could not be fit")}
  if any(r["auroc"] is None for r in runs):
    return {"model": "lr", "permutations": len(runs), "auroc": None,
            "auroc_reason": runs[0].get("auroc_reason", "AUROC could not be computed"),
            "error": runs[0].get("auroc_reason", "AUROC could not be computed"),
            "accuracy": float(np.mean([r["accuracy"] for r in runs])),
            "test_patients": runs[0]["test_patients"]}
  aurocs = np.array([r["auroc"] for r in runs])
  return {"model": "lr", "permutations": len(runs), "auroc": float(aurocs.mean()),
          "auroc_sd": float(aurocs.std()),
          "auroc_ci": [float(aurocs.mean() - 1.96 * aurocs.std() / np.sqrt(len(runs))),
                       float(aurocs.mean() + 1.96 * aurocs.std() / np.sqrt(len(runs)))],
          "accuracy": float(np.mean([r["accuracy"] for r in runs])),
          "test_patients": runs[0]["test_patients"]}


def relative_to_real(table: Dict[str, Dict[str, Dict]], source: str) -> Dict[str, Optional[float]]:
  """AUROC trained on `source` as a fraction of AUROC trained on real data, per model."""
  ratios = {}
  for name in MODELS:
    real, other = table["real"].get(name, {}), table.get(source, {}).get(name, {})
    numerator, denominator = other.get("auroc"), real.get("auroc")
    ratios[name] = (numerator / denominator
                    if numerator is not None and denominator else None)
  return ratios
