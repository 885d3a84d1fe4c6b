"""Simulates multi-site DP federated learning and compares the algorithms.

  python -m federated.simulate (--data CSV | --examples DIR | --prepared CSV --split-buckets B)
      (--spec YAML | --spec-yaml TEXT)
      --output DIR [--algorithm NAME|all] [--rounds R] [--clients-per-round C]
      [--target-epsilon E] [--delta D] [--seed S] [--dropout-rate P] [...]
      [--workers N | --worker-address HOST:PORT ...] [--round-timeout S]

Run with the federated runtime (.venv-federated). Writes DIR/federated.json,
DIR/federated.html and DIR/models/<algorithm>/ (SavedModel + privacy_record.json,
DP algorithms only) only when the whole run succeeds; bad input exits 2 with one
line naming the file, column or rule, and writes nothing.

By default the TFF rounds run in one local TFF process. `--workers N` starts N TFF
workers on loopback and spreads each round's sites over them; `--worker-address`
(repeatable) uses running ones. A worker lost mid-run is dropped and its round retried
on the others (federated.json: `worker_faults` per algorithm, `runtime`); with none
left the run fails (exit 1) and writes nothing. Workers started here end with the run,
whatever ends it; SIGTERM exits 143, Ctrl-C 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import List, Optional

from clinical_dp import memory, secret_seed
from clinical_dp.names import SIGNATURE_INPUTS_FILE, ColumnKeys
from federated.child_session import sigterm_as_exit
from federated.config import (ALGORITHMS, DP_ALGORITHMS, RESULTS_FILE, FederatedConfig, flag,
                              parse_buckets)
from federated.workers import (NoWorkersLeft, WorkerPool, WorkersConfig, add_worker_flags,
                               workers_config)

PROG = "federated.simulate"


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
  data = parser.add_mutually_exclusive_group(required=True)
  data.add_argument("--data", help="CSV table described by the spec")
  data.add_argument("--examples", help="pipeline Examples directory (Split-train/eval/test)")
  data.add_argument("--prepared", help="the pipeline's prepared input CSV (feature keys, label "
                    "1 / 0), split as CsvExampleGen splits it with --split-buckets")
  parser.add_argument("--split-buckets", help="with --prepared: ExampleGen's hash buckets, "
                      "e.g. train=8,eval=1,test=1")
  spec = parser.add_mutually_exclusive_group(required=True)
  spec.add_argument("--spec", help="dataset spec YAML file")
  spec.add_argument("--spec-yaml", help="the dataset spec's YAML text")
  parser.add_argument("--output", required=True, help="output directory")
  defaults = FederatedConfig()
  for field in dataclasses.fields(FederatedConfig):
    default = getattr(defaults, field.name)
    kwargs = dict(type=type(default), default=default, help=f"default {default}")
    if field.name == "seed":
      kwargs.update(type=int, help="seed of every draw, DP noise included: for reproducing "
                    "a run (tests, benchmarks); default: a secret one drawn per run")
    if field.name == "algorithm":
      kwargs["choices"] = list(ALGORITHMS) + ["all"]
    parser.add_argument(flag(field.name), **kwargs)
  add_worker_flags(parser)
  return parser


class UsageError(ValueError):
  """Bad input: reported in one line, exit status 2."""


def _config(args) -> FederatedConfig:
  values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FederatedConfig)}
  try:
    return FederatedConfig(**values)
  except ValueError as e:
    raise UsageError(f"bad setting: {e}") from e


def _workers(args) -> WorkersConfig:
  try:
    return workers_config(args)
  except ValueError as e:
    raise UsageError(str(e)) from e


def _runtime(workers: WorkersConfig, log):
  """Where the TFF rounds run, and the pool to close at the end (None: TFF's own process).

  Workers are started before TensorFlow is imported: forking a process that already
  runs gRPC's threads is what gRPC warns against."""
  if not workers.remote:
    from federated.execution import LocalRuntime  # pylint: disable=import-outside-toplevel
    return LocalRuntime(), None
  pool = (WorkerPool.start(workers.workers) if workers.workers
          else WorkerPool.connect(workers.addresses))
  try:
    verb = "started" if workers.workers else "using"
    log(f"{PROG}: {verb} {len(pool.workers)} TFF worker(s): "
        + ", ".join(w.describe() for w in pool.workers))
    from federated.execution import RemoteRuntime  # pylint: disable=import-outside-toplevel
    return RemoteRuntime(pool, workers.round_timeout, log), pool
  except BaseException:
    pool.close()
    raise


def _buckets(text: Optional[str]):
  if not text:
    raise UsageError("--prepared needs --split-buckets (e.g. train=8,eval=1,test=1)")
  try:
    return parse_buckets(text)
  except ValueError as e:
    raise UsageError(str(e)) from e


def _load(args, config: FederatedConfig):
  from federated import site_data as data_lib  # pylint: disable=import-outside-toplevel
  try:
    spec = data_lib.read_spec(path=args.spec, text=args.spec_yaml)
    if args.split_buckets and not args.prepared:
      raise UsageError("--split-buckets goes with --prepared only")
    if args.prepared:
      data = data_lib.load_prepared(args.prepared, spec, _buckets(args.split_buckets))
    elif args.data:
      data = data_lib.load_csv(args.data, spec)
    else:
      data = data_lib.load_examples(args.examples, spec)
  except data_lib.DataError as e:
    raise UsageError(str(e)) from e
  per_round = config.clients_per_round or len(data.sites)
  if per_round > len(data.sites):
    raise UsageError(f"--clients-per-round {per_round} exceeds the {len(data.sites)} sites in "
                     f"column '{spec.site_column}'")
  if config.delta >= 1.0 / data.pooled("train").num_patients:
    raise UsageError(f"--delta {config.delta:g} is not below 1 / (training patients "
                     f"{data.pooled('train').num_patients}); lower it")
  return spec, data


def _algorithm_entry(result, data) -> dict:
  from federated import algorithms  # pylint: disable=import-outside-toplevel
  test = data.pooled("test")
  pooled = algorithms.evaluate(result.weights, test)
  privacy = result.privacy
  return {
      "auroc": pooled["auroc"], "accuracy": pooled["accuracy"], "n": pooled["n"],
      "per_site": {s: algorithms.evaluate(result.weights, data.splits["test"][s])
                   for s in data.sites},
      "epsilon": privacy["epsilon"], "delta": privacy["delta"],
      "privacy_unit": privacy["unit"], "accountant": privacy["accountant"],
      "rounds": result.rounds, "rounds_planned": result.rounds_planned,
      "wall_seconds": round(result.wall_seconds, 2),
      "seconds_per_round": round(result.round_seconds, 4),
      "median_seconds_per_round": round(result.round_seconds_median, 4),
      "auroc_per_round": result.auroc_per_round, "eval_rounds": result.eval_rounds,
      "privacy": privacy, "details": result.details, "worker_faults": result.worker_faults,
      "model": f"models/{result.algorithm}" if result.algorithm in DP_ALGORITHMS else None,
  }


def _write_model(result, entry, data, spec, config, directory: str) -> None:
  from federated import model_steps as model_lib  # pylint: disable=import-outside-toplevel
  from federated import results_report  # pylint: disable=import-outside-toplevel
  path = os.path.join(directory, "models", result.algorithm)
  keys = ColumnKeys.for_spec(spec)
  internal = keys.internal_spec(spec)
  model_lib.export(result.weights, data.feature_names, path, internal)
  inputs = keys.signature_inputs(internal.feature_columns)
  with open(os.path.join(path, SIGNATURE_INPUTS_FILE), "w", encoding="utf-8") as f:
    json.dump({"predict_raw": inputs}, f, indent=2, ensure_ascii=False)
  record = dict(entry["privacy"], algorithm=result.algorithm, rounds=result.rounds,
                selection="none: the last round's model is released; the eval split is only "
                "plotted and the test split only scored",
                features=list(data.feature_names),
                inputs="signature predict_raw: one tensor per raw column in clinical units "
                f"(categories as strings), keyed as {SIGNATURE_INPUTS_FILE} says (column: key); "
                "serving_default / predict_features: the features "
                "scaled to [0, 1] by the spec's bounds, categories one-hot over the spec's "
                "values (federated/site_data.py encode)",
                randomness=secret_seed.describe(config.seed),
                config=dataclasses.asdict(config))
  with open(os.path.join(path, "privacy_record.json"), "w", encoding="utf-8") as f:
    f.write(results_report.dumps(record))


def _publish(staging: str, output: str) -> None:
  """Moves the finished outputs into place; federated.json goes last."""
  os.makedirs(output, exist_ok=True)
  for name in ("models", "federated.html"):
    source, target = os.path.join(staging, name), os.path.join(output, name)
    if not os.path.exists(source):
      continue
    if os.path.isdir(target):
      shutil.rmtree(target)
    os.replace(source, target)
  os.replace(os.path.join(staging, RESULTS_FILE), os.path.join(output, RESULTS_FILE))


def run(args) -> int:
  config = _config(args)
  workers = _workers(args)
  if os.path.exists(args.output) and not os.path.isdir(args.output):
    raise UsageError(f"{args.output}: --output exists and is not a directory")
  spec, data = _load(args, config)
  memory.return_free_memory()  # the table's cells and validation, now garbage
  log = lambda line: print(line, flush=True)  # noqa: E731
  log(f"{PROG}: {len(data.sites)} sites, {data.pooled('train').rows} training rows "
      f"({data.pooled('train').num_patients} patients), algorithms {list(config.algorithms)}")
  runtime, pool = _runtime(workers, log)
  try:
    return _run(args, config, spec, data, runtime, log)
  finally:
    runtime.close()
    if pool is not None:
      pool.close()


def _run(args, config: FederatedConfig, spec, data, runtime, log) -> int:
  from federated import algorithms, results_report  # pylint: disable=import-outside-toplevel
  parent = os.path.dirname(os.path.abspath(args.output))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".federated-partial-", dir=parent)
  try:
    started = time.time()
    entries = {}
    # One seed for every algorithm, so that all see the same site schedule; the records
    # keep `config`, whose seed is null when this one is secret.
    seeded = config.seeded()
    for name in config.algorithms:
      log(f"[{name}] starting")
      result = algorithms.run(name, data, seeded, log, runtime)
      entries[name] = _algorithm_entry(result, data)
      if name in DP_ALGORITHMS:
        _write_model(result, entries[name], data, spec, config, staging)
      e = entries[name]
      auroc = "n/a (one class in the test split)" if e["auroc"] is None else f"{e['auroc']:.4f}"
      log(f"[{name}] done: test AUROC {auroc}, accuracy {e['accuracy']:.4f}, "
          f"epsilon {e['epsilon']:.3g} ({e['privacy_unit']}), {e['rounds']} rounds, "
          f"{e['wall_seconds']:.1f} s" + (f"; worker faults in round(s) "
          f"{sorted({f['round'] for f in e['worker_faults']})}, retried"
                                         if e["worker_faults"] else ""))
    centralized = entries.get("centralized", {}).get("auroc")
    if centralized is not None:
      for entry in entries.values():
        if entry["auroc"] is not None:
          entry["auroc_gap_to_centralized"] = round(centralized - entry["auroc"], 4)
    results = {
        "config": dataclasses.asdict(config), "sites": list(data.sites),
        "dataset": data.summary(), "algorithms": entries, "runtime": runtime.record(),
        "total_wall_seconds": round(time.time() - started, 2),
        "notes": "test metrics on the held-out patient split; auroc_per_round on the eval "
                 "split at eval_rounds; no model or round is selected on real data",
    }
    with open(os.path.join(staging, "federated.html"), "w", encoding="utf-8") as f:
      f.write(results_report.render_html(json.loads(results_report.dumps(results))))
    with open(os.path.join(staging, RESULTS_FILE), "w", encoding="utf-8") as f:
      f.write(results_report.dumps(results))
    _publish(staging, args.output)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  log(f"{PROG}: wrote {os.path.join(args.output, RESULTS_FILE)} in "
      f"{time.time() - started:.1f} s")
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  # Beside the pipeline's chain (components/early_start.py) this child's resident memory
  # adds to ExampleGen's, the run's peak at a million patients: TensorFlow's threads each
  # taking a malloc arena kept freed memory resident (clinical_dp/memory.py).
  memory.limit_malloc_arenas()
  args = _parser().parse_args(argv)
  try:
    # SIGTERM (Kubernetes, service managers) as SystemExit(143), so the `finally`
    # blocks run: staging removed, workers ended.
    with sigterm_as_exit():
      return run(args)
  except UsageError as e:
    print(f"{PROG}: {e}", file=sys.stderr)
    return 2
  except NoWorkersLeft as e:
    print(f"{PROG}: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"{PROG}: interrupted (Ctrl-C)", file=sys.stderr)
    return 130
  except SystemExit as e:
    if e.code == 128 + signal.SIGTERM:
      print(f"{PROG}: stopped by SIGTERM", file=sys.stderr)
    raise
  finally:
    # TFF's workers would outlive this process and hold its stdout and stderr.
    from federated.child_session import kill_own_workers  # pylint: disable=import-outside-toplevel
    kill_own_workers()


if __name__ == "__main__":
  sys.exit(main())
