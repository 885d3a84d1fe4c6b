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
  """Synthetic rows equal to some training row in every feature column (label included)."""
  def keys(frame):
    return frame[columns].apply(
        lambda c: c.round(decimals) if np.issubdtype(c.dtype, np.number) else c.astype(str))
  merged = keys(synthetic).merge(keys(train).drop_duplicates(), on=columns, how="inner")
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
  return {
      "dcr_synthetic_median": float(np.median(dcr_synthetic)),
      "dcr_holdout_median": float(np.median(dcr_holdout)),
      "dcr_ratio": float(np.median(dcr_synthetic) / max(np.median(dcr_holdout), 1e-12)),
      "nndr_synthetic_median": float(np.median(nndr_synthetic)),
      "nndr_holdout_median": float(np.median(nndr_holdout)),
      "nndr_ratio": float(np.median(nndr_synthetic) / max(np.median(nndr_holdout), 1e-12)),
      "share_closer_than_holdout_5th_percentile": float(np.mean(dcr_synthetic < close)),
      "synthetic_rows": int(len(synthetic_x)), "holdout_rows": int(len(holdout_x)),
      "train_rows": int(len(train_x)),
  }
