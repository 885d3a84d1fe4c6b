"""This project's DP generator, the report's DP baselines and peer DP generators (MST,
AIM) on the pipeline's own split, at the same budgets, scored as the pipeline is.

  .venv/bin/python benchmarks/peer_generators.py [--kind sprint] [--epsilons 0.3,1,3]
      [--generators dp_acgan,dp_copula,dp_marginals,mst,aim] [--generator_seeds 0,1]
      [--timeout_minutes 20] [--out FILE]
  .venv/bin/python benchmarks/peer_generators.py --quick   # MST, epsilon 1: about 7 min here

Simulates the default table (`clinical-dp simulate --kind sprint`, seed 0, as `make demo`
does), validates it, and splits it by patient exactly as CsvExampleGen will
(clinical_dp/example_gen_split.py), without running TFX. The DP AC-GAN
(trainers/gan_trainer.py, its defaults) and the DP copula and independent-marginals baselines
(components/evaluation/baselines.py) run in this runtime. Each peer is fitted on the training split
in a runtime of its own (.venv-peers, created here from requirements/peers.lock: the
peers' pins conflict with TFX's) by benchmarks/peer_worker.py, one child process per
generator, epsilon and seed, under `nice` and a time limit; a peer that runs past it
is listed as not finished. Every synthetic table is scored on the real test split by
benchmarks/generator_scores.py (the project's components/evaluation). Prints a
Markdown table (TSTR AUROC as a ratio to trained-on-real, correlation Spearman,
median and largest KS, fit + sample seconds) and, with --out, writes it all as JSON.
Synthetic data only; no user data is involved.
"""

import os
import sys

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)  # this checkout's modules, not an installed copy's

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up lines bury the table
import clinical_dp  # noqa: E402,F401  (selects Keras 2 before TensorFlow)

import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.generator_scores import noise_floor, score_table, summary_row  # noqa: E402
from clinical_dp.names import ColumnKeys, user_labels  # noqa: E402
from clinical_dp.simulators import simulate, write_simulated  # noqa: E402
from clinical_dp.spec import DatasetSpec  # noqa: E402
from clinical_dp.validation import InvalidInputError, prepared_table, validate_table  # noqa: E402
from pipelines.config import SplitConfig  # noqa: E402
from clinical_dp.example_gen_split import example_gen_splits  # noqa: E402

PEERS_VENV = os.path.join(PROJECT_ROOT, ".venv-peers")
PEERS_LOCK = os.path.join(PROJECT_ROOT, "requirements", "peers.lock")
WORKER = os.path.join(PROJECT_ROOT, "benchmarks", "peer_worker.py")
_STAMP = ".peers-lock-sha256"
GENERATOR_NAMES = {"dp_acgan": "this project's DP AC-GAN", "dp_copula": "DP Gaussian copula",
                   "dp_marginals": "DP independent marginals", "mst": "MST", "aim": "AIM"}
# Run in this runtime, the rest by peer_worker.py in .venv-peers.
OURS = {"dp_acgan": "released", "dp_copula": "baseline", "dp_marginals": "baseline"}
# --quick keeps the whole training split: MST's time hardly depends on the rows (it is
# inference over the bins), while on 500 patients at epsilon 1 its noise drowns the
# counts (measured: correlation Spearman 0.02, AUROC ratios 0.53-0.59). It runs fewer
# inference iterations instead; dpmm's selection step (2500 iterations) stays as it is.
QUICK_MST_ITERS = 1000

FLAGS = flags.FLAGS
flags.DEFINE_enum("kind", "sprint", ["sprint", "icu"], "simulated table (make demo: sprint)")
flags.DEFINE_integer("seed", 0, "simulation seed (make demo: 0)")
flags.DEFINE_list("generators", ["dp_acgan", "dp_copula", "dp_marginals", "mst", "aim"],
                  "generators to run: this project's (dp_acgan; the report's DP baselines "
                  "dp_copula, dp_marginals) and peers (mst, aim)")
flags.DEFINE_list("epsilons", ["0.3", "1", "3"], "budgets to run each peer at")
flags.DEFINE_float("delta", 1e-5, "delta of every run")
flags.DEFINE_list("generator_seeds", ["0", "1"], "seeds of each peer's selection and sampling "
                  "(dpmm draws its noise through OpenDP, which cannot be seeded)")
