"""How `clinical-dp run` scales with the table: wall time per component, peak memory, CPU.

For each N of --patients: simulates a sprint table of N patients (`clinical-dp simulate
--kind sprint`), runs `clinical-dp run --no-federated` on it (with the federated step
too under --federated) as a child process, and measures
- wall seconds per component: the runner's console lines ("  Transform ..." as a
  component starts, "  Transform done in 38 s" as it ends), timed here as they arrive,
  and the EvaluationReport's sub-steps ("  EvaluationReport: <step>: 42 s");
- peak resident memory of the whole process tree (the run and every process under it,
  summed), polled with psutil every --poll_seconds;
- peak resident memory while each component ran (the same polling);
- CPU share: CPU seconds over wall seconds, for the run (getrusage of the waited child,
  which counts every descendant it waited for) and per component (the tree's CPU
  seconds polled at the component's first and last line; 200% is both cores of this
  machine busy);
- the headline figures, from the run's report.json.
Prints a table with the slope (seconds per 100 000 patients, least squares over the
sizes run) of each component, and writes everything as JSON with --out.

  .venv/bin/python benchmarks/scale.py [--patients 10000,100000] [--federated] [--out F]
      [--sites 200] [--run_args=--federated-workers,2]
"""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from absl import app, flags
import numpy as np
import psutil

FLAGS = flags.FLAGS
flags.DEFINE_list("patients", ["10000", "100000"], "table sizes, in patients (1000000 allowed)")
flags.DEFINE_bool("federated", False, "run the federated step too (the sprint table has sites)")
flags.DEFINE_integer("seed", 1, "the run's seed (`clinical-dp run --seed`)")
flags.DEFINE_integer("data_seed", 2, "the simulator's seed")
flags.DEFINE_integer("sites", None, "hospitals in the simulated table (`simulate --sites`; "
                     "default: the simulator's)")
flags.DEFINE_string("work_dir", None, "where the tables and runs go (default: a temporary "
                    "directory, removed at the end unless --keep)")
flags.DEFINE_bool("keep", False, "keep the simulated tables and run directories")
flags.DEFINE_list("run_args", [], "more arguments for `clinical-dp run`, e.g. "
                  "--run_args=--beam-mode,multi_processing")
flags.DEFINE_float("poll_seconds", 0.5, "how often the process tree's memory and CPU are read")
flags.DEFINE_string("out", None, "write the measurements here as JSON")

_STARTED = re.compile(r"^  (\w+) \.\.\.$")
_FINISHED = re.compile(r"^  (\w+) done in (\d+) s$")
_REPORT_STEP = re.compile(r"^  EvaluationReport: (.+): (\d+) s$")
_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _TreeMonitor:
  """Polls the resident memory and CPU seconds of a process and everything under it. CPU
  seconds of a process that has gone stay counted at their last reading."""

  def __init__(self, pid: int, every: float):
    self._root = psutil.Process(pid)
    self._every = every
    self._cpu: Dict[int, float] = {}
    self._lock = threading.Lock()
    self.peak_rss = 0
    self.window_peak_rss = 0  # since the current component started
    self.step_peak_rss = 0  # since the report's previous sub-step ended
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._thread.start()

  def _poll(self) -> None:
    while not self._stop.is_set():
      self.sample()
      self._stop.wait(self._every)

  def sample(self) -> None:
    try:
      processes = [self._root, *self._root.children(recursive=True)]
    except psutil.Error:
      return
    rss = 0
    for process in processes:
      try:
        with process.oneshot():
          rss += process.memory_info().rss
          times = process.cpu_times()
        with self._lock:
          self._cpu[process.pid] = times.user + times.system
      except psutil.Error:
        continue
    self.peak_rss = max(self.peak_rss, rss)
    self.window_peak_rss = max(self.window_peak_rss, rss)
    self.step_peak_rss = max(self.step_peak_rss, rss)

  def cpu_seconds(self) -> float:
    with self._lock:
      return sum(self._cpu.values())

  def stop(self) -> None:
    self._stop.set()
    self._thread.join()


def _cli(*args: str) -> List[str]:
  return [sys.executable, "-m", "cli.main", *args]


def _simulate(patients: int, directory: str) -> Dict[str, str]:
  sites = ["--sites", str(FLAGS.sites)] if FLAGS.sites else []
  subprocess.run(_cli("simulate", "--kind", "sprint", "--patients", str(patients), "--seed",
                      str(FLAGS.data_seed), *sites, "--out", directory),
                 check=True, cwd=_PROJECT, stdout=subprocess.DEVNULL)
  return {"data": os.path.join(directory, "data.csv"),
          "spec": os.path.join(directory, "spec.yaml")}


