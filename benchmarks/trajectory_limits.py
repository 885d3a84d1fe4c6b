"""How close can the released statistics put each visit's median blood pressure? A
measurement of the noise floor of issue 13's trajectory target (every per-visit median SBP
and DBP of each label class within 3 mmHg of the real one) on simulated data only.

The generator starts as the Gaussian copula of DP marginals per label class
(trainers/dp_statistics.py); the DP refinement moves it by less than 0.01 on any measure
(benchmarks/gan_settings_sweep.py, copula_only against default), so the copula's medians
are the generator's. For each budget the default GanConfig's statistics are released
`--draws` times (new noise each time) on the training split of a simulated sprint table,
as many patients sampled as the split has, and the largest per-visit median error of each
series over both classes (fidelity.trajectory_error, clinical units) is recorded. Printed
per budget: the median and 90th percentile of that worst error over the draws, the share of
draws within the target, and, as reference rows, the same with noise-free statistics (the
bias of binning alone) and the real test split (another 10% of the patients) against the
training split.

  nice -n 5 .venv/bin/python benchmarks/trajectory_limits.py [--seed 11] [--draws 20] \\
      [--epsilons 1,3,10] [--configs default,equal_bins]
"""

import os
import sys

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)  # this checkout's modules, benchmarks/ among them

import clinical_dp  # noqa: E402,F401  (selects Keras 2 before TensorFlow)

import tempfile  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import gan_settings_sweep as sweep  # noqa: E402  (its split; its flags too)
from components.evaluation import fidelity  # noqa: E402
from trainers import dp_statistics, features, gan  # noqa: E402
from trainers.dp_training import PrivacyBudget, statistics_noise  # noqa: E402

TARGET_MMHG = 3.0
SERIES = ("sbp", "dbp")
NOISE_FREE_EPSILON = 1e6  # statistics noise multiplier about 1e-5: binning bias alone

FLAGS = flags.FLAGS
flags.DEFINE_integer("draws", 20, "noise draws per budget")
flags.DEFINE_list("epsilons", ["1", "3", "10"], "budgets (delta as the sweep's)")
flags.DEFINE_list("configs", ["default"], "the sweep's candidates whose statistics to draw")


def _worst_errors(split, config: gan.GanConfig, epsilon: float, draws: int):
  """{series: [worst per-visit median error over both classes, one per draw]}."""
  num_rows = len(split.y_train)
  statistics = config.statistics(num_rows)
  layout = features.PatientLayout.from_spec(split.spec)
  codes = dp_statistics.CodeLayout.from_layout(layout, statistics.bins)
  noise = statistics_noise(config, PrivacyBudget(epsilon, sweep.DELTA),
                           split.max_rows_per_patient)
  real = fidelity.median_trajectories(split.train, split.spec)
  worst = {series: [] for series in SERIES}
  for draw in range(draws):
    rng = np.random.default_rng(draw)
    copula = dp_statistics.release(split.x_train, split.y_train, codes, statistics, noise,
                                   rng)
    labels = split.y_train[rng.permutation(num_rows)]  # the real label rate
    table = features.table_from_flat(copula.sample(labels, rng), labels, split.spec)
    errors = fidelity.trajectory_error(real, fidelity.median_trajectories(table, split.spec))
    for series in SERIES:
      worst[series].append(errors[series]["max"])
  return worst


def _row(name: str, worst) -> str:
  cells = []
  for series in SERIES:
    values = np.asarray(worst[series])
    cells += [f"{np.median(values):6.2f}", f"{np.percentile(values, 90):6.2f}",
              f"{np.mean(values <= TARGET_MMHG):5.0%}"]
  return f"| {name:<24} | " + " | ".join(cells) + " |"


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    split = sweep._simulated_split("sprint", FLAGS.seed, tmp)
    bins = gan.GanConfig().statistics(len(split.y_train)).bins
    print(f"sprint seed {FLAGS.seed}: {len(split.y_train)} training patients, "
          f"{len(split.y_test)} test; {bins} bins by default; {FLAGS.draws} draws per row; "
          f"worst per-visit median error over both classes (mmHg)")
    header = " | ".join(f"{s} median | {s} p90 | {s} <= {TARGET_MMHG:g}" for s in SERIES)
    print(f"| statistics               | {header} |")
    print("|---" * (1 + 3 * len(SERIES)) + "|")
    start = time.perf_counter()
    for name in FLAGS.configs:
      config = sweep.CANDIDATES[name]
      prefix = "" if FLAGS.configs == ["default"] else f"{name}, "
      print(_row(prefix + "noise-free (binning)",
                 _worst_errors(split, config, NOISE_FREE_EPSILON, FLAGS.draws)), flush=True)
      for epsilon in map(float, FLAGS.epsilons):
        print(_row(f"{prefix}epsilon {epsilon:g}",
                   _worst_errors(split, config, epsilon, FLAGS.draws)), flush=True)
    real = fidelity.trajectory_error(fidelity.median_trajectories(split.train, split.spec),
                                     fidelity.median_trajectories(split.test, split.spec))
    print(_row("real test split", {s: [real[s]["max"]] for s in SERIES}))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
  app.run(main)