flags.DEFINE_float("timeout_minutes", 20.0, "a peer still running after this is listed as "
                   "not finished")
flags.DEFINE_integer("bins", 32, "equal bins over each numeric column's public [min, max]")
flags.DEFINE_integer("train_patients", 0, "fit on this many training patients, a seeded "
                     "sample (0: the whole training split)")
flags.DEFINE_integer("mst_iters", 5000, "MST's inference iterations (dpmm's default)")
flags.DEFINE_integer("aim_iters", 100, "AIM's inference iterations per round (dpmm: 1000)")
flags.DEFINE_integer("nice", 10, "niceness of the peer workers")
flags.DEFINE_bool("quick", False, f"MST only, epsilon 1, one seed, {QUICK_MST_ITERS} inference "
                  "iterations: a few minutes")
flags.DEFINE_string("out", None, "write the rows, scores and settings to this JSON file")
flags.DEFINE_string("keep_dir", None, "keep the training CSV, domain and synthetic tables here "
                    "(default: a temporary directory)")


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """What to run; from the flags, with --quick applied."""
  kind: str = "sprint"
  seed: int = 0
  generators: Tuple[str, ...] = ("dp_acgan", "dp_copula", "dp_marginals", "mst", "aim")
  epsilons: Tuple[float, ...] = (0.3, 1.0, 3.0)
  delta: float = 1e-5
  generator_seeds: Tuple[int, ...] = (0, 1)
  timeout_minutes: float = 20.0
  bins: int = 32
  train_patients: int = 0
  iters: Tuple[Tuple[str, int], ...] = (("mst", 5000), ("aim", 100))
  nice: int = 10

  def iters_of(self, generator: str) -> int:
    return dict(self.iters)[generator]


@dataclasses.dataclass(frozen=True)
class SplitTables:
  """The pipeline's split of one table, typed as validate_table returns it."""
  spec: DatasetSpec
  train: pd.DataFrame
  test: pd.DataFrame
  split_patients: Dict[str, int]


@dataclasses.dataclass
class PeerRun:
  """One generator at one epsilon and seed: its synthetic table, or why there is none."""
  generator: str
  epsilon: float
  seed: int
  status: str = "ok"  # ok, or the reason (not finished in time, failed)
  package: str = ""
  fit_seconds: Optional[float] = None
  sample_seconds: Optional[float] = None
  wall_seconds: Optional[float] = None
  score: Optional[Dict] = None


def _config_from_flags() -> BenchmarkConfig:
  config = BenchmarkConfig(
      kind=FLAGS.kind, seed=FLAGS.seed, generators=tuple(FLAGS.generators),
      epsilons=tuple(float(e) for e in FLAGS.epsilons), delta=FLAGS.delta,
      generator_seeds=tuple(int(s) for s in FLAGS.generator_seeds),
      timeout_minutes=FLAGS.timeout_minutes, bins=FLAGS.bins,
      train_patients=FLAGS.train_patients,
      iters=(("mst", FLAGS.mst_iters), ("aim", FLAGS.aim_iters)), nice=FLAGS.nice)
  unknown = [g for g in config.generators if g not in GENERATOR_NAMES]
  if unknown:
    raise app.UsageError(f"unknown generators {unknown}; choose from {list(GENERATOR_NAMES)}")
  if FLAGS.quick:
    config = dataclasses.replace(config, generators=("mst",), epsilons=(1.0,),
                                 generator_seeds=(config.generator_seeds[0],),
                                 iters=(("mst", min(FLAGS.mst_iters, QUICK_MST_ITERS)),
                                        ("aim", FLAGS.aim_iters)))
  return config


