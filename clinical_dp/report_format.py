"""What the pipeline's report, the public report and the federated results share when
they are written: JSON without NaN or infinities, numbers as HTML table cells, and the
AUROC that every one of them quotes.

The ground floor, so that the evaluation library (components/evaluation/) and the
federated runtime (federated/, which cannot import components/) use one copy.
"""

from __future__ import annotations

import html
import math
from typing import Optional

import numpy as np

# Keys json.dumps writes itself; any other (a tuple) is written as its str().
_JSON_KEYS = (str, int, float, bool, type(None))


def json_safe(value):
  """`value` with NaN and infinities as None (null), recursively: report.json and
  federated.json must be valid JSON, and a measure that cannot be computed (or epsilon
  inf: not private) is n/a, not a number. NumPy scalars become Python numbers."""
  if isinstance(value, dict):
    return {k if isinstance(k, _JSON_KEYS) else str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy scalars
    return json_safe(value.item())
  return value


def cell(value, digits: int = 3, reason: Optional[str] = None) -> str:
  """A report cell: a float to `digits` decimals, n/a (and why) where it is missing."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a" + (f" <small>({html.escape(reason)})</small>" if reason else "")
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return html.escape(str(value))


def compact_cell(value, digits: int = 4) -> str:
  """A federated results cell: `digits` decimals without trailing zeros, or `digits`
  significant ones for very large and very small numbers; "-" where it is missing."""
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.{digits}g}" if abs(value) >= 1e4 or abs(value) < 1e-3 else \
        f"{value:.{digits}f}".rstrip("0").rstrip(".")
  return html.escape(str(value))


def auroc(y_true: np.ndarray, scores: np.ndarray) -> Optional[float]:
  """AUROC, or None when y_true holds one class only (AUROC needs both; a small site's
  split may)."""
  from sklearn.metrics import roc_auc_score  # pylint: disable=import-outside-toplevel
  if len(np.unique(np.asarray(y_true).reshape(-1))) < 2:
    return None
  return float(roc_auc_score(y_true, scores))
