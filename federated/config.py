"""Typed configuration of a federated simulation.

Pure Python on purpose (no TensorFlow import): the pipeline runtime imports this
module to build the command line of `python -m federated.simulate`, which then runs
in the federated runtime.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from clinical_dp import secret_seed

ALGORITHMS: Tuple[str, ...] = ("centralized", "fedavg", "central_dp", "local_dp", "dp_fedavg",
                               "dopamine", "cyclical")
DP_ALGORITHMS: Tuple[str, ...] = ("central_dp", "local_dp", "dp_fedavg", "dopamine", "cyclical")
MODELS: Tuple[str, ...] = ("mlp", "logistic")
# The DP federated model released by default: patient-level DP with secure aggregation,
# the closest to centralized training in the comparison. Each released model adds its
# epsilon to the per-patient total; the others are trained for the report's comparison.
DEFAULT_FEDERATED_RELEASE: Tuple[str, ...] = ("dopamine",)
RELEASE_FEDERATED_HELP = (
    f"the DP federated models to release, separated by commas, 'all' or 'none' (default "
    f"{','.join(DEFAULT_FEDERATED_RELEASE)}). Every algorithm is trained and compared in the "
    "report; each released model adds its epsilon per patient")


def federated_release(text: str) -> Tuple[str, ...]:
  """`--release-federated`: DP federated algorithms separated by commas, 'all' or 'none'
  (ValueError naming the unknown ones)."""
  text = text.strip()
  if text == "all":
    return DP_ALGORITHMS
  if text == "none":
    return ()
  names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
  unknown = [n for n in names if n not in DP_ALGORITHMS]
  if unknown or not names:
    raise ValueError(f"--release-federated takes DP federated algorithms separated by commas "
                     f"({', '.join(DP_ALGORITHMS)}), 'all' or 'none'; got {text!r}"
                     + (f" (not one of them: {', '.join(unknown)})" if unknown else ""))
  return names


# The comparison's results; federated.simulate writes it last, so it marks a finished run.
RESULTS_FILE = "federated.json"


@dataclasses.dataclass(frozen=True)
class FederatedConfig:
  """What to train and with which privacy budget; every field is a CLI flag.

  A round means: one communication round of FedAvg-style algorithms (each selected
  site runs `local_steps` steps), one DP-SGD step for `dopamine` and `central_dp`
  (the sites' noisy gradient sums are added into one step), one step of pooled
  training for `centralized`, and one full cycle over the sites for `cyclical`.
  """
  algorithm: str = "all"
  rounds: int = 150
  clients_per_round: int = 0        # 0: every site each round
  target_epsilon: float = 3.0
  delta: float = 1e-5
  # Every draw of a run (site schedule, initial weights, sampling, DP noise). None (the
  # default): a secret seed drawn per run and kept nowhere (clinical_dp/secret_seed.py);
  # records say null. A number reproduces a run, for tests and benchmarks, and lets
  # whoever knows it redraw the noise.
  seed: Optional[int] = None
  dropout_rate: float = 0.0         # chance that a selected site fails in a round
  model: str = "mlp"
  hidden_units: int = 16
  # Per-patient gradient norm bounds of DP-SGD: `clip` in the pooled-batch steps
  # (central_dp, dopamine: expected batch `batch_size`), `site_clip` in a site's local
  # steps (local_dp, cyclical: expected batch `site_batch_size`). Simulated icu seeds 11 and
  # 12 (8 and 200 hospitals, epsilon 3): clip 2 against 1 raised dopamine by 0.003-0.006
  # test AUROC and central_dp by 0.007 (clip 3: level with 2); in cyclical's chain of site
  # steps 2 lost 0.01-0.02 (local_dp gained 0.01), so the site steps keep 1.
  clip: float = 2.0
  site_clip: float = 1.0
  # Expected batches (capped at the patients there: model.expected_batch)
  batch_size: int = 1024            # pooled batch of centralized / central_dp / dopamine
  site_batch_size: int = 64         # batch of a site's local steps
  local_steps: int = 5              # local steps per round (fedavg, local_dp, dp_fedavg, cyclical)
  learning_rate: float = 0.5        # step size of pooled and secure-sum DP-SGD (with momentum)
  momentum: float = 0.9
  client_learning_rate: float = 0.2  # step size of a site's local steps
  server_learning_rate: float = 1.0  # FedAvg server step on the averaged model update
  # dp_fedavg: bound on a site's model update (client level). The noise is z x clip / K
  # whatever the updates' size, so a bound above most of them pays noise for room no update
  # uses: on 200 simulated hospitals (seeds 11, 12) 0.2 against 0.5 raised test AUROC from
  # 0.851 / 0.856 to 0.865 / 0.873 (0.1: level with 0.2; 0.3: 0.863); 8 hospitals 0.63 -> 0.65.
  update_clip: float = 0.2
  eval_every: int = 5               # rounds between AUROC points on the eval split

  def __post_init__(self):
    if self.algorithm not in ALGORITHMS + ("all",):
      raise ValueError(f"algorithm must be one of {list(ALGORITHMS) + ['all']}, "
                       f"got {self.algorithm!r}")
    if self.model not in MODELS:
      raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
    for name in ("rounds", "hidden_units", "batch_size", "site_batch_size", "local_steps",
                 "eval_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
    if self.clients_per_round < 0:
      raise ValueError(f"clients_per_round must be >= 0, got {self.clients_per_round}")
    if not self.target_epsilon > 0:
      raise ValueError(f"target_epsilon must be positive, got {self.target_epsilon}")
    if not 0 < self.delta < 1:
      raise ValueError(f"delta must be in (0, 1), got {self.delta}")
    if not 0 <= self.dropout_rate < 1:
      raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
    for name in ("clip", "site_clip", "learning_rate", "client_learning_rate",
                 "server_learning_rate", "update_clip"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not 0 <= self.momentum < 1:
      raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")

  def seeded(self) -> "FederatedConfig":
    """This config with the seed a run draws from: the given one, else a secret one."""
    return dataclasses.replace(self, seed=secret_seed.resolve(self.seed))

  @property
  def algorithms(self) -> Tuple[str, ...]:
    return ALGORITHMS if self.algorithm == "all" else (self.algorithm,)

  @classmethod
  def fast(cls, **changes) -> "FederatedConfig":
    """A few rounds of a small model: for tests and smoke runs, not for results."""
    values = dict(rounds=6, hidden_units=4, batch_size=128, site_batch_size=32, local_steps=2,
                  eval_every=2, target_epsilon=5.0, delta=1e-4)
    values.update(changes)
    return cls(**values)

  def to_args(self) -> List[str]:
    """The CLI flags of federated.simulate for this config (not data, spec or output)."""
    args: List[str] = []
    for field in dataclasses.fields(self):
      if getattr(self, field.name) is None:  # the flag's default
        continue
      args += [flag(field.name), repr(getattr(self, field.name))
               if isinstance(getattr(self, field.name), float) else str(getattr(self, field.name))]
    return args


def flag(name: str) -> str:
  return "--" + name.replace("_", "-")


def examples_source(examples: str) -> List[str]:
  """federated.simulate's input: a pipeline Examples directory (ExampleGen's output)."""
  return ["--examples", examples]


def prepared_source(prepared_csv: str, buckets: Dict[str, int]) -> List[str]:
  """federated.simulate's input: the pipeline's prepared input, split as CsvExampleGen
  splits it with these hash buckets (split name -> buckets, in order)."""
  return ["--prepared", prepared_csv, "--split-buckets",
          ",".join(f"{name}={count}" for name, count in buckets.items())]


def parse_buckets(text: str) -> Dict[str, int]:
  """`train=8,eval=1,test=1` -> {"train": 8, "eval": 1, "test": 1} (prepared_source's)."""
  buckets = {}
  for part in text.split(","):
    name, _, count = part.partition("=")
    if not name or not count.isdigit() or int(count) < 1:
      raise ValueError(f"--split-buckets {text!r}: expected name=count,... with counts >= 1, "
                       "e.g. train=8,eval=1,test=1")
    buckets[name] = int(count)
  return buckets


def simulate_command(python: str, source: List[str], spec_yaml: str, args: List[str],
                     output: str) -> List[str]:
  """The federated step's command line, locally (FederatedStep) and in the Kubeflow
  container alike; here because neither side can import the other's runtime. `source`:
  examples_source or prepared_source."""
  return [python, "-m", "federated.simulate", *source, "--spec-yaml", spec_yaml, *args,
          "--output", output]
