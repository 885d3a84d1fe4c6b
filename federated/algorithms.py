"""The seven algorithms, each a loop of rounds over the same model and data.

Pooled baselines (`centralized`, `central_dp`) run the pure-TF steps directly; the
federated ones run TFF iterative processes from federated/iterative_process.py. Every loop
draws its site schedule (which sites are selected, which fail) from the config's
seed, records what actually ran in a privacy ledger, and refuses a round that
would take the ledger over the budget (the round is discarded, nothing released).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from clinical_dp import sensitivity
from clinical_dp.report_format import auroc
from federated import model_steps as model_lib
from federated import iterative_process
from federated.accounting import Ledger, epsilon_of, solve_noise
from federated.config import ALGORITHMS, FederatedConfig
from federated.execution import LocalRuntime, Runtime
from federated.site_data import FederatedData, SiteData

Log = Callable[[str], None]


@dataclasses.dataclass
class Result:
  """One algorithm's outcome: final weights, curve, privacy and timing."""
  algorithm: str
  weights: List[np.ndarray]
  auroc_per_round: List[float]
  eval_rounds: List[int]
  rounds: int
  rounds_planned: int
  wall_seconds: float
  round_seconds: float
  privacy: Dict
  details: Dict
  # Rounds a lost TFF worker affected, and what was done (execution.RemoteRuntime).
  worker_faults: List[Dict] = dataclasses.field(default_factory=list)
  # The median round: unlike the mean, not dominated by the first round's compilation.
  round_seconds_median: float = 0.0


def evaluate(weights: Sequence[np.ndarray], part: SiteData) -> Dict:
  p = model_lib.predict(weights, part.x)
  accuracy = float(np.mean((p >= 0.5) == (part.y >= 0.5))) if part.rows else None
  return {"auroc": auroc(part.y, p), "accuracy": accuracy, "n": part.rows}


class _Schedule:
  """Which sites take part in each round: selection, then simulated failures."""

  def __init__(self, sites: Sequence[str], config: FederatedConfig):
    self.sites = list(sites)
    self.per_round = config.clients_per_round or len(sites)
    if self.per_round > len(sites):
      raise ValueError(f"clients_per_round {self.per_round} exceeds the {len(sites)} sites")
    self.dropout_rate = config.dropout_rate
    # One schedule stream per run seed, so every algorithm sees the same failures.
    self.rng = np.random.default_rng([config.seed, 7919])
    self.dropped = 0

  def next(self) -> List[str]:
    chosen = sorted(self.rng.choice(len(self.sites), self.per_round, replace=False))
    alive = self.rng.random(len(chosen)) >= self.dropout_rate
    self.dropped += int((~alive).sum())
    return [self.sites[i] for i, ok in zip(chosen, alive) if ok]


def _seed(config: FederatedConfig, algorithm: str, round_index: int, site: int) -> np.ndarray:
  return np.array([config.seed * 1000 + ALGORITHMS.index(algorithm),
                   round_index * 1000 + site], np.int64)


