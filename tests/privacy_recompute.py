"""An outside reviewer's recomputation of a released privacy record.

From a record's own fields only, each mechanism's epsilon is recomputed with
dp-accounting, the noise multiplier divided by the L2 sensitivity of the relation the
record names, derived here from first principles and not taken from the project's
accounting code (trainers/accounting.py, clinical_dp/sensitivity.py):

* one patient added or removed, Poisson sampling: a sum of per-example clipped gradients
  moves by one clip per row of the patient (by two with microbatches of several rows,
  where the patient's microbatch is there either way); each released statistic's
  multiplier is per row, k rows move it k times;
* fixed-size batches (the number of patients fixed): a patient replaced by another moves
  the clipped sum by two clips (one example's clipped gradient can turn from +C u to
  -C u), under dp-accounting's REPLACE_ONE;
* dp_fedavg: one patient of a site that takes part either way moves the site's clipped
  update from one vector of norm <= S to another, 2 S.
"""

from __future__ import annotations

from typing import Dict

import dp_accounting

ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
PATIENT_RELATION = "one patient added or removed"


def _epsilon(event, delta: float, replace_one: bool = False) -> float:
  relation = (dp_accounting.NeighboringRelation.REPLACE_ONE if replace_one
              else dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
  accountant = dp_accounting.rdp.RdpAccountant(ORDERS, relation)
  accountant.compose(event)
  return float(accountant.get_epsilon(delta))


def trainer_epsilon(record: Dict) -> float:
  """A DP trainer's record (trainers/dp_training.py write_privacy_record)."""
  k = int(record["max_rows_per_patient"])
  sigma = float(record["noise_multiplier"])
  releases = list(record.get("released_noise_multipliers") or [])
  if record.get("label_count_noise_multiplier"):
    releases.append(record["label_count_noise_multiplier"])
  events = []
  if record["sampling"] == "fixed":  # replace-one: 2 C per row
    assert k == 1 and not releases, "fixed-size batches have no patient-level analysis here"
    step = dp_accounting.SampledWithoutReplacementDpEvent(
        record["num_examples"], record["batch_size"],
        dp_accounting.GaussianDpEvent(sigma / 2.0))
    return _epsilon(dp_accounting.SelfComposedDpEvent(step, record["steps"]),
                    record["delta"], replace_one=True)
  per_row = 2.0 if record["examples_per_microbatch"] > 1 else 1.0
  if record["steps"]:
    step = dp_accounting.PoissonSampledDpEvent(
        record["sampling_probability"], dp_accounting.GaussianDpEvent(sigma / (per_row * k)))
    events.append(dp_accounting.SelfComposedDpEvent(step, record["steps"]))
  events += [dp_accounting.GaussianDpEvent(s / k) for s in releases]
  return _epsilon(dp_accounting.ComposedDpEvent(events), record["delta"])


def federated_epsilon(record: Dict) -> float:
  """A federated model's record (federated/simulate.py): the worst site's ledger."""
  worst = 0.0
  for site, mechanisms in record["mechanisms_per_site"].items():
    events = []
    for m in mechanisms:
      if record.get("algorithm") == "dp_fedavg":  # sensitivity 2 S per patient
        gaussian = dp_accounting.GaussianDpEvent(float(record["noise_multiplier"]) / 2.0)
      else:
        gaussian = dp_accounting.GaussianDpEvent(m["noise_multiplier"])
      step = gaussian if m["q"] >= 1 else dp_accounting.PoissonSampledDpEvent(m["q"], gaussian)
      events.append(dp_accounting.SelfComposedDpEvent(step, m["count"]))
    if events:
      worst = max(worst, _epsilon(dp_accounting.ComposedDpEvent(events), record["delta"]))
    del site
  return worst


def recomputed_epsilon(record: Dict) -> float:
  """The epsilon a reviewer gets from the record's fields, for one patient added or
  removed (fixed-size records: replace-one)."""
  if "mechanisms_per_site" in record:
    return federated_epsilon(record)
  return trainer_epsilon(record)
