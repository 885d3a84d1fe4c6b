"""Seconds per federated round against the number of sites and of TFF workers, one run.

  .venv-federated/bin/python -m federated.child_session -- \
      .venv-federated/bin/python benchmarks/federated_workers.py [--out DIR] [--rounds R]
      [--sites 8,50,200] [--patients-per-site 250] [--algorithms fedavg,dp_fedavg,dopamine]

For each number of sites K it simulates an `icu` table of K x 250 patients (seed 0, K
hospitals of uneven size) and runs each algorithm for a few rounds (default config but
the rounds) in three places: TFF's single local process (the default), `--workers 1`
and `--workers 2` (federated/execution.py's RemoteRuntime on worker processes started
here). It reports the median seconds per round (the first round, which compiles, is
the outlier the median leaves out), fits seconds = a + b x K per algorithm and place,
prints Markdown tables and writes DIR/benchmark.json. One process runs everything, so
TensorFlow starts once.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from clinical_dp.simulators import simulate, write_simulated  # noqa: E402
from federated.child_session import kill_own_workers  # noqa: E402
from federated.config import FederatedConfig  # noqa: E402
from federated.workers import WorkerPool  # noqa: E402

PLACES = ("1 process (default)", "--workers 1", "--workers 2")
PATIENTS_PER_SITE = 250


def _federation(sites: int, patients_per_site: int, directory: str):
  from federated import site_data as data_lib  # pylint: disable=import-outside-toplevel
  frame, spec = simulate("icu", patients=sites * patients_per_site, sites=sites, seed=0)
  path = os.path.join(directory, f"icu-{sites}")
  write_simulated(path, frame, spec)
  spec = data_lib.read_spec(path=os.path.join(path, "spec.yaml"))
  return data_lib.load_csv(os.path.join(path, "data.csv"), spec)


def _runtime(place: str, pools):
  from federated import execution  # pylint: disable=import-outside-toplevel
  if place == PLACES[0]:
    return execution.LocalRuntime()
  workers = int(place.split()[-1])
  return execution.RemoteRuntime(pools[workers], log=lambda line: None)


def _fit(sites, seconds):
  """seconds = a + b x sites, least squares."""
  b, a = np.polyfit(np.asarray(sites, float), np.asarray(seconds, float), 1)
  return float(a), float(b)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "outputs", "benchmarks",
                                                    "federated_workers"))
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--sites", default="8,50,200")
  parser.add_argument("--patients-per-site", type=int, default=PATIENTS_PER_SITE)
  parser.add_argument("--algorithms", default="fedavg,dp_fedavg,dopamine")
  args = parser.parse_args()
  site_counts = [int(s) for s in args.sites.split(",")]
  names = args.algorithms.split(",")
  os.makedirs(args.out, exist_ok=True)
  # Workers first, before TensorFlow starts its threads (federated/simulate.py does too).
  pools = {1: WorkerPool.start(1), 2: WorkerPool.start(2)}
  from federated import algorithms  # pylint: disable=import-outside-toplevel
  rows = []
  started = time.time()
  try:
    with tempfile.TemporaryDirectory() as scratch:
      for sites in site_counts:
        data = _federation(sites, args.patients_per_site, scratch)
        train = data.pooled("train")
        # delta below 1 / training patients, as federated.simulate requires.
        config = FederatedConfig(rounds=args.rounds, eval_every=args.rounds,
                                 delta=min(1e-5, 0.1 / train.num_patients))
        for place in PLACES:
          runtime = _runtime(place, pools)
          for name in names:
            t = time.time()
            result = algorithms.run(name, data, config, lambda line: None, runtime)
            rows.append({"sites": sites, "patients": int(sum(
                data.splits[s][site].num_patients for s in data.splits for site in data.sites)),
                         "training_rows": train.rows, "algorithm": name, "place": place,
                         "median_seconds_per_round": result.round_seconds_median,
                         "mean_seconds_per_round": result.round_seconds,
                         "wall_seconds": time.time() - t, "rounds": result.rounds,
                         "worker_faults": len(result.worker_faults)})
            print(f"  {sites} sites, {name}, {place}: median "
                  f"{result.round_seconds_median:.3f} s/round, {time.time() - t:.1f} s in all",
                  flush=True)
          runtime.close()
  finally:
    for pool in pools.values():
      pool.close()
    kill_own_workers()  # TFF's own local worker (the default place)
  fits = {f"{name} | {place}": _fit(*zip(*[(r["sites"], r["median_seconds_per_round"])
                                           for r in rows
                                           if r["algorithm"] == name and r["place"] == place]))
          for name in names for place in PLACES}
  _print(rows, fits, site_counts, names, args, time.time() - started)
  with open(os.path.join(args.out, "benchmark.json"), "w", encoding="utf-8") as f:
    json.dump({"rows": rows, "fits_seconds_a_plus_b_sites": fits, "rounds": args.rounds,
               "patients_per_site": args.patients_per_site, "cpus": os.cpu_count()}, f,
              indent=2)


def _print(rows, fits, site_counts, names, args, seconds):
  print(f"\nMedian seconds per round ({args.rounds} rounds, default config, "
        f"{args.patients_per_site} patients per site, icu seed 0, {os.cpu_count()} CPUs; "
        f"one run, {seconds:.0f} s in all)\n")
  print("| sites | patients | algorithm | " + " | ".join(PLACES) + " |")
  print("|---|---|---|" + "---|" * len(PLACES))
  for sites in site_counts:
    for name in names:
      cells = {r["place"]: r for r in rows if r["sites"] == sites and r["algorithm"] == name}
      patients = next(iter(cells.values()))["patients"]
      print(f"| {sites} | {patients} | {name} | " + " | ".join(
          f"{cells[p]['median_seconds_per_round']:.3f}" for p in PLACES) + " |")
  print("\nGrowth with the number of sites K (least squares, seconds per round = a + b K):\n")
  print("| algorithm | " + " | ".join(PLACES) + " |")
  print("|---|" + "---|" * len(PLACES))
  for name in names:
    print(f"| {name} | " + " | ".join(
        "a {:.3f} s, b {:.2f} ms/site".format(*(lambda ab: (ab[0], 1000 * ab[1]))(
            fits[f"{name} | {p}"])) for p in PLACES) + " |")


if __name__ == "__main__":
  main()
