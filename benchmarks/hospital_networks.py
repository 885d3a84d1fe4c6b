"""Which federated algorithm suits which hospital network: test AUROC against the number of sites.

  .venv-federated/bin/python -m federated.child_session -- \
      .venv-federated/bin/python benchmarks/hospital_networks.py [--out DIR]
      [--networks 8:20000,50:50000,200:200000] [--seed 5] [--rounds R]

For each network K:N it simulates an `icu` table of N patients in K hospitals (uneven
sizes, non-IID, as `clinical-dp simulate --kind icu --sites K --patients N`; the last one is
eICU's size: about 200 000 stays in 208 hospitals) and runs `centralized`, `dopamine`
(patient-level DP, secure sum) and `dp_fedavg` (client-level DP) with the default config
at epsilon 3, delta 1e-6 (below 1 / training patients on every table), the same seed for
table and run. Prints a Markdown table of test AUROC and the gap to centralized with
issue 14's targets at the largest network (dp_fedavg within 0.01, dopamine within 0.005)
and writes DIR/benchmark.json. One process runs everything, so TensorFlow starts once.
"""

import argparse
import json
import os
import sys
import time

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from clinical_dp.simulators import simulate, write_simulated  # noqa: E402
from federated.child_session import kill_own_workers  # noqa: E402
from federated.config import FederatedConfig  # noqa: E402

ALGORITHMS = ("centralized", "dopamine", "dp_fedavg")
TARGET_GAP = {"dopamine": 0.005, "dp_fedavg": 0.01}


def _federation(sites: int, patients: int, seed: int, directory: str):
  from federated import site_data as data_lib  # pylint: disable=import-outside-toplevel
  frame, spec = simulate("icu", patients=patients, sites=sites, seed=seed)
  path = os.path.join(directory, f"icu-{sites}")
  write_simulated(path, frame, spec)
  spec = data_lib.read_spec(path=os.path.join(path, "spec.yaml"))
  return data_lib.load_csv(os.path.join(path, "data.csv"), spec)


def _network(sites: int, patients: int, args) -> dict:
  from federated import algorithms  # pylint: disable=import-outside-toplevel
  data = _federation(sites, patients, args.seed, args.out)
  point = {"sites": sites, "patients": patients,
           "train_patients": data.pooled("train").num_patients,
           "smallest_site_train_patients": min(data.splits["train"][s].num_patients
                                               for s in data.sites)}
  for name in ALGORITHMS:
    overrides = dict(algorithm=name, target_epsilon=3.0, delta=1e-6, seed=args.seed)
    if args.rounds:
      overrides["rounds"] = args.rounds
    config = FederatedConfig(**overrides)
    started = time.time()
    result = algorithms.run(name, data, config, log=lambda line: None)
    test = algorithms.evaluate(result.weights, data.pooled("test"))
    point[name] = {"auroc": test["auroc"], "epsilon": result.privacy["epsilon"],
                   "unit": result.privacy["unit"], "rounds": result.rounds,
                   "wall_seconds": round(time.time() - started, 1),
                   "seconds_per_round": round(result.round_seconds, 4)}
    print(f"K={sites}: {name} test AUROC {test['auroc']:.4f} in "
          f"{point[name]['wall_seconds']} s", flush=True)
  for name in ALGORITHMS[1:]:
    point[name]["gap"] = round(point["centralized"]["auroc"] - point[name]["auroc"], 4)
  return point


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "outputs", "benchmarks",
                                                    "hospital_networks"))
  parser.add_argument("--networks", default="8:20000,50:50000,200:200000",
                      help="comma-separated SITES:PATIENTS")
  parser.add_argument("--seed", type=int, default=5, help="table and run seed")
  parser.add_argument("--rounds", type=int, default=None, help="default: the config's")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  started = time.time()
  try:
    points = [_network(*map(int, network.split(":")), args)
              for network in args.networks.split(",")]
  finally:
    kill_own_workers()
  rows = ["| hospitals K | patients (train) | smallest site (train) | centralized | "
          "dopamine (gap) | dp_fedavg (gap) | s / round dopamine, dp_fedavg |",
          "|---|---|---|---|---|---|---|"]
  for p in points:
    rows.append(
        f"| {p['sites']} | {p['patients']} ({p['train_patients']}) | "
        f"{p['smallest_site_train_patients']} | {p['centralized']['auroc']:.4f} | "
        f"{p['dopamine']['auroc']:.4f} ({p['dopamine']['gap']:+.4f}) | "
        f"{p['dp_fedavg']['auroc']:.4f} ({p['dp_fedavg']['gap']:+.4f}) | "
        f"{p['dopamine']['seconds_per_round']:.2f}, {p['dp_fedavg']['seconds_per_round']:.2f} |")
  largest = points[-1]
  targets = {name: bool(largest[name]["gap"] <= gap) for name, gap in TARGET_GAP.items()}
  summary = {"seed": args.seed, "epsilon": 3.0, "delta": 1e-6, "points": points,
             "table": rows, "targets_at_largest": targets,
             "config": {k: v for k, v in vars(FederatedConfig()).items()
                        if k not in ("algorithm", "target_epsilon", "delta", "seed")},
             "wall_seconds": round(time.time() - started, 1)}
  with open(os.path.join(args.out, "benchmark.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  print("\n".join(rows))
  print(f"targets at K={largest['sites']} (dopamine within 0.005, dp_fedavg within 0.01 of "
        f"centralized, epsilon 3 at delta 1e-6): {targets}")
  print(f"whole benchmark: {summary['wall_seconds']} s")


if __name__ == "__main__":
  main()
