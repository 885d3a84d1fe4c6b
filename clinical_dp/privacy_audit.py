"""Empirical privacy auditing: a lower bound on epsilon from an auditor's test scores.

An audit plants a canary (a crafted example, patient row or site update) in half of
many independent runs of a mechanism and keeps, per run, one number computed from what
the mechanism released: the auditor's test score, higher meaning "the canary was in".
If the mechanism is (epsilon, delta)-DP, no test separates the two worlds better than
epsilon allows, so how well these scores separate them bounds epsilon from below. A
bound above the stated epsilon means the implementation or its accounting is wrong; a
bound far below it means the audit has no power and shows little (Jagielski, Ullman
and Oprea 2020; Nasr et al. 2021 and 2023; Steinke, Nasr and Jagielski 2023).

Two estimators, for scores `scores_in` (canary in) and `scores_out` (canary out):

`gdp_audit`, the Gaussian fit of Nasr et al. 2023 ("Tight Auditing of Differentially
  Private Machine Learning"). The scores of each world are read as Gaussians with one
  common standard deviation; their standardized mean difference mu is then the
  mechanism's mu-GDP parameter (the trade-off between N(0, 1) and N(mu, 1)). mu gets a
  confidence interval by the delta method (its skewness and kurtosis terms included, so
  skewed scores such as log-likelihood ratios are not over-trusted) and each end is
  turned into epsilon at delta through the mu-GDP privacy curve
      delta(eps) = Phi(-eps / mu + mu / 2) - e^eps Phi(-eps / mu - mu / 2).
  Assumptions: independent runs, and scores close to Gaussian with equal variance in the
  two worlds. That holds exactly for a linear score of a Gaussian release with a fixed
  canary contribution (no subsampling: a matched filter over any number of releases),
  and approximately, by the central limit theorem (Dong, Roth and Su 2022; Bu et al.
  2020), for the log-likelihood ratio summed over many Poisson-subsampled Gaussian
  steps; there the CLT's curve lies below the exact one at small delta, so the fit
  tends to fall short of the true epsilon rather than exceed it. It is not a guarantee:
  scores far from Gaussian can give any answer (the 0 / 1 scores of randomized response
  with epsilon 1 fit mu = 1.04, epsilon 4.5 at delta 1e-5), and few runs widen the
  interval. Its strength is power: it needs orders of magnitude fewer runs than a
  distribution-free bound.
`threshold_audit`, distribution-free: the test "canary in when the score exceeds t" has
  false positive and false negative rates FPR, FNR, and (epsilon, delta)-DP under a
  symmetric relation (add or remove one) implies both
      FPR + e^eps FNR >= 1 - delta  and  FNR + e^eps FPR >= 1 - delta,
  so epsilon >= log((1 - delta - FNR) / FPR) and >= log((1 - delta - FPR) / FNR).
  Clopper-Pearson upper bounds of FPR and FNR (each at level alpha / 2, so that both
  hold together with probability 1 - alpha) make that a lower bound which exceeds the
  true epsilon with probability at most alpha, whatever the scores' distribution, as
  long as the runs are independent and the threshold is not chosen on the runs it is
  evaluated on: it is chosen on a held-out half of the runs, or, given a small grid
  fixed in advance, every threshold of the grid is evaluated at a Bonferroni level.

Both return an `EmpiricalEpsilon`. Pure NumPy and SciPy: the pipeline runtime and the
federated runtime (TensorFlow Federated) both import it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import optimize, special, stats

GDP = "gdp"
THRESHOLD = "threshold"


@dataclasses.dataclass(frozen=True)
class EmpiricalEpsilon:
  """An audited epsilon at delta: a point estimate and a two-sided confidence interval
  (lower is the audit's lower bound on the mechanism's epsilon)."""
  estimate: float
  lower: float
  upper: float
  method: str  # GDP or THRESHOLD
  runs: int  # runs in both worlds together
  delta: float
  confidence: float
  # What the estimate was read from (mu and its interval; the threshold and its rates).
  details: Tuple[Tuple[str, float], ...] = ()

  def to_dict(self) -> Dict:
    """JSON-ready: an infinite bound (no false positive at all) becomes None."""
    def finite(value):
      return float(value) if math.isfinite(value) else None
    return {"estimate": finite(self.estimate), "lower": finite(self.lower),
            "upper": finite(self.upper), "method": self.method, "runs": self.runs,
            "delta": self.delta, "confidence": self.confidence,
            "details": {k: finite(v) for k, v in self.details}}


def gdp_delta(epsilon: float, mu: float) -> float:
  """delta(eps) of mu-GDP (Dong, Roth and Su, Corollary 2.13), in logs for large eps."""
  if mu <= 0:
    return 0.0
  first = special.ndtr(-epsilon / mu + mu / 2)
  second = math.exp(epsilon + special.log_ndtr(-epsilon / mu - mu / 2))
  return float(max(first - second, 0.0))


def gdp_epsilon(mu: float, delta: float) -> float:
  """The smallest epsilon at which mu-GDP is (epsilon, delta)-DP."""
  if not mu > 0 or gdp_delta(0.0, mu) <= delta:
    return 0.0
  high = max(1.0, mu * mu)
  while gdp_delta(high, mu) > delta:
    high *= 2.0
  return float(optimize.brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, high, xtol=1e-10))


def gdp_mu(epsilon: float, delta: float) -> float:
  """The mu of the Gaussian mechanism that is exactly (epsilon, delta)-DP: gdp_epsilon's
  inverse (what an epsilon claim says about mu, were the mechanism Gaussian)."""
  if epsilon <= 0:
    return 0.0
  high = 1.0
  while gdp_epsilon(high, delta) < epsilon:
    high *= 2.0
  return float(optimize.brentq(lambda m: gdp_epsilon(m, delta) - epsilon, 1e-9, high,
                               xtol=1e-10))


def _two_worlds(scores_in, scores_out) -> Tuple[np.ndarray, np.ndarray]:
  scores_in = np.asarray(scores_in, np.float64).reshape(-1)
  scores_out = np.asarray(scores_out, np.float64).reshape(-1)
  if len(scores_in) < 2 or len(scores_out) < 2:
    raise ValueError(f"need at least 2 runs per world, got {len(scores_in)} with the canary "
                     f"and {len(scores_out)} without")
  if not (np.all(np.isfinite(scores_in)) and np.all(np.isfinite(scores_out))):
    raise ValueError("scores must be finite")
  return scores_in, scores_out


def standardized_difference(scores_in, scores_out) -> Tuple[float, float]:
  """(mu, its standard error): (mean_in - mean_out) / pooled standard deviation.

  The standard error is the delta method's: the means' variances, the pooled variance's
  (from each world's fourth central moment) and their covariance (third moments), so
  that it stays right for skewed and heavy-tailed scores; for Gaussian scores it is
  Hedges and Olkin's sqrt(1 / n_in + 1 / n_out + mu^2 / (2 (n_in + n_out))).
  """
  scores_in, scores_out = _two_worlds(scores_in, scores_out)
  parts = []
  for x in (scores_in, scores_out):
    n, centred = len(x), x - x.mean()
    parts.append((n, x.mean(), centred.var(ddof=1), np.mean(centred ** 3),
                  np.mean(centred ** 4)))
  (n1, mean1, v1, m3_1, m4_1), (n0, mean0, v0, m3_0, m4_0) = parts
  weight1, weight0 = (n1 - 1) / (n1 + n0 - 2), (n0 - 1) / (n1 + n0 - 2)
  pooled = weight1 * v1 + weight0 * v0
  if not pooled > 0:
    raise ValueError("the scores do not vary: no standardized difference")
  mu = (mean1 - mean0) / math.sqrt(pooled)
  var_difference = v1 / n1 + v0 / n0
  var_pooled = weight1 ** 2 * max(m4_1 - v1 ** 2, 0.0) / n1 + \
      weight0 ** 2 * max(m4_0 - v0 ** 2, 0.0) / n0
  cov_difference_pooled = weight1 * m3_1 / n1 - weight0 * m3_0 / n0
  # mu = D / sqrt(P): dmu = dD / sqrt(P) - mu dP / (2 P)
  var_mu = (var_difference / pooled + mu ** 2 * var_pooled / (4 * pooled ** 2)
            - mu * cov_difference_pooled / pooled ** 1.5)
  return float(mu), float(math.sqrt(max(var_mu, 0.0)))


def gdp_audit(scores_in, scores_out, delta: float, confidence: float = 0.95
              ) -> EmpiricalEpsilon:
  """Epsilon at delta of the mu-GDP fit to the scores, with a two-sided interval at
  `confidence` (see the module docstring for when the fit holds)."""
  mu, se = standardized_difference(scores_in, scores_out)
  z = float(special.ndtri(0.5 + confidence / 2))
  mu_low, mu_high = max(mu - z * se, 0.0), max(mu + z * se, 0.0)
  return EmpiricalEpsilon(
      estimate=gdp_epsilon(max(mu, 0.0), delta), lower=gdp_epsilon(mu_low, delta),
      upper=gdp_epsilon(mu_high, delta), method=GDP,
      runs=len(np.ravel(scores_in)) + len(np.ravel(scores_out)), delta=delta,
      confidence=confidence,
      details=(("mu", mu), ("mu_lower", mu_low), ("mu_upper", mu_high), ("mu_se", se)))


def clopper_pearson(successes, trials, alpha: float) -> Tuple[np.ndarray, np.ndarray]:
  """One-sided Clopper-Pearson bounds (lower, upper), each holding with probability at
  least 1 - alpha; vectorized over successes."""
  k = np.asarray(successes, np.float64)
  lower = np.where(k > 0, stats.beta.ppf(alpha, np.maximum(k, 1), trials - k + 1), 0.0)
  upper = np.where(k < trials, stats.beta.ppf(1 - alpha, k + 1, np.maximum(trials - k, 1)),
                   1.0)
  return lower, upper


def _epsilon_bound(fpr, fnr, delta: float) -> np.ndarray:
  """max(log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR)), at least 0."""
  with np.errstate(divide="ignore", invalid="ignore"):
    first = np.log(np.maximum(1 - delta - fnr, 0.0)) - np.log(fpr)
    second = np.log(np.maximum(1 - delta - fpr, 0.0)) - np.log(fnr)
  bound = np.fmax(first, second)
  return np.where(np.isnan(bound), 0.0, np.maximum(bound, 0.0))


def _error_counts(thresholds, scores_in, scores_out):
  """(false positives, false negatives) of "in when score > t" for each t."""
  false_positives = len(scores_out) - np.searchsorted(np.sort(scores_out), thresholds,
                                                      side="right")
  false_negatives = np.searchsorted(np.sort(scores_in), thresholds, side="right")
  return false_positives, false_negatives


def _candidate_thresholds(scores: np.ndarray, most: int = 2000) -> np.ndarray:
  values = np.unique(scores)
  if len(values) > most:
    values = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, most)))
  # "in when score > t" at t = each value, and one below all (everything called in)
  return np.concatenate([[values[0] - 1.0], values])


def _bounds_at(thresholds, scores_in, scores_out, delta: float, alpha_each: float):
  fp, fn = _error_counts(thresholds, scores_in, scores_out)
  n_out, n_in = len(scores_out), len(scores_in)
  fpr_low, fpr_high = clopper_pearson(fp, n_out, alpha_each)
  fnr_low, fnr_high = clopper_pearson(fn, n_in, alpha_each)
  return dict(fp=fp, fn=fn, lower=_epsilon_bound(fpr_high, fnr_high, delta),
              estimate=_epsilon_bound(fp / n_out, fn / n_in, delta),
              upper=_epsilon_bound(fpr_low, fnr_low, delta))


def threshold_audit(scores_in, scores_out, delta: float, confidence: float = 0.95,
                    thresholds: Optional[Sequence[float]] = None) -> EmpiricalEpsilon:
  """The distribution-free bound of the module docstring.

  Without `thresholds`, each world's runs are split in halves, in order (the runs are
  independent, so any split fixed in advance will do): the threshold with the best
  bound on the first halves is evaluated once on the second halves. With `thresholds`
  (a small grid fixed before the scores were seen), all runs are used and each of the
  grid's 2 x len(thresholds) rates is bounded at level (1 - confidence) / (2 x len).
  `lower` exceeds the true epsilon with probability at most 1 - confidence; `estimate`
  is the bound of the empirical rates, `upper` that of their lower confidence bounds.
  """
  scores_in, scores_out = _two_worlds(scores_in, scores_out)
  runs = len(scores_in) + len(scores_out)
  alpha = 1.0 - confidence
  if thresholds is None:
    half_in, half_out = len(scores_in) // 2, len(scores_out) // 2
    select_in, select_out = scores_in[:half_in], scores_out[:half_out]
    scores_in, scores_out = scores_in[half_in:], scores_out[half_out:]
    candidates = _candidate_thresholds(np.concatenate([select_in, select_out]))
    on_selection = _bounds_at(candidates, select_in, select_out, delta, alpha / 2)
    grid = candidates[[int(np.argmax(on_selection["lower"]))]]
    alpha_each = alpha / 2
  else:
    grid = np.asarray(thresholds, np.float64).reshape(-1)
    alpha_each = alpha / (2 * len(grid))
  bounds = _bounds_at(grid, scores_in, scores_out, delta, alpha_each)
  best = int(np.argmax(bounds["lower"]))
  return EmpiricalEpsilon(
      estimate=float(bounds["estimate"][best]), lower=float(bounds["lower"][best]),
      upper=float(bounds["upper"][best]), method=THRESHOLD, runs=runs, delta=delta,
      confidence=confidence,
      details=(("threshold", float(grid[best])),
               ("false_positive_rate", float(bounds["fp"][best] / len(scores_out))),
               ("false_negative_rate", float(bounds["fn"][best] / len(scores_in))),
               ("evaluated_runs", float(len(scores_in) + len(scores_out)))))


def subsampled_gaussian_llr(released, noise_multiplier: float,
                            sampling_probability: float) -> np.ndarray:
  """Log-likelihood ratio, canary in against out, of one release of a coordinate that
  the canary moves by one clip with probability q (Poisson sampling) under Gaussian
  noise of standard deviation sigma clips: `released` is in units of the clip, and
      LLR(y) = log(1 - q + q exp((y - 1/2) / sigma^2)),
  linear in y when q = 1. Summed over independent steps it is the Neyman-Pearson
  optimal test statistic of the canary's presence (Nasr et al. 2023)."""
  y = np.asarray(released, np.float64)
  shift = (y - 0.5) / noise_multiplier ** 2
  if sampling_probability >= 1.0:
    return shift
  return np.logaddexp(math.log1p(-sampling_probability),
                      math.log(sampling_probability) + shift)


