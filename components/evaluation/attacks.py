"""Membership inference: can an attacker tell training patients from other patients?

Attack scores are higher for records the attacker believes were in training. Each
attack is judged by its AUROC over members and non-members and by its true positive
rate at low false positive rates (Carlini et al., "Membership inference attacks from
first principles"), which is what matters for the few patients an attack exposes.

- loss threshold (Yeom et al.): score = log-likelihood of the true label;
- offline likelihood ratio (LiRA, Carlini et al.): the target's confidence on a
  record, standardised by the confidences of shadow models that did not train on it;
- distance to the synthetic data: score = minus the distance to the closest synthetic
  record (a generator that memorises puts synthetic records next to its members).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

LOW_FPRS = (0.01, 0.001)
_EPS = 1e-7


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
  """Share of members flagged at the threshold that flags `fpr` of non-members."""
  threshold = np.quantile(nonmember_scores, 1 - fpr, method="higher")
  return float(np.mean(member_scores > threshold))


def attack_metrics(member_scores: Sequence[float], nonmember_scores: Sequence[float],
                   fprs: Sequence[float] = LOW_FPRS) -> Dict:
  """AUROC, TPR at low FPR and membership advantage (max TPR - FPR)."""
  members = np.asarray(member_scores, float).reshape(-1)
  nonmembers = np.asarray(nonmember_scores, float).reshape(-1)
  if not len(members) or not len(nonmembers):
    return {"auroc": None, "tpr_at_fpr": {f"{f:g}": None for f in fprs}, "advantage": None,
            "members": int(len(members)), "non_members": int(len(nonmembers)),
            "reason": f"no {'members' if not len(members) else 'non-members'} to score"}
  truth = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
  scores = np.concatenate([members, nonmembers])
  thresholds = np.unique(scores)
  tpr = np.array([np.mean(members >= t) for t in thresholds])
  fpr = np.array([np.mean(nonmembers >= t) for t in thresholds])
  return {"auroc": float(roc_auc_score(truth, scores)),
          "tpr_at_fpr": {f"{f:g}": tpr_at_fpr(members, nonmembers, f) for f in fprs},
          "advantage": float(np.max(tpr - fpr)),
          "members": int(len(members)), "non_members": int(len(nonmembers))}


def true_label_probability(positive_probability: np.ndarray, labels: np.ndarray) -> np.ndarray:
  p = np.asarray(positive_probability, float).reshape(-1)
  y = np.asarray(labels).reshape(-1)
  return np.clip(np.where(y == 1, p, 1 - p), _EPS, 1 - _EPS)


def loss_scores(positive_probability: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Minus the cross-entropy loss of each record: members tend to have lower loss."""
  return np.log(true_label_probability(positive_probability, labels))


def logit_confidence(positive_probability: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """log(p / (1 - p)) of the true label: LiRA's approximately Gaussian statistic."""
  p = true_label_probability(positive_probability, labels)
  return np.log(p) - np.log1p(-p)


def offline_lira_scores(target_confidence: np.ndarray, shadow_confidence: np.ndarray
                        ) -> np.ndarray:
  """How far above the shadow models' (OUT) confidence the target's is, per record.

  shadow_confidence is (shadows x records); no shadow trained on any scored record.
  """
  shadow_confidence = np.asarray(shadow_confidence, float)
  mean = shadow_confidence.mean(axis=0)
  std = shadow_confidence.std(axis=0) + 1e-3  # a floor for records all shadows agree on
  return (np.asarray(target_confidence, float) - mean) / std


def distance_scores(records: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
  """Minus the Euclidean distance from each record to its closest synthetic record."""
  distances, _ = NearestNeighbors(n_neighbors=1).fit(synthetic).kneighbors(records)
  return -distances[:, 0]


def strongest(results: Dict[str, Dict]) -> Dict:
  """The attack with the highest AUROC, with its name."""
  scored = {k: r for k, r in results.items() if r.get("auroc") is not None} or results
  name = max(scored, key=lambda k: -1.0 if scored[k].get("auroc") is None
             else scored[k]["auroc"])
  return {"attack": name, **results[name]}
