"""What client-level DP-FedAvg needs: its settings on 8 hospitals, then more hospitals.

  .venv-federated/bin/python benchmarks/dp_fedavg_limits.py [--out DIR] [--repeats 3]
      [--sites 8,32,128,256] [--no-settings]

`dp_fedavg` protects a whole hospital (add or remove one site's data). With K sites
every round releases the mean of K clipped updates plus Gaussian noise of standard
deviation z x clip / K per coordinate, so across rounds the noise-to-signal ratio is
at best about z_1 x sqrt(d) / K, where z_1 is the noise of one release at the whole
budget (about 1.5 at epsilon 3, delta 1e-5) and d the number of model weights; no
choice of rounds or clip escapes it, and DP mean estimation has a lower bound of the
same order (sqrt(d log(1/delta)) / (epsilon K)). This benchmark measures both sides:

  1. settings, on the default `icu` table (K = 8, epsilon 3, delta 1e-5): model x
     rounds and local steps x update clip x client step size; each setting run
     `--repeats` times (seeds 0, 1, ...: the noise differs by seed), the best chosen by
     median eval AUROC, then reported on the test split;
  2. sites: the `icu` simulation with K hospitals (same 20000 patients, seed 0),
     `centralized` and `dp_fedavg` at their default settings, epsilon 3.

Prints Markdown tables and writes DIR/dp_fedavg_limits.json. Runs in the federated
runtime, in-process; about 25 min on 2 shared cores.
"""

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import time

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from clinical_dp.simulators import simulate, write_simulated  # noqa: E402
from federated import algorithms, site_data as data_lib  # noqa: E402
from federated.child_session import kill_own_workers  # noqa: E402
from federated.config import FederatedConfig  # noqa: E402

EPSILON, DELTA = 3.0, 1e-5
# (rounds, local steps): one release of well-trained local models up to many small ones.
SCHEDULES = ((1, 40), (3, 30), (10, 20), (30, 10), (150, 5))
UPDATE_CLIPS = (0.5, 2.0)
CLIENT_LEARNING_RATES = (0.5, 2.0)


def _icu(out: str, sites: int) -> data_lib.FederatedData:
  directory = os.path.join(out, f"icu_{sites}_sites")
  if not os.path.exists(os.path.join(directory, "data.csv")):
    frame, spec = simulate("icu", sites=sites, seed=0)
    write_simulated(directory, frame, spec)
  spec = data_lib.read_spec(os.path.join(directory, "spec.yaml"))
  return data_lib.load_csv(os.path.join(directory, "data.csv"), spec)


def _run(algorithm: str, data, config: FederatedConfig) -> dict:
  started = time.time()
  result = algorithms.run(algorithm, data, dataclasses.replace(config, algorithm=algorithm),
                          lambda line: None)
  return {"eval": algorithms.evaluate(result.weights, data.pooled("eval"))["auroc"],
          "test": algorithms.evaluate(result.weights, data.pooled("test"))["auroc"],
          "epsilon": result.privacy["epsilon"],
          "noise_multiplier": result.details.get("noise_multiplier"),
          "seconds": time.time() - started}


def _repeated(data, config: FederatedConfig, repeats: int) -> dict:
  runs = [_run("dp_fedavg", data, dataclasses.replace(config, seed=seed))
          for seed in range(repeats)]
  return {"eval_median": statistics.median(r["eval"] for r in runs),
          "test_median": statistics.median(r["test"] for r in runs),
          "test": [r["test"] for r in runs], "epsilon": max(r["epsilon"] for r in runs),
          "noise_multiplier": runs[0]["noise_multiplier"],
          "seconds": sum(r["seconds"] for r in runs)}


