"""Privacy accounting for DP-SGD style training, on Google's dp-accounting.

One function turns a training plan into an epsilon: `compute_epsilon`. Everything
that reports a privacy guarantee in this project goes through it, so the sampling
assumption, the accountant and the privacy unit are always stated with the number.

Relation: every plan the trainers make is accounted under "one patient added or
removed" (clinical_dp/sensitivity.py, which derives each sensitivity below), and
dp-accounting is given each Gaussian's noise standard deviation over its L2 sensitivity
under that relation, never a sensitivity of another relation.

Sampling:
  poisson  each example enters each step independently with probability B/N, the
           assumption of the DP-SGD analyses; add-or-remove-one relation; every trainer.
  fixed    batches of exactly B drawn without replacement: the replace-one relation,
           under which one example moves the clipped sum by 2 C, so the noise multiplier
           is halved for the accountant. RDP only (dp-accounting has no PLD analysis for
           it), one row per patient, DP-SGD steps only (no released statistics), and
           never in a release (its relation is not the release's): kept for
           `clinical-dp privacy --sampling fixed`, to compare with tools that use it.
Microbatches: TF Privacy clips each microbatch; with more than one example per
  microbatch, one patient can move a clipped microbatch by up to twice the clip (TF
  Privacy's `used_microbatching`). Per-example clipping (the default here) has no such
  cost.
Patients with several rows: a patient with up to k rows is present in a step with
  probability 1 - (1 - q)^k under Poisson sampling and moves the clipped sum by at
  most k clips, so the patient-level guarantee is that of a sampled Gaussian with that
  rate and noise multiplier sigma / k (a group-privacy bound; exact when k = 1).
Released counts: a trainer may also release a noisy count (the GAN's label rate) with
  the Gaussian mechanism; it is composed with the training steps, with noise
  multiplier sigma_count / k for the patient.
Released statistics: Gaussian mechanisms on whole-table statistics (the generator's
  marginals and correlations, trainers/dp_statistics.py), each given as its noise
  multiplier relative to one row's L2 sensitivity under add-or-remove, composed once
  each, sigma / k for the patient. A plan of statistics alone has epochs 0.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Dict, Optional, Tuple

import dp_accounting
from dp_accounting import pld, rdp

from clinical_dp import sensitivity

ACCOUNTANTS = ("rdp", "pld")
SAMPLINGS = ("poisson", "fixed")
RDP_ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64))
                   + [128, 256, 512, 1024])


class BudgetExceededError(ValueError):
  """A training plan would spend more privacy than the budget allows."""


@dataclasses.dataclass(frozen=True)
class PrivacyPlan:
  """What a DP training run will do, as the accountant needs to know it."""
  num_examples: int
  batch_size: int
  noise_multiplier: float
  epochs: float
  delta: float
  accountant: str = "rdp"
  sampling: str = "poisson"
  examples_per_microbatch: int = 1
  max_rows_per_patient: int = 1
  label_count_noise_multiplier: float = 0.0  # 0: no noisy count is released
  released_noise_multipliers: Tuple[float, ...] = ()  # one Gaussian mechanism each

  def __post_init__(self):
    if self.num_examples < 1:
      raise ValueError(f"num_examples must be positive, got {self.num_examples}")
    if not 1 <= self.batch_size <= self.num_examples:
      raise ValueError(f"batch_size must be between 1 and num_examples ({self.num_examples}), "
                       f"got {self.batch_size}")
    if self.noise_multiplier < 0:
      raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
    if self.epochs < 0 or (self.epochs == 0 and not self.released_noise_multipliers):
      raise ValueError(f"epochs must be positive, got {self.epochs}")
    if not 0 < self.delta < 1:
      raise ValueError(f"delta must be in (0, 1), got {self.delta}")
    if self.accountant not in ACCOUNTANTS:
      raise ValueError(f"accountant must be one of {list(ACCOUNTANTS)}, got {self.accountant!r}")
    if self.sampling not in SAMPLINGS:
      raise ValueError(f"sampling must be one of {list(SAMPLINGS)}, got {self.sampling!r}")
    if self.sampling == "fixed" and self.accountant == "pld":
      raise ValueError("fixed-size sampling is accounted with rdp only; use --accountant rdp "
                       "or --sampling poisson")
    if self.sampling == "fixed" and self.max_rows_per_patient > 1:
      raise ValueError("fixed-size sampling is accounted for one row per patient only; with "
                       f"up to {self.max_rows_per_patient} rows per patient use --sampling "
                       "poisson")
    if self.sampling == "fixed" and (self.released_noise_multipliers
                                     or self.label_count_noise_multiplier):
      raise ValueError("fixed-size sampling (replace-one) is accounted for DP-SGD steps "
                       "only; released statistics are accounted with poisson sampling "
                       "(add or remove one patient)")
    if self.examples_per_microbatch < 1 or self.max_rows_per_patient < 1:
      raise ValueError("examples_per_microbatch and max_rows_per_patient must be >= 1")
    if self.label_count_noise_multiplier < 0:
      raise ValueError("label_count_noise_multiplier must be >= 0, got "
                       f"{self.label_count_noise_multiplier}")
    if any(not sigma > 0 for sigma in self.released_noise_multipliers):
      raise ValueError("released_noise_multipliers must be positive, got "
                       f"{list(self.released_noise_multipliers)}")

  @property
  def steps(self) -> int:
    return int(math.ceil(self.epochs * self.num_examples / self.batch_size))

  @property
  def sampling_probability(self) -> float:
    return self.batch_size / self.num_examples

  @property
  def unit(self) -> str:
    return "patient" if self.max_rows_per_patient > 1 else "example (one row per patient)"

  @property
  def relation(self) -> str:
    return sensitivity.REPLACE_ONE if self.sampling == "fixed" else sensitivity.RELATION

  @property
  def expected_batch_size(self) -> float:
    """The batch a step's noisy sum is divided by: q N, a public constant (dividing by
    the realized Poisson batch would make the step's scale depend on who was drawn)."""
    return float(self.batch_size)