def _lock_digest() -> str:
  with open(PEERS_LOCK, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def ensure_runtime() -> str:
  """.venv-peers made to match the lock file (no resolution), unless it already does;
  returns its Python. uv comes with the pipeline runtime."""
  python = os.path.join(PEERS_VENV, "bin", "python")
  stamp = os.path.join(PEERS_VENV, _STAMP)
  digest = _lock_digest()
  if os.path.exists(python) and os.path.exists(stamp):
    with open(stamp, encoding="utf-8") as f:
      if f.read().strip() == digest:
        return python
  uv = os.path.join(os.path.dirname(sys.executable), "uv")
  print(f"peers: creating {os.path.relpath(PEERS_VENV, PROJECT_ROOT)} from "
        f"{os.path.relpath(PEERS_LOCK, PROJECT_ROOT)}", flush=True)
  started = time.time()
  subprocess.run([uv, "venv", "-q", "--allow-existing", "-p", sys._base_executable,  # pylint: disable=protected-access
                  PEERS_VENV], check=True)
  # sync: exactly the lock's packages (it pins every one), nothing resolved, and any
  # package an older lock brought removed.
  subprocess.run([uv, "pip", "sync", "-q", "--python", python, PEERS_LOCK], check=True)
  with open(stamp, "w", encoding="utf-8") as f:
    f.write(digest + "\n")
  print(f"peers: runtime ready in {time.time() - started:.0f} s", flush=True)
  return python


def pipeline_split(kind: str, seed: int) -> SplitTables:
  """The simulated table as `make demo` writes it, validated, split as ExampleGen will."""
  frame, spec = simulate(kind, seed=seed)
  with tempfile.TemporaryDirectory() as tmp:
    report = validate_table(write_simulated(tmp, frame, spec)[0], spec)
  if not report.ok:
    raise InvalidInputError(report.findings)
  table = report.table
  internal = ColumnKeys.for_spec(spec).internal_spec(spec)
  buckets = dataclasses.asdict(SplitConfig())
  splits = example_gen_splits(prepared_table(table, spec), buckets, internal.id_column)
  patients = table[spec.id_column] if spec.id_column else table.index.to_series()
  return SplitTables(
      spec=spec, train=table[splits == "train"].reset_index(drop=True),
      test=table[splits == "test"].reset_index(drop=True),
      split_patients={s: int(patients[splits == s].nunique()) for s in buckets})


def _subsample(train: pd.DataFrame, spec: DatasetSpec, patients: int, seed: int
               ) -> pd.DataFrame:
  ids = train[spec.id_column] if spec.id_column else train.index.to_series()
  if not patients or ids.nunique() <= patients:
    return train
  keep = np.random.default_rng(seed).choice(ids.unique(), size=patients, replace=False)
  return train[ids.isin(keep)].reset_index(drop=True)


def _modeled_columns(spec: DatasetSpec) -> List[str]:
  # Id and site are not modeled: the released table has neither.
  return [spec.label_column] + spec.feature_columns


def domain_document(spec: DatasetSpec, bins: int) -> Dict:
  """The public domain of every modeled column (the spec's categories and bounds)."""
  columns = [{"name": spec.label_column, "kind": "categorical",
              "values": [str(spec.label_negative), str(spec.label_positive)]}]
  for feature in spec.static:
    if feature.is_categorical:
      columns.append({"name": feature.name, "kind": "categorical",
                      "values": list(feature.values)})
    else:
      columns.append({"name": feature.name, "kind": "numeric", "min": feature.min,
                      "max": feature.max, "integer": feature.integer, "bins": bins})
  for series in spec.series:
    for column in series.columns:
      columns.append({"name": column, "kind": "numeric", "min": series.min,
                      "max": series.max, "integer": series.integer, "bins": bins})
  return {"columns": columns}


def _write_inputs(train: pd.DataFrame, spec: DatasetSpec, bins: int, directory: str
                  ) -> Tuple[str, str]:
  train_csv = os.path.join(directory, "train.csv")
  rows = train[_modeled_columns(spec)].assign(
      **{spec.label_column: user_labels(train[spec.label_column], spec)})
  rows.to_csv(train_csv, index=False)
  domain_json = os.path.join(directory, "domain.json")
  with open(domain_json, "w", encoding="utf-8") as f:
    json.dump(domain_document(spec, bins), f, indent=2)
  return train_csv, domain_json


def _run_worker(command: List[str], log_path: str, timeout_s: float) -> Tuple[Optional[int], float]:
  """(exit status or None when it ran out of time, wall seconds). The worker gets a
  session of its own so that, on time-out, it and anything it started end together."""
  started = time.time()
  with open(log_path, "w", encoding="utf-8") as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, cwd=PROJECT_ROOT)
    try:
      return process.wait(timeout=timeout_s), time.time() - started
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      process.wait()
      return None, time.time() - started


