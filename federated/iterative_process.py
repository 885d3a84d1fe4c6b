"""TFF wiring: the pure-TF steps of federated/model_steps.py as federated computations.

One iterative process shape serves every federated algorithm (simple_fedavg's):
the server broadcasts the weights, each participating site runs a client step
(local training, or Dopamine's noisy clipped gradient sum), an aggregator from
`tff.aggregators` combines the results, and a server step applies them with
heavy-ball momentum. What differs between algorithms is the client step, the
aggregator and the server step's sign and rates.

Secure aggregation (`tff.aggregators.SecureSumFactory`) runs only in TFF's test
execution context, which simulates the secure sum, so `use_test_context` is
called before any computation runs in one process; on worker processes,
federated/execution.py lowers the secure sum the same way.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
# Internal, but the one place TFF states how adaptive clipping splits the noise.
from tensorflow_federated.python.aggregators import differential_privacy

from federated import dp_mean
from federated import model_steps as model_lib

_TEST_CONTEXT = None


def quiet_secure_sum_asserts() -> None:
  """Lowering the secure sum to a plain one builds assert ops that TF reports as "never
  used" on every compile; they are noise here."""
  tf.get_logger().setLevel("CRITICAL")


def use_test_context() -> None:
  """Makes TFF's test context (one local worker process) the default, once created;
  again after a remote runtime (federated/execution.py) replaced it."""
  global _TEST_CONTEXT
  if _TEST_CONTEXT is None:
    quiet_secure_sum_asserts()
    _TEST_CONTEXT = tff.backends.test.create_sync_test_cpp_execution_context()
  if tff.framework.get_context_stack().current is not _TEST_CONTEXT:
    tff.framework.set_default_context(_TEST_CONTEXT)


def data_type(num_features: int):
  return tff.to_type(collections.OrderedDict(
      x=tff.TensorType(np.float32, [None, num_features]),
      y=tff.TensorType(np.float32, [None]),
      patient=tff.TensorType(np.int32, [None]),
      num_patients=tff.TensorType(np.int32),
      site_rows=tff.TensorType(np.float32)))


SEED_TYPE = tff.TensorType(np.int64, [2])


def weights_type(weights: Sequence[np.ndarray]):
  return tff.to_type([tff.TensorType(np.float32, w.shape) for w in weights])


@dataclasses.dataclass(frozen=True)
class ClientStep:
  """What a site computes in a round, as a plain TF function of (weights, data, seed)."""
  fn: Callable
  weighted: bool = False     # also returns its number of rows, for a weighted mean


def local_training_step(steps: int, batch_size: int, learning_rate: float, dp: bool,
                        clip: float = 1.0, noise_multiplier: float = 0.0,
                        weighted: bool = False) -> ClientStep:
  """FedAvg-style client: local (DP-)SGD, returns the model delta.

  `weighted` (plain FedAvg only) averages by rows; DP algorithms average unweighted,
  since a site's row count is itself a function of its patients.
  """
  def fn(weights, data, seed):
    new = model_lib.local_train(weights, data["x"], data["y"], data["patient"],
                                data["num_patients"], seed, steps, batch_size, learning_rate,
                                dp, clip, noise_multiplier)
    return [n - w for n, w in zip(new, weights)]
  return ClientStep(fn, weighted=weighted)


def dopamine_step(sampling_rate: float, clip: float, noise_stddev_share: float) -> ClientStep:
  """Dopamine client: one noisy clipped gradient sum with its share of the noise."""
  def fn(weights, data, seed):
    return model_lib.noisy_clipped_sum(weights, data["x"], data["y"], data["patient"],
                                       data["num_patients"], tf.constant(sampling_rate),
                                       clip, tf.constant(noise_stddev_share), seed)
  return ClientStep(fn)