def settings_sweep(out: str, repeats: int) -> dict:
  data = _icu(out, 8)
  base = FederatedConfig(target_epsilon=EPSILON, delta=DELTA, site_batch_size=256, seed=0)
  rows = []
  for model, (rounds, steps), clip, lr in itertools.product(
      ("mlp", "logistic"), SCHEDULES, UPDATE_CLIPS, CLIENT_LEARNING_RATES):
    setting = dict(model=model, rounds=rounds, local_steps=steps, update_clip=clip,
                   client_learning_rate=lr)
    measured = _repeated(data, dataclasses.replace(base, eval_every=rounds, **setting), repeats)
    rows.append(dict(setting, **measured))
    print(f"  {setting}: eval AUROC median {measured['eval_median']:.4f}, test "
          + " ".join(f"{v:.4f}" for v in measured["test"]), flush=True)
  centralized = {m: _run("centralized", data, dataclasses.replace(base, model=m))["test"]
                 for m in ("mlp", "logistic")}
  best = max(rows, key=lambda r: r["eval_median"])
  return {"rows": rows, "best": best, "centralized_test": centralized,
          "gap_of_best": centralized[best["model"]] - best["test_median"]}


def sites_sweep(out: str, sites, repeats: int) -> list:
  config = FederatedConfig(target_epsilon=EPSILON, delta=DELTA, seed=0)
  rows = []
  for k in sites:
    data = _icu(out, k)
    centralized = _run("centralized", data, config)["test"]
    measured = _repeated(data, config, repeats)
    smallest = min(data.splits["train"][s].num_patients for s in data.sites)
    rows.append(dict(sites=k, smallest_site_train_patients=smallest, centralized=centralized,
                     gap=centralized - measured["test_median"], **measured))
    print(f"  K={k}: centralized {centralized:.4f}, dp_fedavg median "
          f"{measured['test_median']:.4f} (gap {rows[-1]['gap']:+.4f}), "
          f"{measured['seconds']:.0f} s", flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default=os.path.join(PROJECT_ROOT, "outputs", "benchmarks",
                                                    "dp_fedavg_limits"))
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--sites", default="8,32,128,256")
  parser.add_argument("--no-settings", action="store_true", help="skip the settings sweep")
  args = parser.parse_args()
  summary = {"epsilon": EPSILON, "delta": DELTA, "repeats": args.repeats}
  try:
    if not args.no_settings:
      print("1. dp_fedavg settings on 8 hospitals", flush=True)
      summary["settings"] = settings_sweep(args.out, args.repeats)
    print("2. number of hospitals", flush=True)
    summary["sites"] = sites_sweep(args.out, [int(k) for k in args.sites.split(",") if k],
                                   args.repeats)
  finally:
    kill_own_workers()
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "dp_fedavg_limits.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  if "settings" in summary:
    s = summary["settings"]
    best = s["best"]
    print("\n| model | rounds x local steps | update clip | client lr | median eval AUROC | "
          "median test AUROC |\n|---|---|---|---|---|---|")
    for r in sorted(s["rows"], key=lambda r: -r["eval_median"])[:5]:
      print(f"| {r['model']} | {r['rounds']} x {r['local_steps']} | {r['update_clip']} | "
            f"{r['client_learning_rate']} | {r['eval_median']:.4f} | {r['test_median']:.4f} |")
    print(f"best of {len(s['rows'])} settings (by eval): test AUROC {best['test_median']:.4f}, "
          f"{s['gap_of_best']:+.4f} below centralized ({s['centralized_test'][best['model']]:.4f}"
          f", same model)")
  print("\n| hospitals K | smallest site (train patients) | centralized | dp_fedavg (median) | "
        "gap | noise multiplier | s per dp_fedavg run |\n|---|---|---|---|---|---|---|")
  for r in summary["sites"]:
    print(f"| {r['sites']} | {r['smallest_site_train_patients']} | {r['centralized']:.4f} | "
          f"{r['test_median']:.4f} | {r['gap']:+.4f} | {r['noise_multiplier']:.2f} | "
          f"{r['seconds'] / args.repeats:.0f} |")


if __name__ == "__main__":
  main()