def _last_line(path: str) -> str:
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = [line.strip() for line in f if line.strip()]
  return lines[-1] if lines else "no output"


def _read_synthetic(path: str, spec: DatasetSpec) -> pd.DataFrame:
  """The worker's table checked against the spec (bounds, categories, integers), typed
  and with the label as 1 / 0, as the pipeline reads its own synthetic table."""
  report = validate_table(path, dataclasses.replace(spec, id_column=None, site_column=None))
  if not report.ok:
    raise InvalidInputError(report.findings)
  return report.table


def run_peer(python: str, generator: str, epsilon: float, seed: int, config: BenchmarkConfig,
             inputs: Tuple[str, str], directory: str) -> PeerRun:
  run = PeerRun(generator, epsilon, seed)
  name = f"{generator}_eps{epsilon:g}_seed{seed}"
  out = os.path.join(directory, f"{name}.csv")
  command = ["nice", "-n", str(config.nice), python, WORKER, "--generator", generator,
             "--epsilon", repr(epsilon), "--delta", repr(config.delta), "--seed", str(seed),
             "--iters", str(config.iters_of(generator)), "--train", inputs[0],
             "--domain", inputs[1], "--out", out]
  status, run.wall_seconds = _run_worker(command, os.path.join(directory, f"{name}.log"),
                                         config.timeout_minutes * 60)
  if status is None:
    run.status = f"did not finish in {config.timeout_minutes:g} min"
  elif status != 0:
    run.status = f"failed (exit {status}): {_last_line(os.path.join(directory, name + '.log'))}"
  else:
    with open(out + ".json", encoding="utf-8") as f:
      timing = json.load(f)
    run.package, run.fit_seconds, run.sample_seconds = (
        timing["package"], timing["fit_seconds"], timing["sample_seconds"])
  return run


def run_ours(generator: str, epsilon: float, seed: int, train: pd.DataFrame, spec: DatasetSpec,
             config: BenchmarkConfig, directory: str) -> Tuple[PeerRun, pd.DataFrame]:
  """This project's generator, or one of the report's DP baselines, fitted on `train` at
  the same budget, per patient, in this runtime; and its synthetic table."""
  from components.evaluation import baselines  # pylint: disable=g-import-not-at-top
  from trainers import features, gan, gan_export, gan_trainer  # pylint: disable=g-import-not-at-top
  from trainers.dp_training import PrivacyBudget  # pylint: disable=g-import-not-at-top
  from clinical_dp.names import binary_label_spec  # pylint: disable=g-import-not-at-top
  run = PeerRun(generator, epsilon, seed, package="this project")
  internal = binary_label_spec(spec)
  inputs, labels = features.encode_table(train, internal)
  rows = features.max_rows_per_patient(
      {spec.id_column: train[spec.id_column].to_numpy()} if spec.id_column else {},
      spec.id_column)
  start = time.perf_counter()
  if generator == "dp_acgan":
    trained = gan_trainer.train_gan(inputs, labels, internal, gan.GanConfig(),
                                    PrivacyBudget(epsilon, config.delta), seed=seed,
                                    max_rows_per_patient=rows, log=lambda _: None)
    run.fit_seconds = time.perf_counter() - start
    export = gan_export.export_generator(trained.generator, internal,
                                         trained.config.latent_dim,
                                         os.path.join(directory, f"generator_eps{epsilon:g}"))
    start = time.perf_counter()
    synthetic = gan_export.generate_table(export, internal, len(train), trained.positive_rate)
  else:
    fitted = baselines.fit_and_sample(generator[len("dp_"):], features.flatten_inputs(inputs),
                                      labels.reshape(-1), features.PatientLayout.from_spec(
                                          internal), epsilon, config.delta, rows, len(train),
                                      seed)
    run.fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    synthetic = features.table_from_flat(fitted.flat, fitted.labels, internal)
  run.sample_seconds = time.perf_counter() - start
  run.wall_seconds = run.fit_seconds + run.sample_seconds
  return run, synthetic