class _Runner:
  """Shared bookkeeping of one algorithm's run: curve, timing, progress lines."""

  def __init__(self, algorithm: str, data: FederatedData, config: FederatedConfig, log: Log):
    self.algorithm, self.data, self.config, self.log = algorithm, data, config, log
    self.eval_part = data.pooled("eval")
    self.curve: List[float] = []
    self.curve_rounds: List[int] = []
    self.started = time.time()
    self.round_times: List[float] = []
    self.progress_every = max(1, config.rounds // 5)

  def after_round(self, round_index: int, weights: Sequence[np.ndarray], seconds: float,
                  note: str = "") -> None:
    self.round_times.append(seconds)
    last = round_index == self.config.rounds
    if round_index % self.config.eval_every == 0 or last:
      self.curve.append(evaluate(weights, self.eval_part)["auroc"])
      self.curve_rounds.append(round_index)
    if round_index % self.progress_every == 0 or last:
      value = self.curve[-1] if self.curve_rounds and self.curve_rounds[-1] == round_index \
          else None
      self.log(f"[{self.algorithm}] round {round_index}/{self.config.rounds}"
               + (f" eval AUROC {value:.4f}" if value is not None else "")
               + f" ({seconds:.2f} s/round){note}")

  def result(self, weights, rounds_run: int, privacy: Dict, details: Dict) -> Result:
    if not self.curve_rounds:  # stopped before its first evaluation
      self.curve.append(evaluate(weights, self.eval_part)["auroc"])
      self.curve_rounds.append(rounds_run)
    return Result(self.algorithm, [np.asarray(w) for w in weights], self.curve,
                  self.curve_rounds, rounds_run, self.config.rounds,
                  time.time() - self.started,
                  float(np.mean(self.round_times)) if self.round_times else 0.0, privacy,
                  details, round_seconds_median=float(np.median(self.round_times))
                  if self.round_times else 0.0)


def _no_privacy() -> Dict:
  return {"epsilon": math.inf, "delta": None, "unit": "none (not private)",
          "accountant": None}


# --- pooled baselines (pure TF) -------------------------------------------------------

def _pooled(algorithm: str, data: FederatedData, config: FederatedConfig, log: Log) -> Result:
  runner = _Runner(algorithm, data, config, log)
  train = data.pooled("train")
  dp = algorithm == "central_dp"
  weights = [tf.constant(w) for w in model_lib.initial_weights(
      len(data.feature_names), config.model, config.hidden_units, config.seed)]
  momentum = [tf.zeros_like(w) for w in weights]
  expected, q = _poisson_sampling(config.batch_size, train.num_patients)
  x, y = tf.constant(train.x), tf.constant(train.y)
  patient, num_patients = tf.constant(train.patient), tf.constant(train.num_patients)
  sigma = 0.0
  ledger = None
  if dp:
    sigma = solve_noise(lambda s: epsilon_of({(q, s): config.rounds}, config.delta),
                        config.target_epsilon)
    ledger = Ledger(config.delta, "patient", ("pooled",))

  @tf.function
  def step(weights, momentum, seed):
    if dp:
      sums = model_lib.noisy_clipped_sum(weights, x, y, patient, num_patients, q, config.clip,
                                         tf.constant(sigma * config.clip), seed)
      direction = [-s / expected for s in sums]
    else:
      rows = model_lib.sample_patients(patient, num_patients, q, seed)
      direction = [-g for g in model_lib.mean_gradient(weights, tf.gather(x, rows),
                                                       tf.gather(y, rows))]
    return model_lib.server_momentum_step(weights, momentum, direction, config.learning_rate,
                                          config.momentum)

  rounds_run = 0
  for r in range(1, config.rounds + 1):
    if ledger and ledger.epsilon_after({"pooled": (q, sigma)}) > config.target_epsilon:
      log(f"[{algorithm}] budget reached after {rounds_run} rounds; stopping")
      break
    t = time.time()
    weights, momentum = step(weights, momentum, tf.constant(_seed(config, algorithm, r, 0)))
    if ledger:
      ledger.record({"pooled": (q, sigma)})
    rounds_run = r
    runner.after_round(r, [w.numpy() for w in weights], time.time() - t)
  privacy = _no_privacy() if not dp else dict(
      ledger.to_dict(), noise_multiplier=sigma, sampling="poisson", sampling_probability=q,
      clip=config.clip, expected_batch=expected)
  return runner.result([w.numpy() for w in weights], rounds_run, privacy,
                       {"steps": rounds_run, "where": "pooled data (not achievable in practice)"})


# --- federated algorithms (TFF) -------------------------------------------------------

def _poisson_sampling(batch_size: int, num_patients: int) -> Tuple[float, float]:
  """(expected batch, sampling rate q) of a Poisson-sampled step on num_patients."""
  expected = float(model_lib.expected_batch(batch_size, num_patients))
  return expected, expected / max(1, num_patients)


def _federated(algorithm: str, data: FederatedData, config: FederatedConfig,
               log: Log, runtime: Runtime) -> Result:
  runner = _Runner(algorithm, data, config, log)
  schedule = _Schedule(data.sites, config)
  train = data.splits["train"]
  initial = model_lib.initial_weights(len(data.feature_names), config.model,
                                      config.hidden_units, config.seed)
  num_features = len(data.feature_names)
  per_round = schedule.per_round
  site_sampling = {s: _poisson_sampling(config.site_batch_size, train[s].num_patients)
                   for s in data.sites}
  rates = {s: q for s, (_, q) in site_sampling.items()}
  steps = config.local_steps
  details: Dict = {}
  sigma = 0.0
  ledger: Optional[Ledger] = None
  step_events: Callable[[List[str]], Dict[str, tuple]] = lambda active: {}

  if algorithm == "fedavg":
    client = iterative_process.local_training_step(
        steps, config.site_batch_size, config.client_learning_rate, dp=False, weighted=True)
    built = iterative_process.build_process(initial, num_features, client,
                                            iterative_process.mean_aggregator(True),
                                            config.server_learning_rate, 0.0)
  elif algorithm in ("local_dp", "cyclical"):
    # Each site's patients are touched only by that site's own DP-SGD steps.
    visits = config.rounds  # local_dp: a site runs `steps` per round; cyclical: per cycle
    worst_q = max(rates.values())
    sigma = solve_noise(lambda s: epsilon_of({(worst_q, s): visits * steps}, config.delta),
                        config.target_epsilon)
    client = iterative_process.local_training_step(steps, config.site_batch_size,
                                                   config.client_learning_rate, dp=True,
                                                   clip=config.site_clip, noise_multiplier=sigma)
    server_lr = config.server_learning_rate if algorithm == "local_dp" else 1.0
    built = iterative_process.build_process(initial, num_features, client,
                                            iterative_process.mean_aggregator(False),
                                            server_lr, 0.0)
    if algorithm == "cyclical":
      cycle = iterative_process.build_cycle(built, initial, num_features, client)
    ledger = Ledger(config.delta, "patient", data.sites)
    step_events = lambda active: {s: (rates[s], sigma) for s in active}
    details.update(noise_multiplier=sigma, sampling="poisson (per site)",
                   site_sampling_rates=rates, local_steps=steps, clip=config.site_clip,
                   expected_site_batches={s: b for s, (b, _) in site_sampling.items()})
  elif algorithm == "dp_fedavg":
    # One patient of a site that takes part either way moves the site's clipped update by
    # up to 2 x update_clip (clinical_dp/sensitivity.py: site_update), so each round is,
    # for the patient, a Gaussian mechanism of multiplier sigma / 2; the noise is solved
    # for the patient, the relation of every release. (A whole site added or removed
    # moves the sum by one clip: the site-level figure is recorded beside it.)
    per_patient = config.update_clip / sensitivity.site_update(config.update_clip, True)
    sigma = solve_noise(lambda s: epsilon_of({(1.0, s * per_patient): config.rounds},
                                             config.delta), config.target_epsilon)
    # Round 0 is no client's seed: the server's noise has a stream of its own.
    noise_key = _seed(config, algorithm, 0, 0)
    aggregator, clipping = iterative_process.dp_aggregator(sigma, per_round, config.update_clip,
                                                           noise_key)
    client = iterative_process.local_training_step(steps, config.site_batch_size,
                                                   config.client_learning_rate, dp=False)
    built = iterative_process.build_process(initial, num_features, client, aggregator,
                                            config.server_learning_rate, 0.0)
    ledger = Ledger(config.delta, "patient", data.sites)
    step_events = lambda active: {s: (1.0, sigma * per_patient) for s in active}
    details.update(noise_multiplier=sigma, clipping=clipping, update_clip=config.update_clip,
                   aggregator="federated.dp_mean (tff.aggregators.DifferentiallyPrivateFactory"
                   f".gaussian_{clipping}'s mechanism, noise seeded per round)",
                   noise_key=noise_key.tolist(), local_steps=steps,
                   sensitivity="2 x update_clip per patient (a site's clipped update moves "
                   "from one vector of norm <= clip to another); 1 x update_clip per site",
                   sampling="none claimed (each round a Gaussian mechanism per site)")
  elif algorithm == "dopamine":
    total = sum(train[s].num_patients for s in data.sites)
    expected, q = _poisson_sampling(config.batch_size, total)
    expected_active = per_round * (1.0 - config.dropout_rate)
    # Planned for the expected survivors; the ledger records the noise actually added.
    sigma = solve_noise(lambda s: epsilon_of(
        {(q, s * math.sqrt(expected_active / per_round)): config.rounds}, config.delta),
        config.target_epsilon)
    share = sigma * config.clip / math.sqrt(per_round)
    # The secure sum's range must hold a site's noisy sum: its sampled patients' clipped
    # gradients (expected batch x clip in total, doubled for sampling) plus 8 noise sds.
    bound = 2.0 * expected * config.clip + 8.0 * share
    client = iterative_process.dopamine_step(q, config.clip, share)
    built = iterative_process.build_process(initial, num_features, client,
                                            iterative_process.secure_sum_aggregator(bound),
                                            config.learning_rate, config.momentum,
                                            direction_scale=-1.0 / expected)
    ledger = Ledger(config.delta, "patient", data.sites)
    step_events = lambda active: {
        s: (q, sigma * math.sqrt(len(active) / per_round)) for s in active}
    details.update(noise_multiplier=sigma, noise_stddev_share=share,
                   noise_share_rule=f"sigma * clip / sqrt({per_round})",
                   sampling="poisson (per site)", sampling_probability=q,
                   expected_batch=expected, clip=config.clip,
                   aggregator="tff.aggregators.SecureSumFactory", secure_sum_bound=bound)
  else:
    raise ValueError(f"not a federated algorithm: {algorithm}")

  def client(site: str, round_index: int) -> Tuple[collections.OrderedDict, np.ndarray]:
    """The site's argument and seed for one round: only the rows its draws take."""
    seed = _seed(config, algorithm, round_index, data.sites.index(site))
    part = train[site]
    if algorithm == "dopamine":  # one Poisson draw at the pooled rate, on the round's seed
      q_site, seeds = tf.constant(q, tf.float32), [seed]
    else:  # the local steps' draws (model_steps.local_train)
      q_site = model_lib.local_sampling_rate(config.site_batch_size, part.num_patients)
      seeds = list(model_lib.local_step_seeds(tf.constant(seed), steps))
    rows = model_lib.drawn_rows(part.patient, part.num_patients, q_site, seeds)
    return iterative_process.client_value(part, rows), seed

  faults_before = len(runtime.faults)
  state = runtime.call(built.initialize, algorithm=algorithm, round_index=0)
  weights = iterative_process.weights_of(state)
  rounds_run = 0
  secure_clipped = 0
  skipped = 0
  for r in range(1, config.rounds + 1):
    t = time.time()
    active = schedule.next()
    repeats = steps if algorithm in ("local_dp", "cyclical") else 1
    events = step_events(active)
    if ledger and ledger.epsilon_after(events, repeats) > config.target_epsilon:
      # Too few sites survived for this round's noise to fit the budget (Dopamine: their
      # noise shares are missing), or the budget is spent: the round is discarded, its
      # sum never unmasked. What decides is who failed, not the data: no privacy cost.
      skipped += 1
      log(f"[{algorithm}] round {r}: {len(active)} site(s) left, over budget; round discarded")
      continue
    if active:
      values, seeds = zip(*(client(s, r) for s in active))
      if algorithm == "cyclical":  # the model visits the surviving sites in turn
        state = runtime.call(cycle, state, iterative_process.cycle_value(values, seeds),
                             algorithm=algorithm, round_index=r)
      else:
        state, measurements = runtime.call(built.next, state, list(values), list(seeds),
                                           algorithm=algorithm, round_index=r)
        if algorithm == "dopamine":
          secure_clipped += int(measurements["secure_upper_clipped_count"]) + int(
              measurements["secure_lower_clipped_count"])
      if ledger:
        ledger.record(events, repeats)
    weights = iterative_process.weights_of(state)
    rounds_run += 1
    runner.after_round(r, weights, time.time() - t,
                       f" sites {len(active)}/{per_round}" if config.dropout_rate else "")
  details.update(sites_per_round=per_round, site_failures=schedule.dropped,
                 rounds_discarded_for_budget=skipped)
  if algorithm == "dopamine":
    details["secure_sum_clipped_values"] = secure_clipped
  privacy = _no_privacy() if ledger is None else dict(ledger.to_dict(), **{
      k: v for k, v in details.items()
      if k in ("noise_multiplier", "sampling", "clip", "sensitivity")})
  if algorithm == "dp_fedavg" and ledger is not None:
    privacy["site_level"] = {
        "relation": sensitivity.SITE_RELATION, "delta": config.delta,
        "epsilon": max(epsilon_of({(1.0, sigma): n}, config.delta)
                       for n in ledger.steps().values())}
  result = runner.result(weights, rounds_run, privacy, details)
  result.worker_faults = runtime.faults[faults_before:]
  return result


def run(algorithm: str, data: FederatedData, config: FederatedConfig, log: Log,
        runtime: Optional[Runtime] = None) -> Result:
  """One algorithm's run; `runtime` (federated/execution.py) says where its TFF rounds
  run, by default TFF's single local process. A config without a seed runs on a secret
  one."""
  config = config.seeded()
  if algorithm in ("centralized", "central_dp"):
    return _pooled(algorithm, data, config, log)
  return _federated(algorithm, data, config, log, runtime or LocalRuntime())
