"""The neighbouring relation of every released guarantee, and each mechanism's L2
sensitivity under it, in one place.

Relation. Two tables are neighbours when one is the other with ONE PATIENT ADDED OR
REMOVED (all of that patient's rows). Every artifact in a release is trained and
accounted under this relation, so their epsilons may be summed (basic composition).
dp-accounting's `ADD_OR_REMOVE_ONE` is this relation; it reads a Gaussian event's
noise multiplier as (noise standard deviation) / (L2 sensitivity under the relation),
so each mechanism below passes `noise_stddev / sensitivity` and nothing else.

The number of training patients N is treated as public, as in every DP-SGD analysis
(it sets the sampling rate B / N, the histogram bins and the expected batch); a trial's
enrolment is published, and a registry states its size.

Sensitivities (k: the most rows one patient has; C: the clip):

* DP-SGD clipped-gradient sum (`clipped_sum`). Each example's gradient is scaled to
  L2 norm at most C before summing: sum_i c_i g_i with |c_i g_i| <= C. Adding or
  removing one patient adds or removes at most k such terms, so the sum moves by at
  most k C (triangle inequality); one example whose gradient norm is at least C moves
  it by exactly C. With microbatches of several examples, each microbatch's mean
  gradient is clipped to C; the patient's microbatch is there with or without them,
  so it can move from one vector of norm <= C to another: 2 C per row (TF Privacy's
  `used_microbatching`). Under REPLACE-ONE (a patient swapped for another, the relation
  of fixed-size batches) one example's clipped gradient can turn from +C u to -C u:
  2 C per row, microbatched or not.
* Histograms (`histograms`): a row adds 1 to one bin of each of m histograms (one per
  code of trainers/dp_statistics.py), a vector with m ones: L2 norm sqrt(m); a patient
  of k rows sqrt(m) k at most. (Replace-one: -1 in m bins and +1 in m others,
  sqrt(2 m).)
  With missing values modeled (`missing: model`) m counts the released histograms: a
  nullable value's histogram has one more bin, "missing", that a row with the hole adds
  its one count to (its indicator is read off that histogram, not released again); a
  visit after a row's dropout counts nowhere (such a row adds less); the dropout code (visits
  observed) is one histogram more, which a row adds a weight w to (StatisticsConfig:
  w^2 = 1 + 0.2 (m - 1))
  (`weighted_histograms`: sqrt(m - 1 + w^2); its counts are divided by w afterwards, so
  its noise is w times smaller relative to them: the dropout curve is a running sum of
  its bins, whose noise adds up). The same for a row a missing value or not: the
  relation is unchanged, and tests/test_sensitivity.py enumerates a table with holes.
  The binning scales' trees are histograms too: per numeric column, `levels` of them,
  and a row adds one count to each (a series' row 1 / V to each of its V visits' nodes:
  a vector of total 1 has L2 norm at most 1; an unobserved value adds nothing):
  sqrt(levels x columns).
* Count (`count`): a row adds 1 (the released label count): 1, k per patient.
* Second moment of clipped vectors (`second_moment`): each row contributes x x^T with
  |x| <= 1 and every |x_i| <= c <= 1; the released upper triangle (diagonal included)
  of x x^T has squared L2 norm sum_{i<j} x_i^2 x_j^2 + sum_i x_i^4
  = (|x|^4 + sum_i x_i^4) / 2 <= (1 + c^2 sum_i x_i^2) / 2 <= (1 + c^2) / 2, reached
  when |x| = 1 and every nonzero |x_i| = c (1 / c^2 of them, when that is an integer).
* A site's clipped model update (`site_update`, dp_fedavg): each site's update is
  clipped to norm S and the server sums them. Adding or removing a whole SITE moves the
  sum by S. Adding or removing one PATIENT of a site that takes part either way changes
  that site's update from one vector of norm <= S to another: 2 S (the patient-level
  figure, which a per-patient total must use).
* Dopamine and central DP-SGD across sites: the secure sum of the sites' clipped
  per-example gradient sums is the central clipped-gradient sum (`clipped_sum`); each
  site's share of the noise, sigma C / sqrt(K), sums to sigma C over K sites. (The
  secure sum also bounds each site's noisy sum to a public range, 2 x expected batch x
  C + 8 noise shares per coordinate; a value outside it would make the sum differ from
  the analysed one. The run counts such values, `secure_sum_clipped_values`, expected 0;
  their small probability is not folded into delta.)
"""

from __future__ import annotations

import math

import dp_accounting

RELATION = "one patient added or removed"
RELATION_DETAIL = ("two tables are neighbours when one is the other with one patient's rows "
                   "added or removed; the number of training patients is treated as public")
ACCOUNTING_RELATION = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
REPLACE_ONE = "one patient replaced by another"
SITE_RELATION = "one site added or removed"


def clipped_sum(clip: float, rows_per_patient: int = 1, examples_per_microbatch: int = 1,
                replace_one: bool = False) -> float:
  """L2 sensitivity of a sum of clipped per-example (or per-microbatch) gradients, one
  patient at a time (see the module docstring)."""
  per_row = 2.0 if (replace_one or examples_per_microbatch > 1) else 1.0
  return per_row * clip * rows_per_patient


def histograms(num_histograms: int, rows_per_patient: int = 1) -> float:
  """L2 sensitivity of m one-hot histograms that each row adds one count to."""
  return math.sqrt(num_histograms) * rows_per_patient


def weighted_histograms(weights, rows_per_patient: int = 1) -> float:
  """L2 sensitivity of histograms that each row adds weights[j] to one bin of histogram j
  (histograms(m) is m weights of 1)."""
  return math.sqrt(sum(float(w) ** 2 for w in weights)) * rows_per_patient


def count(rows_per_patient: int = 1) -> float:
  """L2 sensitivity of a count of rows."""
  return float(rows_per_patient)


def second_moment(coordinate_clip: float, rows_per_patient: int = 1) -> float:
  """L2 sensitivity of the upper triangle (diagonal included) of sum x x^T over rows
  with |x| <= 1 and |x_i| <= coordinate_clip."""
  c = min(float(coordinate_clip), 1.0)
  return math.sqrt((1.0 + c * c) / 2.0) * rows_per_patient


def site_update(clip: float, per_patient: bool) -> float:
  """L2 sensitivity of a sum of site updates clipped to `clip`: a whole site added or
  removed (per_patient False), or one patient of a site that takes part either way."""
  return (2.0 if per_patient else 1.0) * clip


def accounted_multiplier(noise_stddev: float, sensitivity: float) -> float:
  """The noise multiplier dp-accounting is given: noise standard deviation over the L2
  sensitivity under the relation the accountant is told."""
  if sensitivity <= 0:
    raise ValueError(f"sensitivity must be positive, got {sensitivity}")
  return noise_stddev / sensitivity