def _cell(value: Optional[float], digits: int = 3) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(runs: List[PeerRun], floor: Dict, package: str) -> List[str]:
  lines = ["| generator | epsilon | seed | LR | RF | SVM | kNN | correlation Spearman | "
           "median KS | max KS | fit + sample s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for run in runs:
    label = f"{GENERATOR_NAMES[run.generator]} ({run.package or package})"
    if run.score is None:
      lines.append(f"| {label} | {run.epsilon:g} | {run.seed} | {run.status} "
                   f"| | | | | | | ({run.wall_seconds:.0f} wall) |")
      continue
    row = summary_row(run.score)
    lines.append(
        f"| {label} | {run.epsilon:g} | {run.seed} | {_cell(row['lr'])} | {_cell(row['rf'])} | "
        f"{_cell(row['svm'])} | {_cell(row['knn'])} | {_cell(row['correlation_spearman'])} | "
        f"{_cell(row['median_ks'])} | {_cell(row['max_ks'])} | "
        f"{run.fit_seconds + run.sample_seconds:.1f} |")
  row = summary_row(floor)
  lines.append(f"| (real train split against real test, the noise floor) | | | 1 | 1 | 1 | 1 | "
               f"{_cell(row['correlation_spearman'])} | {_cell(row['median_ks'])} | "
               f"{_cell(row['max_ks'])} | |")
  return lines


def _locked_package() -> str:
  with open(PEERS_LOCK, encoding="utf-8") as f:
    pins = dict(line.strip().split("==", 1) for line in f if "==" in line)
  return f"dpmm {pins.get('dpmm', '?')}"


def _benchmark(config: BenchmarkConfig, directory: str) -> Dict:
  python = ensure_runtime() if set(config.generators) - set(OURS) else None
  split = pipeline_split(config.kind, config.seed)
  spec = split.spec
  train = _subsample(split.train, spec, config.train_patients, config.seed)
  print(f"{config.kind} table, seed {config.seed}: split by patient "
        + ", ".join(f"{s} {n}" for s, n in split.split_patients.items())
        + f"; peers fit on {len(train)} training patients"
        + (" (a seeded sample)" if len(train) < len(split.train) else "")
        + f", scored on {len(split.test)} test patients", flush=True)
  inputs = _write_inputs(train, spec, config.bins, directory)
  runs = []
  for generator in config.generators:
    for epsilon in config.epsilons:
      for seed in config.generator_seeds:
        if generator in OURS:
          run, synthetic = run_ours(generator, epsilon, seed, train, spec, config, directory)
        else:
          run = run_peer(python, generator, epsilon, seed, config, inputs, directory)
        if run.status == "ok":
          if generator not in OURS:
            synthetic = _read_synthetic(
                os.path.join(directory, f"{generator}_eps{epsilon:g}_seed{seed}.csv"), spec)
          # Scored against the full training split: the reference every row shares.
          run.score = score_table(split.train, split.test, synthetic, spec)
        print(f"  {GENERATOR_NAMES[generator]} epsilon {epsilon:g} seed {seed}: {run.status}, "
              f"{run.wall_seconds:.0f} s wall", flush=True)
        runs.append(run)
  floor = noise_floor(split.train, split.test, spec)
  table = format_table(runs, floor, _locked_package())
  return {"config": dataclasses.asdict(config), "split_patients": split.split_patients,
          "fit_patients": int(len(train)), "table": table, "noise_floor": floor,
          "runs": [dataclasses.asdict(r) for r in runs]}


def main(argv):
  del argv
  config = _config_from_flags()
  started = time.time()
  if FLAGS.keep_dir:
    os.makedirs(FLAGS.keep_dir, exist_ok=True)
    result = _benchmark(config, FLAGS.keep_dir)
  else:
    with tempfile.TemporaryDirectory(prefix="peers-") as directory:
      result = _benchmark(config, directory)
  result["wall_seconds"] = round(time.time() - started, 1)
  print(f"\nDP generators on the {config.kind} table's training split, delta "
        f"{config.delta:g}; TSTR AUROC as a ratio to trained-on-real (test split), fidelity "
        f"against the training split; {config.bins} equal bins per numeric column; "
        f"iterations {dict(config.iters)}; wall {result['wall_seconds']:.0f} s")
  print("\n".join(result["table"]))
  if FLAGS.out:
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2, default=float)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
