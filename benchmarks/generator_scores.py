"""One score for any synthetic table, so every generator is measured the same way.

`score_table` puts a synthetic table through the project's own evaluation
(components/evaluation): train on synthetic, test on the real test split (AUROC of
logistic regression, random forest, linear SVM and kNN, as a ratio to the same model
trained on the real training split), and fidelity (correlation-structure Spearman,
median and largest per-column Kolmogorov-Smirnov distance). Peers
(benchmarks/peer_generators.py), the pipeline's generator and its DP baselines all
go through this one function, so their rows in a table can be compared.

Tables are as `clinical_dp.validation.validate_table` returns them: the spec's column
names, the label as 1 / 0, categorical cells as text. Synthetic tables need only the
label and the feature columns (no id, no site).
"""

import clinical_dp  # noqa: F401  (selects Keras 2 before TensorFlow)

from typing import Dict, Optional

import numpy as np
import pandas as pd

from clinical_dp.names import binary_label_spec
from clinical_dp.spec import DatasetSpec
from components import evaluation_report
from components.evaluation import fidelity, utility
from components.evaluation.utility import UtilityConfig


def _encode(frame: pd.DataFrame, spec: DatasetSpec):
  """Features and 1 / 0 labels exactly as the report encodes them."""
  x, _, y = evaluation_report.encode(frame, binary_label_spec(spec))
  return x, y


def _fidelity_summary(real: pd.DataFrame, other: pd.DataFrame, spec: DatasetSpec) -> Dict:
  report = fidelity.fidelity_report(evaluation_report.with_user_labels(real, spec),
                                    evaluation_report.with_user_labels(other, spec), spec)
  ks = [m["ks"] for m in report["marginals"].values() if m.get("ks") is not None]
  worst = max(report["marginals"], key=lambda c: report["marginals"][c].get("ks") or -1.0,
              default=None)
  return {"correlation_spearman": report["correlation_spearman"],
          "median_ks": report["median_ks"],
          "max_ks": max(ks) if ks else None,
          "max_ks_column": worst if ks else None,
          "max_total_variation": report["max_total_variation"],
          "label_rate": report["label_rate"]}


def score_table(train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame,
                spec: DatasetSpec, config: Optional[UtilityConfig] = None) -> Dict:
  """Utility and fidelity of `synthetic`, generated from `train`, on the real `test` split.

  utility: {model: AUROC trained on synthetic / AUROC trained on real train}, both
  tested on `test`; auroc: the AUROCs themselves. fidelity: against the real training
  split, as the pipeline's report measures the released table; fidelity_on_test: the
  same against the test split (which the generator never saw).
  """
  config = config or UtilityConfig()
  x_train, y_train = _encode(train, spec)
  x_test, y_test = _encode(test, spec)
  x_synthetic, y_synthetic = _encode(synthetic, spec)
  table = utility.utility_table({"real": (x_train, y_train),
                                 "synthetic": (x_synthetic, y_synthetic)},
                                x_test, y_test, config)
  return {
      "utility": utility.relative_to_real(table, "synthetic"),
      "auroc": {source: {model: table[source][model].get("auroc")
                         for model in utility.MODELS} for source in ("real", "synthetic")},
      "errors": {model: table["synthetic"][model]["error"] for model in utility.MODELS
                 if "error" in table["synthetic"][model]},
      "fidelity": _fidelity_summary(train, synthetic, spec),
      "fidelity_on_test": _fidelity_summary(test, synthetic, spec),
      "rows": {"train": int(len(train)), "test": int(len(test)),
               "synthetic": int(len(synthetic))},
  }


def noise_floor(train: pd.DataFrame, test: pd.DataFrame, spec: DatasetSpec) -> Dict:
  """The real test split scored as if it were a synthetic table of the training split:
  the fidelity two real samples of the same patients reach (utility ratios are 1 by
  definition)."""
  return {"utility": {model: 1.0 for model in utility.MODELS},
          "fidelity": _fidelity_summary(train, test, spec),
          "rows": {"train": int(len(train)), "test": int(len(test))}}


def summary_row(score: Dict) -> Dict[str, Optional[float]]:
  """The figures of one row of the comparison table, flat."""
  row = {model: score["utility"].get(model) for model in utility.MODELS}
  row.update({key: score["fidelity"].get(key)
              for key in ("correlation_spearman", "median_ks", "max_ks")})
  return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in row.items()}
