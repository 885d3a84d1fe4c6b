"""Synthetic-record disclosure: are synthetic patients suspiciously close to real ones?

Distances are Euclidean on the pipeline's feature encoding (the spec's [0, 1] scale,
one-hot categories). The reference for "close" is real held-out patients: a synthetic
patient should be no closer to the training patients than a new real patient is.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors


def two_nearest(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """(n, 2) distances from each query to its closest and second closest reference row."""
  distances, _ = NearestNeighbors(n_neighbors=2).fit(reference).kneighbors(queries)
  return distances


def exact_copies(train: pd.DataFrame, synthetic: pd.DataFrame, columns: List[str],
                 decimals: int = 4) -> int:
  """Synthetic rows equal to some training row in every feature column (label included);
  an empty cell equals an empty cell."""
  def rounded(frame):  # numbers to `decimals`, anything else as text
    return frame[columns].apply(
        lambda c: (c.astype(np.float64).round(decimals)
                   if pd.api.types.is_numeric_dtype(c.dtype) else c.astype(str)))

  def keys(frame):  # each cell as text: an empty cell equals an empty cell
    return rounded(frame).astype(str)

  def hashes(frame):  # equal keys give equal hashes
    return pd.util.hash_pandas_object(rounded(frame).fillna(np.inf), index=False).to_numpy()
  # Rows as text cost 40 s at a million rows: only rows whose hash the other table shares
  # are compared cell by cell.
  synthetic_hashes, train_hashes = hashes(synthetic), hashes(train)
  merged = keys(synthetic[np.isin(synthetic_hashes, train_hashes)]).merge(
      keys(train[np.isin(train_hashes, synthetic_hashes)]).drop_duplicates(), on=columns,
      how="inner")
  return int(len(merged))


def disclosure_report(train_x: np.ndarray, holdout_x: np.ndarray, synthetic_x: np.ndarray
                      ) -> Dict:
  """Distance to closest record (DCR) and nearest-neighbour distance ratio (NNDR) of
  synthetic rows against training rows, beside the same for real held-out rows."""
  synthetic = two_nearest(synthetic_x, train_x)
  holdout = two_nearest(holdout_x, train_x)
  dcr_synthetic, dcr_holdout = synthetic[:, 0], holdout[:, 0]
  nndr_synthetic = dcr_synthetic / np.maximum(synthetic[:, 1], 1e-12)
  nndr_holdout = dcr_holdout / np.maximum(holdout[:, 1], 1e-12)
  close = np.percentile(dcr_holdout, 5)
  result = {
      "dcr_synthetic_median": float(np.median(dcr_synthetic)),
      "dcr_holdout_median": float(np.median(dcr_holdout)),
      "nndr_synthetic_median": float(np.median(nndr_synthetic)),
      "nndr_holdout_median": float(np.median(nndr_holdout)),
      "share_closer_than_holdout_5th_percentile": float(np.mean(dcr_synthetic < close)),
      "synthetic_rows": int(len(synthetic_x)), "holdout_rows": int(len(holdout_x)),
      "train_rows": int(len(train_x)),
  }
  for name in ("dcr", "nndr"):
    ratio, reason = _median_ratio(result[f"{name}_synthetic_median"],
                                  result[f"{name}_holdout_median"])
    result[f"{name}_ratio"] = ratio
    if reason:
      result[f"{name}_reason"] = reason
  if result["dcr_holdout_median"] == 0:
    result["note"] = ("Most real held-out patients have an exact twin among the training "
                      "patients in the modeled features (a coarse feature space, e.g. only "
                      "categories), so closeness to a training row says little about copying "
                      "here, and exact copies are expected.")
  return result


def _median_ratio(synthetic: float, holdout: float):
  """synthetic / holdout, with both zero read as 1 (synthetic rows are as close to the
  training rows as new real patients are), and None, with the reason, for a zero
  holdout median against a positive synthetic one."""
  if holdout > 0:
    return float(synthetic / holdout), None
  if synthetic == 0:
    return 1.0, "both medians are 0: real held-out rows coincide with training rows as often"
  return None, "the real held-out rows' median is 0 (they coincide with training rows)"