def _run(table: Dict[str, str], output: str, log_path: str) -> Dict:
  """One `clinical-dp run`, its console copied to log_path, measured as it goes."""
  command = _cli("run", "--data", table["data"], "--spec", table["spec"], "--output", output,
                 "--seed", str(FLAGS.seed), *([] if FLAGS.federated else ["--no-federated"]),
                 *FLAGS.run_args)
  env = dict(os.environ, PYTHONPATH=_PROJECT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  process = subprocess.Popen(command, cwd=_PROJECT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
  monitor = _TreeMonitor(process.pid, FLAGS.poll_seconds)
  components: Dict[str, Dict] = {}
  report_steps: Dict[str, float] = {}
  report_step_peaks: Dict[str, float] = {}  # GB, the process tree's peak RSS in the step
  with open(log_path, "w", encoding="utf-8") as log:
    for line in process.stdout:
      log.write(line)
      log.flush()
      line = line.rstrip("\n")
      now = time.perf_counter() - start
      started, finished, step = (_STARTED.match(line), _FINISHED.match(line),
                                 _REPORT_STEP.match(line))
      if started or finished:
        monitor.sample()  # the CPU seconds at this very line
      if started:
        components[started.group(1)] = {"start": now, "cpu_start": monitor.cpu_seconds()}
        monitor.window_peak_rss = monitor.step_peak_rss = 0
      elif finished and finished.group(1) in components:
        entry = components[finished.group(1)]
        entry.update(seconds=now - entry["start"], said_seconds=int(finished.group(2)))
        wall = max(entry["seconds"], 1e-9)
        entry["cpu_share"] = (monitor.cpu_seconds() - entry.pop("cpu_start")) / wall
        entry["peak_rss_gb"] = monitor.window_peak_rss / 1e9
      elif step:
        report_steps[step.group(1)] = float(step.group(2))
        report_step_peaks[step.group(1)] = monitor.step_peak_rss / 1e9
        monitor.step_peak_rss = 0
  code = process.wait()
  wall = time.perf_counter() - start
  monitor.stop()
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
  for entry in components.values():
    entry.pop("start", None)
    entry.pop("cpu_start", None)
  return {"exit_code": code, "wall_seconds": wall, "cpu_seconds": cpu,
          "cpu_share": cpu / wall, "peak_rss_gb": monitor.peak_rss / 1e9,
          "components": components, "report_steps": report_steps,
          "report_step_peak_rss_gb": report_step_peaks}


def _headline(output: str) -> Dict:
  path = os.path.join(output, "report", "report.json")
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    report = json.load(f)
  use, fid, attack = report["utility"], report["fidelity"], report["attack"]
  return {
      "auroc": {source: {m: {k: use[source][m].get(k) for k in ("auroc", "auroc_ci")}
                         for m in ("lr", "rf", "svm", "knn")}
                for source in ("real", "synthetic")},
      "synthetic_relative_to_real": use["synthetic_relative_to_real"],
      "shuffled_label_control": use["shuffled_label_control"].get("auroc"),
      "correlation_spearman": fid["correlation_spearman"], "median_ks": fid["median_ks"],
      "membership_auroc": attack["membership_auroc"],
      "positive_control_auroc": attack["positive_control_auroc"],
      "dcr_ratio": report["disclosure"].get("dcr_ratio"),
      "baselines": report["headline"]["baselines"]["status"],
      "sub_sampled": report.get("sub_sampled", {}).get("note"),
  }


def _slope(sizes: List[int], seconds: List[Optional[float]]) -> Optional[float]:
  """Least-squares seconds per 100 000 patients over the sizes measured."""
  points = [(n, s) for n, s in zip(sizes, seconds) if s is not None]
  if len(points) < 2:
    return None
  n, s = np.array(points, float).T
  return float(np.polyfit(n / 1e5, s, 1)[0])


def _print_table(results: Dict[int, Dict]) -> Dict[str, Optional[float]]:
  sizes = sorted(results)
  names: List[str] = []
  for size in sizes:
    names += [c for c in results[size]["components"] if c not in names]
  rows = [(c, [results[n]["components"].get(c, {}).get("seconds") for n in sizes]) for c in names]
  rows.append(("whole run", [results[n]["wall_seconds"] for n in sizes]))
  slopes = {name: _slope(sizes, seconds) for name, seconds in rows}
  width = max(len(name) for name, _ in rows) + 2
  print("\nwall seconds (CPU share) by component; slope: seconds per 100 000 patients")
  print(" " * width + "".join(f"{n:>18}" for n in sizes) + f"{'slope':>10}")
  for name, seconds in rows:
    cells = []
    for n, value in zip(sizes, seconds):
      share = (results[n]["components"].get(name, {}).get("cpu_share") if name != "whole run"
               else results[n]["cpu_share"])
      cells.append("n/a" if value is None else f"{value:.0f} s ({share:.0%})" if share is not None
                   else f"{value:.0f} s")
    slope = slopes[name]
    print(f"{name:<{width}}" + "".join(f"{c:>18}" for c in cells)
          + f"{'n/a' if slope is None else f'{slope:.1f}':>10}")
  print(f"{'peak RSS of the tree':<{width}}"
        + "".join(f"{results[n]['peak_rss_gb']:>15.2f} GB" for n in sizes))
  print("\npeak RSS of the tree while each component ran, GB")
  for name, _ in rows[:-1]:
    peaks = [results[n]["components"].get(name, {}).get("peak_rss_gb") for n in sizes]
    print(f"{name:<{width}}" + "".join("n/a".rjust(18) if p is None else f"{p:>18.2f}"
                                       for p in peaks))
  steps: List[str] = []
  for size in sizes:
    steps += [s for s in results[size]["report_steps"] if s not in steps]
  if steps:
    print("\nEvaluationReport sub-steps, seconds (peak RSS of the tree in the step, GB)")
    for step in steps:
      cells = []
      for n in sizes:
        seconds = results[n]["report_steps"].get(step)
        peak = results[n].get("report_step_peak_rss_gb", {}).get(step)
        cells.append("n/a".rjust(18) if seconds is None
                     else f"{seconds:>9.0f} ({peak:5.2f})" if peak is not None
                     else f"{seconds:>18.0f}")
      print(f"  {step:<58}" + "".join(cells))
  for size in sizes:
    h = results[size]["headline"]
    if h:
      ratios = ", ".join(f"{m} {v:.3f}" for m, v in h["synthetic_relative_to_real"].items()
                         if v is not None)
      print(f"\n{size} patients: ratios {ratios}; Spearman {h['correlation_spearman']:.3f}, "
            f"median KS {h['median_ks']:.3f}; control {h['shuffled_label_control']:.3f}; "
            f"attack {h['membership_auroc']:.3f} (positive control "
            f"{h['positive_control_auroc']:.3f}); baselines: {h['baselines']}")
      if h["sub_sampled"]:
        print(f"  sub-sampled:{h['sub_sampled']}")
  return slopes


def main(_):
  sizes = [int(float(n)) for n in FLAGS.patients]
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix="clinical_dp_scale_")
  os.makedirs(work, exist_ok=True)
  results: Dict[int, Dict] = {}
  try:
    for size in sizes:
      start = time.perf_counter()
      table = _simulate(size, os.path.join(work, f"data_{size}"))
      simulate_seconds = time.perf_counter() - start
      output = os.path.join(work, f"run_{size}")
      print(f"{size} patients: simulated in {simulate_seconds:.0f} s; running "
            f"{'with' if FLAGS.federated else 'without'} the federated step into {output}",
            flush=True)
      measured = _run(table, output, os.path.join(work, f"run_{size}.log"))
      measured.update(patients=size, simulate_seconds=simulate_seconds,
                      headline=_headline(output))
      results[size] = measured
      print(f"  exit {measured['exit_code']}, {measured['wall_seconds']:.0f} s, CPU "
            f"{measured['cpu_share']:.0%}, peak RSS {measured['peak_rss_gb']:.2f} GB",
            flush=True)
      if not FLAGS.keep:
        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(os.path.join(work, f"data_{size}"), ignore_errors=True)
    slopes = _print_table(results)
  finally:
    if not FLAGS.keep and not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  if FLAGS.out:
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      json.dump({"federated": FLAGS.federated, "seed": FLAGS.seed,
                 "data_seed": FLAGS.data_seed, "run_args": FLAGS.run_args,
                 "cpu_count": os.cpu_count(), "runs": {str(n): r for n, r in results.items()},
                 "slope_seconds_per_100k_patients": slopes}, f, indent=2)
    print(f"wrote {FLAGS.out}")
  if any(r["exit_code"] for r in results.values()):
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
