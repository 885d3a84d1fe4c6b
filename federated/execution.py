"""Where the rounds' TFF computations run, and what happens when a worker dies.

LocalRuntime (the default): TFF's test context in one local worker process; the test
context lowers secure sums (Dopamine's SecureSumFactory) to plain sums, which the
default local context cannot run.

RemoteRuntime: one TFF AsyncExecutionContext per worker_binary (federated/workers.py)
under a MergeableCompExecutionContext, which splits each call's sites into one group per
worker, runs the groups side by side and merges their partial aggregates; secure sums are
lowered first, as in the test context. Splitting changes the order in which site updates
are summed, nothing else: every site's seed and the server's noise key are the same, so
the figures match one process to float tolerance (exactly, for Dopamine's integer secure
sum).

Faults. TFF retries a call to an unreachable worker forever (a SIGKILLed worker makes
the next round hang with no exception, docs/design.md), so here a worker's lost connection
raises at once (_FailFastRpcs), each call has a deadline, and on either the workers are
checked: a worker started here that exited, one that refused the call, or one that does
not answer a probe within seconds is dropped, the contexts are rebuilt on the survivors
and the call is made again with the same arguments. A round is a pure function of
(state, sites, seeds), so the retried round releases exactly what the first attempt
would have: the ledger, which records a round once it returns, counts it once. With no
worker left the run stops (NoWorkersLeft).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Dict, List, Optional, Protocol

import grpc
import tensorflow_federated as tff
from tensorflow_federated.proto.v0 import executor_pb2, executor_pb2_grpc
# Internal, but the one place TFF turns a cardinality map into its request field.
from tensorflow_federated.python.core.impl.executors import value_serialization

from federated import iterative_process
from federated.workers import NoWorkersLeft, Worker, WorkerPool

Log = Callable[[str], None]

# As TFF's own local context: messages carry whole sites' tables.
_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
CHANNEL_OPTIONS = [("grpc.max_message_length", _MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]
# gRPC codes of a worker that went away (TFF's "retryable" codes) or of a call this
# runtime cancelled by closing the channel.
_LOST_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION,
               grpc.StatusCode.CANCELLED)
PROBE_SECONDS = 5.0
CONNECT_SECONDS = 30.0
# Automatic deadline: the first call of a computation on a set of contexts includes its
# compilation (seconds, more on a loaded machine); later calls get ten times the slowest
# so far, and never less than MIN_DEADLINE_SECONDS.
FIRST_CALL_DEADLINE_SECONDS = 300.0
MIN_DEADLINE_SECONDS = 30.0
DEADLINE_FACTOR = 10.0


class WorkerLost(RuntimeError):
  """A worker refused or dropped a call (it exited, or its connection is gone)."""

  def __init__(self, address: str, code: str):
    super().__init__(f"TFF worker {address} lost ({code})")
    self.address = address


class RoundTimeout(RuntimeError):
  """A call ran past its deadline while every worker still answered."""


class Runtime(Protocol):
  """Where an algorithm's TFF calls run (LocalRuntime or RemoteRuntime)."""
  faults: List[Dict]  # lost workers and the rounds they affected, in order

  def call(self, fn: Callable, *args, algorithm: str = "", round_index: int = 0): ...

  def record(self) -> Dict: ...

  def close(self) -> None: ...


class LocalRuntime:
  """TFF's single local process (the test context); no fault handling needed."""

  def __init__(self):
    self.faults: List[Dict] = []

  def call(self, fn: Callable, *args, algorithm: str = "", round_index: int = 0):
    del algorithm, round_index  # one process: nothing to report per round
    iterative_process.use_test_context()
    return fn(*args)

  def record(self) -> Dict:
    return {"place": "one local TFF process (TFF's test context)", "workers": [],
            "faults": []}

  def close(self) -> None:
    pass


class _FailFastRpcs:
  """The gRPC stub's calls, raising WorkerLost where TFF would retry forever."""

  def __init__(self, rpcs, address: str):
    self._rpcs, self._address = rpcs, address

  def __getattr__(self, name):
    rpc = getattr(self._rpcs, name)

    def call(request):
      try:
        return rpc(request)
      except grpc.RpcError as e:
        if isinstance(e, grpc.Call) and e.code() in _LOST_CODES:
          raise WorkerLost(self._address, e.code().name) from e
        raise
    return call


class _WorkerStub(tff.framework.RemoteExecutorGrpcStub):
  """TFF's stub on one worker, failing fast; disposing values on a lost worker (from
  garbage collection, after the fact) is not an error."""

  def __init__(self, channel: grpc.Channel, address: str):
    super().__init__(channel)
    self._stub = _FailFastRpcs(self._stub, address)

  def dispose(self, request):
    try:
      return super().dispose(request)
    except (WorkerLost, grpc.RpcError):
      return executor_pb2.DisposeResponse()


