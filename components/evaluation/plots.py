"""The report's figures, as PNG bytes (matplotlib without a display)."""

from __future__ import annotations

import io
from typing import Dict, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from components.evaluation.utility import MODEL_NAMES, MODELS  # pylint: disable=wrong-import-position

_REAL, _SYNTHETIC = "#1f5f8b", "#d9822b"
_BASELINES = ("#8d99ae", "#b5838d", "#6d6875")


def _png(figure) -> bytes:
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
  plt.close(figure)
  return buffer.getvalue()


def utility_bars(utility: Dict, baselines: Optional[Dict[str, Dict]] = None) -> bytes:
  """Test AUROC per model, trained on real vs on synthetic (and on each DP baseline's
  table, hatched: not released), with 95% bootstrap intervals."""
  figure, axis = plt.subplots(figsize=(7 + 0.8 * len(baselines or {}), 3.6))
  positions = np.arange(len(MODELS))
  bars = [("trained on real", utility.get("real", {}), _REAL, ""),
          ("trained on synthetic", utility.get("synthetic", {}), _SYNTHETIC, "")]
  for (key, baseline), color in zip((baselines or {}).items(), _BASELINES):
    bars.append((f"{baseline.get('name', key)} (not released)",
                 baseline["utility"].get("synthetic", {}), color, "//"))
  width = 0.8 / len(bars)
  for index, (label, results, color, hatch) in enumerate(bars):
    offset = (index - (len(bars) - 1) / 2) * width
    rows = [results.get(m, {}) for m in MODELS]
    # A model with no AUROC (one test class, one training class) gets no bar.
    values = [np.nan if r.get("auroc") is None else r["auroc"] for r in rows]
    errors = np.array([[v - r["auroc_ci"][0], r["auroc_ci"][1] - v]
                       if r.get("auroc_ci") and not np.isnan(v) else [0, 0]
                       for v, r in zip(values, rows)]).T
    axis.bar(positions + offset, values, width, yerr=errors, capsize=3, color=color,
             hatch=hatch, edgecolor="white" if hatch else None, label=label)
  control = utility.get("shuffled_label_control", {}).get("auroc")
  if control is not None:
    axis.axhline(control, color="grey", linestyle="--",
                 label=f"shuffled-label control ({control:.2f})")
  axis.set_xticks(positions, [MODEL_NAMES[m] for m in MODELS])
  axis.set_ylim(0.0, 1.0)
  axis.set_ylabel("AUROC on real test patients")
  if baselines:  # more bars than room below them: the legend goes beside the plot
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
  else:
    axis.legend(loc="lower right", fontsize=8)
  return _png(figure)


def trajectories(fidelity: Dict, label_column: str) -> Optional[bytes]:
  """Median value per visit and label class, real (solid) vs synthetic (dashed)."""
  real, synthetic = fidelity["trajectories"]["real"], fidelity["trajectories"]["synthetic"]
  if not real:
    return None
  figure, axes = plt.subplots(1, len(real), figsize=(4.2 * len(real), 3.3), squeeze=False)
  for axis, series in zip(axes[0], real):
    for index, label in enumerate(sorted(real[series])):
      shade = ["#2a9d8f", "#e76f51"][index % 2]
      visits = np.arange(1, len(real[series][label]) + 1)
      axis.plot(visits, real[series][label], color=shade, label=f"real, {label_column}={label}")
      if label in synthetic.get(series, {}):
        axis.plot(visits, synthetic[series][label], color=shade, linestyle="--",
                  label=f"synthetic, {label_column}={label}")
    axis.set_title(series)
    axis.set_xlabel("visit")
  axes[0][0].set_ylabel("median")
  axes[0][-1].legend(fontsize=7)
  return _png(figure)


def dropout_curves(missingness: Dict, label_column: str) -> Optional[bytes]:
  """Share of patients still observed at each visit, real (solid) vs synthetic (dashed),
  overall and per label class; None when the table has no series."""
  curves = missingness.get("dropout_curve")
  if not curves:
    return None
  panels = [("all patients", curves["overall"])] + [
      (f"{label_column}={label}", pair) for label, pair in curves["by_class"].items()]
  figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.1),
                              squeeze=False, sharey=True)
  for axis, (title, pair) in zip(axes[0], panels):
    for key, color, style in (("real", _REAL, "-"), ("synthetic", _SYNTHETIC, "--")):
      if pair.get(key) is not None:  # a class one table lacks has no curve
        axis.plot(curves["visits"], pair[key], color=color, linestyle=style, marker="o",
                  markersize=3, label=key)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("visit")
    axis.set_ylim(0.0, 1.05)
  axes[0][0].set_ylabel("share still observed")
  axes[0][-1].legend(fontsize=7)
  return _png(figure)


def correlation_matrices(fidelity: Dict) -> Optional[bytes]:
  correlation = fidelity["correlation"]
  if correlation.get("spearman") is None:
    return None
  figure, axes = plt.subplots(1, 2, figsize=(9, 4.2))
  for axis, key, title in ((axes[0], "real_matrix", "real"),
                           (axes[1], "synthetic_matrix", "synthetic")):
    image = axis.imshow(np.array(correlation[key]), vmin=-1, vmax=1, cmap="RdBu_r")
    axis.set_title(f"{title} (correlation between {len(correlation['columns'])} columns)",
                   fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
  figure.colorbar(image, ax=axes, shrink=0.8)
  return _png(figure)


def attack_bars(attack: Dict) -> bytes:
  """AUROC of every attack, released artifacts first, beside the positive control."""
  names, values, colors = [], [], []
  for target, results in attack["targets"].items():
    for name, result in results.items():
      names.append(f"{target}\n{name}")
      values.append(np.nan if result.get("auroc") is None else result["auroc"])
      colors.append({"positive_control": "#9b2226", "gan_discriminator": "#6c757d"}
                    .get(target, "#1f5f8b"))
  figure, axis = plt.subplots(figsize=(max(6, 1.15 * len(names)), 3.6))
  axis.bar(np.arange(len(names)), values, color=colors)
  axis.axhline(0.5, color="black", linewidth=0.8)
  axis.axhline(attack["thresholds"]["released_max_auroc"], color="#1f5f8b", linestyle="--",
               linewidth=0.8, label="target for released artifacts")
  axis.axhline(attack["thresholds"]["positive_control_min_auroc"], color="#9b2226",
               linestyle=":", linewidth=0.8, label="positive control must exceed")
  axis.set_xticks(np.arange(len(names)), names, fontsize=7)
  axis.set_ylim(0.3, 1.0)
  axis.set_ylabel("attack AUROC")
  axis.legend(fontsize=7)
  return _png(figure)