def build_process(initial: Sequence[np.ndarray], num_features: int, client: ClientStep,
                  aggregator, server_learning_rate: float, server_momentum: float,
                  direction_scale: float = 1.0) -> tff.templates.IterativeProcess:
  """An iterative process whose state is (weights, momentum, aggregator state).

  The server step moves along `direction_scale` x the aggregate: 1 for model
  deltas, -1 / B for a sum of gradients over an expected batch of B patients.
  """
  w_type = weights_type(initial)
  d_type = data_type(num_features)
  if client.weighted:
    aggregation = aggregator.create(w_type, tff.TensorType(np.float32))
  else:
    aggregation = aggregator.create(w_type)

  @tff.tensorflow.computation(w_type, d_type, SEED_TYPE)
  def client_update(weights, data, seed):
    update = client.fn(list(weights), data, seed)
    return collections.OrderedDict(update=update, rows=data["site_rows"])

  @tff.tensorflow.computation(w_type, w_type, w_type)
  def server_update(weights, momentum, aggregate):
    direction = [direction_scale * a for a in aggregate]
    new_weights, new_momentum = model_lib.server_momentum_step(
        list(weights), list(momentum), direction, server_learning_rate, server_momentum)
    return new_weights, new_momentum

  @tff.tensorflow.computation
  def initial_weights():
    return [tf.constant(w) for w in initial], [tf.zeros_like(w) for w in initial]

  @tff.federated_computation
  def initialize():
    weights, momentum = tff.federated_value(initial_weights(), tff.SERVER)
    return tff.federated_zip(collections.OrderedDict(
        weights=weights, momentum=momentum, aggregator=aggregation.initialize()))

  state_type = initialize.type_signature.result

  @tff.federated_computation(state_type, tff.FederatedType(d_type, tff.CLIENTS),
                             tff.FederatedType(SEED_TYPE, tff.CLIENTS))
  def next_fn(state, data, seeds):
    weights = tff.federated_broadcast(state.weights)
    out = tff.federated_map(client_update, (weights, data, seeds))
    if client.weighted:
      aggregated = aggregation.next(state.aggregator, out.update, out.rows)
    else:
      aggregated = aggregation.next(state.aggregator, out.update)
    new_weights, new_momentum = tff.federated_map(
        server_update, (state.weights, state.momentum, aggregated.result))
    new_state = tff.federated_zip(collections.OrderedDict(
        weights=new_weights, momentum=new_momentum, aggregator=aggregated.state))
    return new_state, aggregated.measurements

  return tff.templates.IterativeProcess(initialize, next_fn)


def build_cycle(process: tff.templates.IterativeProcess, initial: Sequence[np.ndarray],
                num_features: int, client: ClientStep) -> tff.Computation:
  """Cyclical weight transfer, one call per cycle: the model visits the cycle's sites in
  turn, each running `client` from the weights the previous site left, and takes each
  visit's delta whole (the server step of a one-site round of `process`, built with rate
  1 and no momentum: weights + 1 x (0 x momentum + delta)).

  TFF has no intrinsic that hands a value from one client to the next, so the chain is
  one TF computation over the sites' rows laid end to end (`cycle_value`), each visit
  reading only its own site's slice. It computes what one `process.next` call per site
  computes, bit for bit (tests/federated/tff_wiring_checks.py): at 200 sites the per-site
  calls spent about 20 ms each in TFF's dispatch, 4.6 s a cycle. Its argument and result
  are the process's server state, so either way of running a cycle continues the other.
  """
  w_type = weights_type(initial)
  cycle_type = tff.to_type(collections.OrderedDict(
      x=tff.TensorType(np.float32, [None, num_features]),
      y=tff.TensorType(np.float32, [None]),
      patient=tff.TensorType(np.int32, [None]),
      bounds=tff.TensorType(np.int32, [None]),         # site k's rows: bounds[k]:bounds[k+1]
      num_patients=tff.TensorType(np.int32, [None]),
      seeds=tff.TensorType(np.int64, [None, 2])))

  @tff.tensorflow.computation(w_type, w_type, cycle_type)
  def visit_sites(weights, momentum, cycle):
    def visit(k, weights, momentum):
      rows = slice(cycle["bounds"][k], cycle["bounds"][k + 1])
      data = collections.OrderedDict(x=cycle["x"][rows], y=cycle["y"][rows],
                                     patient=cycle["patient"][rows],
                                     num_patients=cycle["num_patients"][k])
      delta = client.fn(list(weights), data, cycle["seeds"][k])
      new_weights, new_momentum = model_lib.server_momentum_step(
          list(weights), list(momentum), delta, 1.0, 0.0)
      return k + 1, new_weights, new_momentum

    sites = tf.shape(cycle["seeds"])[0]
    _, new_weights, new_momentum = tf.while_loop(
        lambda k, *_: k < sites, visit, (tf.constant(0), list(weights), list(momentum)))
    return new_weights, new_momentum

  state_type = process.initialize.type_signature.result

  @tff.federated_computation(state_type, tff.FederatedType(cycle_type, tff.SERVER))
  def cycle_next(state, cycle):
    new_weights, new_momentum = tff.federated_map(
        visit_sites, (state.weights, state.momentum, cycle))
    return tff.federated_zip(collections.OrderedDict(
        weights=new_weights, momentum=new_momentum, aggregator=state.aggregator))

  return cycle_next


def cycle_value(values: Sequence[collections.OrderedDict],
                seeds: Sequence[np.ndarray]) -> collections.OrderedDict:
  """`build_cycle`'s argument: the sites' `client_value`s in visiting order, end to end."""
  if len(values) != len(seeds):
    raise ValueError(f"a cycle needs one seed per site: {len(values)} sites, "
                     f"{len(seeds)} seeds")
  sizes = [len(v["y"]) for v in values]
  return collections.OrderedDict(
      x=np.concatenate([v["x"] for v in values]),
      y=np.concatenate([v["y"] for v in values]),
      patient=np.concatenate([v["patient"] for v in values]),
      bounds=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32),
      num_patients=np.array([v["num_patients"] for v in values], np.int32),
      seeds=np.asarray(seeds, np.int64).reshape(-1, 2))