def _worker_context(stub: _WorkerStub) -> tff.framework.AsyncExecutionContext:
  """An async context on one worker, as TFF's local context builds it (TFF's native
  compiler; the secure sums are already lowered by the mergeable compiler)."""
  def executor_stack(cardinalities):
    # Without a default, the worker answers "No cardinality provided for `clients`"
    # for computations with no client-placed argument (initialize).
    cardinalities.setdefault(tff.CLIENTS, 0)
    executor = tff.framework.RemoteExecutor(stub)
    executor.set_cardinalities(cardinalities)
    return executor
  return tff.framework.AsyncExecutionContext(
      executor_fn=tff.framework.ResourceManagingExecutorFactory(executor_stack),
      compiler_fn=tff.backends.native.desugar_and_transform_to_native,
      transform_args=tff.tensorflow.transform_args,
      transform_result=tff.tensorflow.transform_result)


def _mergeable_form(computation):
  """Secure sums lowered to plain sums (as the test context does), then split at the
  aggregation into up-to-merge / merge / after-merge parts."""
  lowered = tff.backends.test.replace_secure_intrinsics_with_bodies(computation)
  return tff.backends.native.compile_to_mergeable_comp_form(lowered)


def answers(address: str, timeout: float = PROBE_SECONDS) -> bool:
  """True when the worker at `address` opens and closes an executor within `timeout`
  (a stopped or wedged process still accepts TCP connections, so a connection alone
  proves nothing)."""
  channel = grpc.insecure_channel(address)
  try:
    grpc.channel_ready_future(channel).result(timeout=timeout)
    rpcs = executor_pb2_grpc.ExecutorGroupStub(channel)
    cardinalities = value_serialization.serialize_cardinalities({tff.CLIENTS: 0})
    executor = rpcs.GetExecutor(executor_pb2.GetExecutorRequest(cardinalities=cardinalities),
                                timeout=timeout).executor
    rpcs.DisposeExecutor(executor_pb2.DisposeExecutorRequest(executor=executor),
                         timeout=timeout)
    return True
  except (grpc.FutureTimeoutError, grpc.RpcError):
    return False
  finally:
    channel.close()


def _names(workers: List[Worker]) -> str:
  return ", ".join(w.describe() for w in workers)


def _ready(worker: Worker, channel: grpc.Channel, timeout: float = CONNECT_SECONDS) -> bool:
  """Waits until the channel connects; gives up at once on a worker started here that
  has exited (gRPC would keep retrying its port)."""
  future = grpc.channel_ready_future(channel)
  deadline = time.time() + timeout
  while time.time() < deadline and not worker.exited():
    try:
      future.result(timeout=0.5)
      return True
    except grpc.FutureTimeoutError:
      continue
  future.cancel()
  return False


@dataclasses.dataclass
class _Attempt:
  """One call on a worker thread: its value or error, once done."""
  value: object = None
  error: Optional[BaseException] = None
  done: threading.Event = dataclasses.field(default_factory=threading.Event)