@dataclasses.dataclass(frozen=True)
class MechanismAudit:
  """One mechanism's audit at one setting: the accountant's epsilon, what the canary runs
  show, and the same runs with the noise halved on purpose (a planted bug the audit
  must catch, while the stated epsilon stays what the accountant said)."""
  mechanism: str
  setting: str
  stated_epsilon: float
  delta: float
  audited: EmpiricalEpsilon  # gdp_audit
  distribution_free: EmpiricalEpsilon  # threshold_audit
  halved: EmpiricalEpsilon  # gdp_audit, noise halved
  halved_distribution_free: EmpiricalEpsilon
  seconds: float = 0.0

  @property
  def sound(self) -> bool:
    """Neither lower bound exceeds the stated epsilon."""
    return max(self.audited.lower, self.distribution_free.lower) <= self.stated_epsilon

  @property
  def has_power(self) -> bool:
    """The fitted lower bound reaches at least half the stated epsilon."""
    return self.audited.lower >= self.stated_epsilon / 2

  @property
  def catches_halved_noise(self) -> bool:
    """With the noise halved, the fitted lower bound exceeds the stated epsilon."""
    return self.halved.lower > self.stated_epsilon

  def to_dict(self) -> Dict:
    return {"mechanism": self.mechanism, "setting": self.setting,
            "stated_epsilon": self.stated_epsilon, "delta": self.delta,
            "audited": self.audited.to_dict(),
            "distribution_free": self.distribution_free.to_dict(),
            "halved_noise": self.halved.to_dict(),
            "halved_noise_distribution_free": self.halved_distribution_free.to_dict(),
            "targets": {"sound": self.sound, "has_power": self.has_power,
                        "catches_halved_noise": self.catches_halved_noise},
            "seconds": self.seconds}

  @classmethod
  def from_dict(cls, record: Dict) -> "MechanismAudit":
    def estimate(d):
      def number(v):
        return math.inf if v is None else float(v)
      return EmpiricalEpsilon(number(d["estimate"]), number(d["lower"]), number(d["upper"]),
                              d["method"], int(d["runs"]), float(d["delta"]),
                              float(d["confidence"]),
                              tuple((k, number(v)) for k, v in d["details"].items()))
    return cls(record["mechanism"], record["setting"], float(record["stated_epsilon"]),
               float(record["delta"]), estimate(record["audited"]),
               estimate(record["distribution_free"]), estimate(record["halved_noise"]),
               estimate(record["halved_noise_distribution_free"]),
               float(record.get("seconds", 0.0)))


