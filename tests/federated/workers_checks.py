"""Workers checks that need TFF; run as a child by test_workers.py.

Prints one JSON line: every federated algorithm on a tiny federation of 5 sites, in
TFF's single local process and on 2 worker processes (started here, then used by
address as --worker-address does), with the largest difference of the final weights;
and fedavg again on the 2 workers with one of them stopped mid-run.
"""

import json
import os
import signal
import sys

import numpy as np

from federated import algorithms, execution
from federated.child_session import kill_own_workers
from federated.config import FederatedConfig
from federated.workers import WorkerPool
from tests.federated.dp_fedavg_checks import _federation, _flat

FEDERATED = ("fedavg", "local_dp", "dp_fedavg", "dopamine", "cyclical")


class _StopsAWorker(execution.RemoteRuntime):
  """Stops (SIGSTOP) a worker as round `at_round` starts: it still accepts connections
  but answers nothing, the case only the deadline and the probe catch."""

  def __init__(self, pool, stop_pid, at_round, **kwargs):
    super().__init__(pool, **kwargs)
    self.stop_pid, self.at_round = stop_pid, at_round

  def call(self, fn, *args, algorithm="", round_index=0):
    if round_index == self.at_round and self.stop_pid:
      os.kill(self.stop_pid, signal.SIGSTOP)
      self.stop_pid = None
    return super().call(fn, *args, algorithm=algorithm, round_index=round_index)


def _hung_worker_check(data, config, expected, pool):
  """fedavg on 2 workers used by address (no process to poll), one stopped at round 2
  under a 4 s round timeout: the round is retried on the other, same figures."""
  stopped = pool.workers[0]
  runtime = _StopsAWorker(WorkerPool.connect(pool.addresses), stopped.pid, 2,
                          round_timeout=4.0, log=lambda line: None)
  try:
    result = algorithms.run("fedavg", data, config, lambda line: None, runtime)
  finally:
    runtime.close()
    os.kill(stopped.pid, signal.SIGKILL)  # a stopped process ignores SIGTERM until resumed
  return {"max_difference": float(np.max(np.abs(_flat(expected.weights)
                                               - _flat(result.weights)))),
          "faults": result.worker_faults, "stopped": stopped.address}


def main() -> None:
  data = _federation(clients=5)
  # dp_fedavg at epsilon 2000: little noise, so adaptive clipping (the more stateful
  # aggregator) runs; the others at epsilon 5.
  configs = {name: FederatedConfig.fast(algorithm=name, rounds=3, eval_every=3, seed=5,
                                        target_epsilon=2000.0 if name == "dp_fedavg" else 5.0)
             for name in FEDERATED}
  quiet = lambda line: None  # noqa: E731
  one = {name: algorithms.run(name, data, configs[name], quiet) for name in FEDERATED}
  pool = WorkerPool.start(2)
  try:
    runtime = execution.RemoteRuntime(WorkerPool.connect(pool.addresses), log=quiet)
    two = {name: algorithms.run(name, data, configs[name], quiet, runtime) for name in FEDERATED}
    runtime.close()
    hung = _hung_worker_check(data, configs["fedavg"], one["fedavg"], pool)
  finally:
    pool.close()
  out = {name: {"max_difference": float(np.max(np.abs(_flat(one[name].weights)
                                                     - _flat(two[name].weights)))),
                "auroc_difference": float(np.max(np.abs(np.subtract(
                    one[name].auroc_per_round, two[name].auroc_per_round)))),
                "same_privacy": one[name].privacy == two[name].privacy,
                "clipping": one[name].details.get("clipping"),
                "faults": two[name].worker_faults}
         for name in FEDERATED}
  out["pids"] = [w.pid for w in pool.workers]
  out["hung"] = hung
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  try:
    main()
  finally:
    kill_own_workers()  # TFF's own local worker, as federated.simulate does
  sys.exit(0)