class RemoteRuntime:
  """The rounds on a pool of workers, with a deadline per call and retries on survivors."""

  def __init__(self, pool: WorkerPool, round_timeout: float = 0.0, log: Log = print):
    self.pool = pool
    self.live: List[Worker] = list(pool.workers)
    self.round_timeout = round_timeout
    self.log = log
    self.faults: List[Dict] = []
    self._channels: List[grpc.Channel] = []
    self._context = None
    self._seconds: Dict[int, float] = {}  # id(computation) -> slowest call on these contexts
    iterative_process.quiet_secure_sum_asserts()
    unreachable = self._connect()
    if unreachable:
      self._close_channels()
      raise NoWorkersLeft("TFF worker(s) not reachable within "
                          f"{CONNECT_SECONDS:g} s: {_names(unreachable)}")

  def _connect(self) -> List[Worker]:
    """(Re)builds the contexts on the live workers; returns those it could not reach."""
    self._close_channels()
    contexts, unreachable = [], []
    for worker in self.live:
      channel = grpc.insecure_channel(worker.address, CHANNEL_OPTIONS)
      if not _ready(worker, channel):
        channel.close()
        unreachable.append(worker)
        continue
      self._channels.append(channel)
      contexts.append(_worker_context(_WorkerStub(channel, worker.address)))
    if contexts:
      self._context = tff.framework.MergeableCompExecutionContext(
          contexts, compiler_fn=_mergeable_form)
    self._seconds.clear()  # a new context compiles every computation again
    return unreachable

  def _close_channels(self) -> None:
    # Closing cancels what is still in flight there (an abandoned attempt's calls).
    for channel in self._channels:
      channel.close()
    self._channels = []

  def deadline(self, fn: Callable) -> float:
    """Seconds a call of `fn` may take; the first call on these contexts compiles it, so
    a given round timeout applies from the second on."""
    slowest = self._seconds.get(id(fn))
    if slowest is None:
      return max(FIRST_CALL_DEADLINE_SECONDS, self.round_timeout)
    if self.round_timeout:
      return self.round_timeout
    return max(MIN_DEADLINE_SECONDS, DEADLINE_FACTOR * slowest)

  def call(self, fn: Callable, *args, algorithm: str = "", round_index: int = 0):
    """fn(*args) on the live workers; retried on the survivors when workers are lost."""
    same_workers_retries = 0
    while True:
      exited = [w for w in self.live if w.exited()]
      if exited:  # between calls (while the model was scored, say)
        self._drop(exited, "exited", algorithm, round_index)
        continue
      started = time.time()
      limit = self.deadline(fn)
      attempt = self._attempt(fn, args, limit)
      if attempt.done.is_set() and attempt.error is None:
        self._seconds[id(fn)] = max(self._seconds.get(id(fn), 0.0), time.time() - started)
        return attempt.value
      error = attempt.error if attempt.done.is_set() else RoundTimeout(
          f"{algorithm} round {round_index}: no result within {limit:g} s")
      lost = self._lost_workers()
      if lost:
        cause = ("exited" if all(w.exited() for w in lost)
                 else "timed out" if isinstance(error, RoundTimeout) else "lost")
        self._drop(lost, cause, algorithm, round_index)
      elif isinstance(error, WorkerLost) and same_workers_retries < 2:
        # The worker that dropped the call answers again (restarted under its address):
        # its executors are gone, so the round runs again on the same workers.
        same_workers_retries += 1
        self.log(f"[{algorithm}] round {round_index}: {error}; it answers again, "
                 "retrying the round")
        self._drop(self._connect(), "unreachable", algorithm, round_index)
      else:
        raise error

  def _attempt(self, fn: Callable, args, limit: float) -> _Attempt:
    """Runs fn on a daemon thread; returns when it ends, a worker started here exits, or
    the deadline passes (the thread is then abandoned; closing the channels ends it)."""
    attempt = _Attempt()
    context = self._context

    def target():
      try:
        # TFF's context stack is per thread: this one starts with no context.
        with tff.framework.get_context_stack().install(context):
          attempt.value = fn(*args)
      except BaseException as e:  # pylint: disable=broad-except
        attempt.error = e
      finally:
        attempt.done.set()
    threading.Thread(target=target, daemon=True, name="tff-round").start()
    deadline = time.time() + limit
    while not attempt.done.wait(0.2):
      if time.time() > deadline or any(w.exited() for w in self.live):
        break
    return attempt

  def _lost_workers(self) -> List[Worker]:
    """The live workers that are gone: exited here, or not answering a probe (looked
    for only once a call failed or timed out)."""
    return [w for w in self.live if w.exited() or not answers(w.address)]

  def _drop(self, lost: List[Worker], cause: str, algorithm: str, round_index: int) -> None:
    """Records the lost workers and rebuilds the contexts on the others (dropping, in
    turn, any of those it cannot reach); raises NoWorkersLeft when none is left."""
    while lost:
      for worker in lost:
        self.live.remove(worker)
      remaining = len(self.live)
      retried = f"{remaining} remaining worker{'s' if remaining != 1 else ''}"
      for worker in lost:
        self.faults.append({
            "algorithm": algorithm, "round": round_index, "worker": worker.address,
            "pid": worker.pid, "cause": cause,
            "action": f"round retried on {retried}" if remaining else "run stopped"})
      if not remaining:
        self._close_channels()
        raise NoWorkersLeft(f"{algorithm} round {round_index}: every TFF worker is gone "
                            f"(last: {_names(lost)}, {cause}); nothing was written")
      self.log(f"[{algorithm}] round {round_index}: worker {_names(lost)} {cause}; "
               f"retrying the round on {retried}")
      lost, cause = self._connect(), "unreachable"

  def record(self) -> Dict:
    return {"place": ("TFF workers started by this run" if self.pool.started_here()
                      else "running TFF workers"),
            "workers": self.pool.addresses,
            "live_at_end": [w.address for w in self.live],
            "round_timeout": self.round_timeout or "automatic",
            "faults": self.faults}

  def close(self) -> None:
    self._close_channels()