def client_value(site_data, rows: Optional[np.ndarray] = None) -> collections.OrderedDict:
  """A site's argument of a round: its rows (all, or those at `rows`: the patients the
  round draws, model_steps.drawn_rows), with its patient count and its row count (FedAvg's
  weight) always of the whole site."""
  take = slice(None) if rows is None else rows
  return collections.OrderedDict(x=site_data.x[take], y=site_data.y[take],
                                 patient=site_data.patient[take],
                                 num_patients=np.int32(site_data.num_patients),
                                 site_rows=np.float32(len(site_data.y)))


def weights_of(state) -> List[np.ndarray]:
  return [np.asarray(w) for w in state["weights"]]


def secure_sum_aggregator(bound: float):
  """Secure sum of float vectors, clipped to [-bound, bound] and quantized to 32 bits."""
  return tff.aggregators.SecureSumFactory(float(bound))


def dp_aggregator(noise_multiplier: float, clients_per_round: int, clip: float,
                  noise_key: np.ndarray):
  """Client-level DP mean with seeded noise: adaptive clipping where TFF allows it, else fixed.

  The mechanisms of TFF's DifferentiallyPrivateFactory.gaussian_adaptive (its defaults,
  starting from `clip`) and gaussian_fixed, with the same noise (federated/dp_mean.py).
  TFF's adaptive clipping spends part of the noise on the clipped count and raises
  ValueError when noise_multiplier >= 0.1 x clients_per_round (its default count
  noise): with a handful of hospitals and a useful epsilon that is the usual case,
  so fixed clipping is used there.
  """
  if noise_multiplier < 0.1 * clients_per_round:
    # TFF's own split of the noise, so the total multiplier stays `noise_multiplier`.
    value_noise, count_stddev = differential_privacy.adaptive_clip_noise_params(
        noise_multiplier, float(clients_per_round))
    mechanism = dp_mean.Mechanism(clients_per_round, clip, value_noise, adaptive=True,
                                  clipped_count_stddev=count_stddev)
    return SeededDPMeanFactory(mechanism, noise_key), "adaptive"
  mechanism = dp_mean.Mechanism(clients_per_round, clip, noise_multiplier)
  return SeededDPMeanFactory(mechanism, noise_key), "fixed"


class SeededDPMeanFactory(tff.aggregators.UnweightedAggregationFactory):
  """dp_mean's mechanism as a TFF aggregation: sites clip, the server sums and adds noise.

  Its state is the current clip and the number of releases so far; release n's noise
  comes from fold_in(noise_key, n), so the run's seed decides every round's noise.
  """

  def __init__(self, mechanism: dp_mean.Mechanism, noise_key: np.ndarray):
    self.mechanism = mechanism
    self.noise_key = np.asarray(noise_key, np.int64)

  def create(self, value_type) -> tff.templates.AggregationProcess:
    mechanism, noise_key = self.mechanism, self.noise_key

    @tff.tensorflow.computation
    def initial_state():
      return collections.OrderedDict(clip=tf.constant(mechanism.initial_clip, tf.float32),
                                     releases=tf.constant(0, tf.int64))

    state_type = initial_state.type_signature.result

    @tff.tensorflow.computation(state_type)
    def clip_of(state):
      return state["clip"]

    @tff.tensorflow.computation(tff.TensorType(np.float32), value_type)
    def site_record(clip, update):
      clipped, within = dp_mean.clip_update(update, clip)
      return collections.OrderedDict(clipped=clipped, within=within)

    @tff.tensorflow.computation(state_type, site_record.type_signature.result)
    def release(state, record_sum):
      seed = dp_mean.release_seed(tf.constant(noise_key), state["releases"])
      mean, next_clip = dp_mean.noisy_mean(mechanism, list(record_sum["clipped"]),
                                           record_sum["within"], state["clip"], seed)
      next_state = collections.OrderedDict(clip=next_clip, releases=state["releases"] + 1)
      # The clip measured is the next round's, as TFF's DP factory reports it.
      return mean, next_state, collections.OrderedDict(clip=next_clip)

    @tff.federated_computation
    def init_fn():
      return tff.federated_eval(initial_state, tff.SERVER)

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      clip = tff.federated_broadcast(tff.federated_map(clip_of, state))
      records = tff.federated_map(site_record, (clip, value))
      mean, next_state, measurements = tff.federated_map(
          release, (state, tff.federated_sum(records)))
      return tff.templates.MeasuredProcessOutput(next_state, mean, measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)


def mean_aggregator(weighted: bool):
  return tff.aggregators.MeanFactory() if weighted else tff.aggregators.UnweightedMeanFactory()


def noise_free(measurements) -> Optional[dict]:
  """Measurements as plain Python numbers (for the results file)."""
  try:
    return tf.nest.map_structure(lambda v: np.asarray(v).tolist(), dict(measurements))
  except (TypeError, ValueError):
    return None