Scores = Tuple[np.ndarray, np.ndarray]  # (canary in, canary out)


def audit_mechanism(mechanism: str, setting: str, stated_epsilon: float, delta: float,
                    scores: Scores, halved_scores: Scores, confidence: float = 0.95,
                    seconds: float = 0.0) -> MechanismAudit:
  """Both estimators on the scores of the mechanism as built and as built with half its
  noise."""
  return MechanismAudit(
      mechanism, setting, float(stated_epsilon), delta,
      gdp_audit(*scores, delta, confidence), threshold_audit(*scores, delta, confidence),
      gdp_audit(*halved_scores, delta, confidence),
      threshold_audit(*halved_scores, delta, confidence), seconds)


def markdown_table(audits: Sequence[MechanismAudit]) -> str:
  """docs/privacy.md's table: mechanism, stated epsilon, the audited lower bound with the fit
  and the interval's upper end, the distribution-free bound, the lower bound with the
  noise halved, and the runs (both worlds; with the noise halved)."""
  lines = ["| mechanism | setting | stated epsilon | audited lower bound, GDP fit (estimate, "
           "95% upper) | distribution-free lower bound | noise halved: lower bound "
           "(estimate) | runs (noise halved) |", "|---|---|---|---|---|---|---|"]
  for a in audits:
    lines.append(
        f"| {a.mechanism} | {a.setting} | {a.stated_epsilon:.3f} at delta {a.delta:g} | "
        f"{a.audited.lower:.3f} ({a.audited.estimate:.3f}, {a.audited.upper:.3f}) | "
        f"{a.distribution_free.lower:.3f} | {a.halved.lower:.3f} ({a.halved.estimate:.3f}) | "
        f"{a.audited.runs} ({a.halved.runs}) |")
  return "\n".join(lines)