@dataclasses.dataclass(frozen=True)
class PrivacyRecord:
  """The guarantee of a plan, with everything needed to read it correctly."""
  epsilon: float
  delta: float
  accountant: str
  sampling: str
  unit: str
  steps: int
  epochs: float
  noise_multiplier: float
  effective_noise_multiplier: float
  sampling_probability: float
  batch_size: int
  num_examples: int
  examples_per_microbatch: int
  max_rows_per_patient: int
  label_count_noise_multiplier: float
  released_noise_multipliers: Tuple[float, ...] = ()
  relation: str = sensitivity.RELATION
  # The clipped-gradient sum's L2 sensitivity under `relation`, in clips (C), per patient.
  step_sensitivity_in_clips: float = 1.0

  def to_dict(self) -> Dict:
    return dataclasses.asdict(self)


def step_sensitivity_in_clips(plan: PrivacyPlan) -> float:
  """The clipped-gradient sum's L2 sensitivity under the plan's relation, in clips."""
  return sensitivity.clipped_sum(1.0, plan.max_rows_per_patient,
                                 plan.examples_per_microbatch,
                                 replace_one=plan.sampling == "fixed")


def _unit_mechanism(plan: PrivacyPlan):
  """Sampling rate and accounted noise multiplier (noise sd / sensitivity) of one step
  for the privacy unit."""
  k = plan.max_rows_per_patient
  p = plan.sampling_probability
  # 1 - (1 - p)^k; a batch of every row (p = 1, a small table) includes the patient surely.
  q = -math.expm1(k * math.log1p(-p)) if k > 1 and p < 1 else p
  return min(q, 1.0), sensitivity.accounted_multiplier(plan.noise_multiplier,
                                                       step_sensitivity_in_clips(plan))


def _dp_event(plan: PrivacyPlan, noise_multiplier: float, q: float):
  events = []
  if plan.steps:
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if plan.sampling == "poisson":
      step = dp_accounting.PoissonSampledDpEvent(q, gaussian)
    else:
      step = dp_accounting.SampledWithoutReplacementDpEvent(
          plan.num_examples, plan.batch_size, gaussian)
    events.append(dp_accounting.SelfComposedDpEvent(step, plan.steps))
  # Each release's multiplier is relative to one row's sensitivity; a patient's k rows
  # move it k times as far (sensitivity.histograms, .count, .second_moment).
  k = plan.max_rows_per_patient
  releases = list(plan.released_noise_multipliers)
  if plan.label_count_noise_multiplier:
    releases.append(plan.label_count_noise_multiplier)
  events.extend(dp_accounting.GaussianDpEvent(sigma / k) for sigma in releases)
  return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)


def _accountant(plan: PrivacyPlan):
  if plan.accountant == "pld":
    return pld.PLDAccountant()
  relation = (dp_accounting.NeighboringRelation.REPLACE_ONE if plan.sampling == "fixed"
              else sensitivity.ACCOUNTING_RELATION)
  return rdp.RdpAccountant(list(RDP_ORDERS), relation)


