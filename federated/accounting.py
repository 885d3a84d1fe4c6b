"""Privacy accounting of the federated algorithms, on dp-accounting (RDP).

Each DP algorithm keeps a ledger of the mechanisms that actually ran, per site:
a site that was not selected or dropped out in a round adds nothing for its
patients, and a Dopamine round in which some sites dropped out ran with less noise
than planned. The reported epsilon is the largest over sites (every patient is at
one site), at the given delta.

Every ledger is for one relation, "one patient added or removed"
(clinical_dp/sensitivity.py derives each sensitivity), and each event's noise multiplier
is the noise standard deviation over the sensitivity under that relation:

  central_dp, dopamine   Poisson-sampled Gaussian per step, rate q over all patients,
                         clipped-gradient sum of sensitivity C, noise multiplier sigma
                         (dopamine: sigma * sqrt(active sites / K), the shares that were
                         added; the secure sum of the sites' sums is the central sum)
  local_dp, cyclical     the site's own DP-SGD steps, Poisson rate B / n_k, noise
                         multiplier sigma
  dp_fedavg              a Gaussian mechanism per round the site took part in; one
                         patient moves its site's clipped update by up to 2 S, so the
                         multiplier is z / 2 (z: noise sd over S); no amplification from
                         site sampling is claimed. Its site-level guarantee (a whole site
                         added or removed, multiplier z) is recorded beside it.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Callable, Dict, Hashable, Tuple

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import optimize

from clinical_dp import sensitivity
from trainers.accounting import RDP_ORDERS  # pure dp-accounting, shared with the trainers

ACCOUNTANT = "rdp"

Event = Tuple[float, float]  # (sampling probability q, noise multiplier z); q = 1: no sampling


def event_rdp(q: float, z: float) -> np.ndarray:
  """RDP curve of one step, computed by dp-accounting's own accountant."""
  return _cached_rdp(round(q, 12), round(z, 12))


@functools.lru_cache(maxsize=None)
def _cached_rdp(q: float, z: float) -> np.ndarray:
  accountant = rdp_privacy_accountant.RdpAccountant(list(RDP_ORDERS))
  gaussian = dp_accounting.GaussianDpEvent(z)
  accountant.compose(gaussian if q >= 1.0 else dp_accounting.PoissonSampledDpEvent(q, gaussian))
  return np.array(accountant._rdp)  # pylint: disable=protected-access


def epsilon_of(events: Dict[Event, int], delta: float) -> float:
  """Epsilon of composing each (q, z) step `count` times."""
  if not events:
    return 0.0
  if any(z <= 0 for (_, z), n in events.items() if n):
    return math.inf
  total = sum(n * event_rdp(q, z) for (q, z), n in events.items())
  epsilon, _ = rdp_privacy_accountant.compute_epsilon(RDP_ORDERS, total, delta)
  return float(epsilon)


@dataclasses.dataclass
class Ledger:
  """What ran, per site; epsilon is the worst site's."""
  delta: float
  unit: str
  sites: Tuple[str, ...]
  events: Dict[Hashable, collections.Counter] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.events = {s: collections.Counter() for s in self.sites}

  def epsilon(self) -> float:
    return self.epsilon_after({}, 0)

  def epsilon_after(self, step: Dict[Hashable, Event], count: int = 1) -> float:
    """What epsilon would be after `count` more steps of `step` (site -> event)."""
    worst = 0.0
    for site in self.sites:
      counts = collections.Counter(self.events[site])
      if site in step:
        counts[step[site]] += count
      worst = max(worst, epsilon_of(counts, self.delta))
    return worst

  def record(self, step: Dict[Hashable, Event], count: int = 1) -> None:
    for site, event in step.items():
      self.events[site][event] += count

  def steps(self) -> Dict[str, int]:
    return {s: int(sum(self.events[s].values())) for s in self.sites}

  def to_dict(self) -> Dict:
    return {"epsilon": self.epsilon(), "delta": self.delta, "unit": self.unit,
            "accountant": ACCOUNTANT,
            "relation": (sensitivity.RELATION if self.unit == "patient"
                         else sensitivity.SITE_RELATION),
            "steps_per_site": self.steps(),
            "mechanisms_per_site": {s: [{"q": q, "noise_multiplier": z, "count": n}
                                        for (q, z), n in sorted(self.events[s].items())]
                                    for s in self.sites}}


def solve_noise(epsilon_at: Callable[[float], float], target_epsilon: float,
                tolerance: float = 1e-3) -> float:
  """Smallest noise multiplier (to `tolerance`, relative) whose plan stays within target.

  Epsilon falls as the noise grows, so the root of epsilon_at(z) = target is bracketed
  by doubling and found by Brent's method; the answer is rounded up to stay in budget.
  """
  high = 1.0
  while epsilon_at(high) > target_epsilon:
    high *= 2
    if high > 1e5:
      raise ValueError(f"no noise multiplier below 1e5 reaches epsilon {target_epsilon}")
  low = high / 2
  while low > 1e-3 and epsilon_at(low) <= target_epsilon:
    low /= 2
  root = optimize.brentq(lambda z: epsilon_at(z) - target_epsilon, low, high,
                         rtol=tolerance / 4) if epsilon_at(low) > target_epsilon else low
  noise = root * (1 + tolerance / 2)
  return noise if epsilon_at(noise) <= target_epsilon else high
