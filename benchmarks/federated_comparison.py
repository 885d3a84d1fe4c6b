"""All seven federated algorithms on the default ICU simulation (K = 8 sites), one run.

  .venv-federated/bin/python benchmarks/federated_comparison.py [--out DIR] [--rounds R]
      [--sweep-epsilons 3,10,30,100]

Simulates the default `icu` table (20000 patients, 8 hospitals, seed 0), runs
`python -m federated.simulate --algorithm all` at epsilon 3, delta 1e-5 in a child
session, then (optionally) dp_fedavg alone at larger epsilons, to show what its
client-level guarantee needs with only 8 sites. Prints a Markdown table of what was
measured, with the issue's target (dopamine and dp_fedavg within 0.02 AUROC of
centralized at epsilon <= 3) checked, and writes DIR/benchmark.json.
"""

import argparse
import json
import os
import sys
import time

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)

from clinical_dp.simulators import simulate, write_simulated  # noqa: E402
from federated.child_session import run_in_own_session, worker_binaries  # noqa: E402
from federated.config import RESULTS_FILE  # noqa: E402

PYTHON = os.path.join(PROJECT_ROOT, ".venv-federated", "bin", "python")


def _simulate(output, extra):
  started = time.time()
  completed = run_in_own_session(
      [PYTHON, "-m", "federated.simulate", "--data", os.path.join(output, "data", "data.csv"),
       "--spec", os.path.join(output, "data", "spec.yaml"), *extra],
      on_line=print, cwd=PROJECT_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  if completed.returncode != 0:
    raise SystemExit(f"federated.simulate failed:\n{completed.output}")
  return time.time() - started


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "outputs", "benchmarks",
                                                    "federated"))
  parser.add_argument("--rounds", type=int, default=None, help="default: the config's")
  parser.add_argument("--sweep-epsilons", default="10,30,100",
                      help="dp_fedavg alone at these epsilons ('' to skip)")
  args = parser.parse_args()
  frame, spec = simulate("icu", seed=0)
  write_simulated(os.path.join(args.out, "data"), frame, spec)
  common = ["--target-epsilon", "3", "--delta", "1e-5", "--seed", "0"]
  if args.rounds:
    common += ["--rounds", str(args.rounds)]
  main_dir = os.path.join(args.out, "all")
  wall = _simulate(args.out, ["--algorithm", "all", "--output", main_dir, *common])
  with open(os.path.join(main_dir, RESULTS_FILE), encoding="utf-8") as f:
    results = json.load(f)
  algorithms = results["algorithms"]
  central = algorithms["centralized"]["auroc"]
  rows = ["| algorithm | test AUROC | gap to centralized | test accuracy | epsilon | delta | "
          "unit | rounds | wall s | s / round |", "|---|---|---|---|---|---|---|---|---|---|"]
  for name, r in algorithms.items():
    eps = "not private" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
    rows.append(f"| {name} | {r['auroc']:.4f} | {central - r['auroc']:+.4f} | "
                f"{r['accuracy']:.4f} | {eps} | {r['delta'] or '-'} | {r['privacy_unit']} | "
                f"{r['rounds']} | {r['wall_seconds']:.1f} | {r['seconds_per_round']:.3f} |")
  target = {name: bool(central - algorithms[name]["auroc"] <= 0.02
                       and algorithms[name]["epsilon"] <= 3.0)
            for name in ("dopamine", "dp_fedavg")}
  sweep = []
  for eps in [e for e in args.sweep_epsilons.split(",") if e]:
    out = os.path.join(args.out, f"dp_fedavg_eps{eps}")
    _simulate(args.out, ["--algorithm", "dp_fedavg", "--output", out,
                         *[v if v != "3" else eps for v in common]])
    with open(os.path.join(out, RESULTS_FILE), encoding="utf-8") as f:
      r = json.load(f)["algorithms"]["dp_fedavg"]
    sweep.append({"target_epsilon": float(eps), "epsilon": r["epsilon"], "auroc": r["auroc"],
                  "noise_multiplier": r["details"]["noise_multiplier"]})
  summary = {"table": rows, "target_within_0.02_at_eps3": target, "centralized_auroc": central,
             "comparison_wall_seconds": round(wall, 1),
             "simulate_total_wall_seconds": results["total_wall_seconds"],
             "dp_fedavg_sweep": sweep, "workers_left": worker_binaries()}
  with open(os.path.join(args.out, "benchmark.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  print("\n".join(rows))
  print(f"target (within 0.02 AUROC of centralized at epsilon <= 3): {target}")
  print(f"whole comparison: {wall:.1f} s wall (simulate's own total "
        f"{results['total_wall_seconds']:.1f} s)")
  for point in sweep:
    print(f"dp_fedavg at epsilon {point['epsilon']:.3g}: AUROC {point['auroc']:.4f} "
          f"(noise multiplier {point['noise_multiplier']:.2f})")


if __name__ == "__main__":
  main()