@functools.lru_cache(maxsize=1024)  # a plan is frozen; the pre-flight and the trainer share
def compute_epsilon(plan: PrivacyPlan) -> PrivacyRecord:
  """Epsilon at the plan's delta, for the plan's privacy unit."""
  q, sigma = _unit_mechanism(plan)
  if sigma == 0 and plan.steps:
    epsilon = math.inf
  else:
    accountant = _accountant(plan)
    accountant.compose(_dp_event(plan, sigma, q))
    epsilon = float(accountant.get_epsilon(plan.delta))
  return PrivacyRecord(
      epsilon=epsilon, delta=plan.delta, accountant=plan.accountant, sampling=plan.sampling,
      unit=plan.unit, steps=plan.steps, epochs=plan.epochs,
      noise_multiplier=plan.noise_multiplier, effective_noise_multiplier=sigma,
      sampling_probability=q, batch_size=plan.batch_size, num_examples=plan.num_examples,
      examples_per_microbatch=plan.examples_per_microbatch,
      max_rows_per_patient=plan.max_rows_per_patient,
      label_count_noise_multiplier=plan.label_count_noise_multiplier,
      released_noise_multipliers=plan.released_noise_multipliers, relation=plan.relation,
      step_sensitivity_in_clips=step_sensitivity_in_clips(plan))


def noise_for_target_epsilon(plan: PrivacyPlan, target_epsilon: float,
                             tolerance: float = 2e-3) -> float:
  """The smallest noise multiplier (within tolerance) that keeps the plan within target."""
  return _smallest_noise(
      lambda sigma: compute_epsilon(dataclasses.replace(plan, noise_multiplier=sigma)).epsilon,
      target_epsilon, tolerance)


@functools.lru_cache(maxsize=64)
def gaussian_noise_for_epsilon(target_epsilon: float, delta: float, accountant: str = "rdp",
                               tolerance: float = 1e-3) -> float:
  """The noise multiplier of one Gaussian mechanism (sensitivity 1) spending target_epsilon:
  the scale a budget is shared out on (Gaussian mechanisms compose as one whose
  1 / sigma^2 is the sum of theirs)."""
  def epsilon_at(sigma: float) -> float:
    plan = PrivacyPlan(num_examples=1, batch_size=1, noise_multiplier=0.0, epochs=0,
                       delta=delta, accountant=accountant, released_noise_multipliers=(sigma,))
    return compute_epsilon(plan).epsilon
  return _smallest_noise(epsilon_at, target_epsilon, tolerance)


def _smallest_noise(epsilon_at, target_epsilon: float, tolerance: float) -> float:
  low, high = 0.0, 1.0
  while epsilon_at(high) > target_epsilon:
    low, high = high, high * 2
    if high > 1e4:
      raise BudgetExceededError(f"no noise multiplier below 1e4 reaches epsilon "
                                f"{target_epsilon}; train fewer epochs or use smaller batches")
  while high - low > tolerance:
    middle = (low + high) / 2
    if epsilon_at(middle) > target_epsilon:
      low = middle
    else:
      high = middle
  return high


def _max_epochs_within(plan: PrivacyPlan, target_epsilon: float) -> Optional[float]:
  low, high = 0.0, plan.epochs
  for _ in range(12):  # to 1/4096 of the planned epochs; each try is a full accounting
    middle = (low + high) / 2
    if middle > 0 and compute_epsilon(dataclasses.replace(plan, epochs=middle)).epsilon \
        <= target_epsilon:
      low = middle
    else:
      high = middle
  return low if low > 0 else None


def check_budget(plan: PrivacyPlan, target_epsilon: float) -> PrivacyRecord:
  """Returns the plan's record, or refuses a plan that would exceed the budget.

  The refusal says which settings would fit: more noise or fewer epochs.
  """
  if plan.delta >= 1.0 / plan.num_examples:
    raise BudgetExceededError(
        f"delta {plan.delta:g} is not below 1/N = 1/{plan.num_examples}; such a delta allows "
        "releasing a whole record; lower delta")
  record = compute_epsilon(plan)
  if record.epsilon <= target_epsilon:
    return record
  raise BudgetExceededError(over_budget_reason(plan, record, target_epsilon))


def over_budget_reason(plan: PrivacyPlan, record: PrivacyRecord, target_epsilon: float) -> str:
  """What a plan over budget spends, and which settings would fit: more noise or fewer
  epochs."""
  advice = []
  try:
    advice.append(f"raise noise_multiplier to {noise_for_target_epsilon(plan, target_epsilon):.3f}")
  except BudgetExceededError:
    pass
  epochs = _max_epochs_within(plan, target_epsilon)
  if epochs:
    advice.append(f"lower epochs to {epochs:.3g}")
  advice.append("or raise target_epsilon")
  return (f"the plan spends epsilon {record.epsilon:.3f} at delta {plan.delta:g} "
          f"({plan.accountant}, {plan.sampling} sampling, {plan.steps} steps), over the budget "
          f"of {target_epsilon:g}; " + ", ".join(advice))
