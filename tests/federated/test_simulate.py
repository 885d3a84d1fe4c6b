"""federated.simulate end to end on tiny federations, in child sessions."""

import json
import os

import pytest

from federated.config import ALGORITHMS, DP_ALGORITHMS, FederatedConfig
from tests import privacy_recompute
from tests.federated.conftest import read_results, simulate_cli

TARGET_EPSILON = 5.0


@pytest.fixture(scope="module")
def all_run(tiny_federation, tmp_path_factory):
  """Every algorithm on 3 uneven sites, with one site in four failing per round."""
  out = tmp_path_factory.mktemp("all") / "run"
  # Seeded: with another schedule, 25% dropout could spare every site (p = 0.75^18).
  config = FederatedConfig.fast(dropout_rate=0.25, target_epsilon=TARGET_EPSILON, seed=0)
  completed = simulate_cli("--data", tiny_federation / "data.csv",
                           "--spec", tiny_federation / "spec.yaml", "--output", out,
                           *config.to_args())
  assert completed.returncode == 0, completed.output
  return out, read_results(out), completed


def test_every_algorithm_trains_and_reports(all_run):
  out, results, completed = all_run
  assert list(results["algorithms"]) == list(ALGORITHMS)
  assert results["sites"] == ["hospital00", "hospital01", "hospital02"]
  for name, entry in results["algorithms"].items():
    assert 0.0 <= entry["auroc"] <= 1.0 and 0.0 <= entry["accuracy"] <= 1.0, name
    assert set(entry["per_site"]) == set(results["sites"])
    assert all(site["n"] > 0 for site in entry["per_site"].values())
    assert entry["rounds"] <= entry["rounds_planned"] == 6
    assert entry["auroc_per_round"] and len(entry["auroc_per_round"]) == len(entry["eval_rounds"])
    assert entry["wall_seconds"] > 0
    assert f"[{name}] done" in completed.output
    if name in DP_ALGORITHMS:
      assert 0 < entry["epsilon"] <= TARGET_EPSILON, name
      assert entry["delta"] == 1e-4 and entry["accountant"] == "rdp"
      # One relation for every release: dp_fedavg too is accounted per patient (its
      # site-level guarantee, one clip per site, beside it).
      assert entry["privacy_unit"] == "patient"
      model_dir = out / entry["model"]
      assert (model_dir / "saved_model.pb").exists()
      record = json.loads((model_dir / "privacy_record.json").read_text())
      assert record["epsilon"] == entry["epsilon"] and record["algorithm"] == name
      assert record["relation"] == "one patient added or removed"
      assert privacy_recompute.recomputed_epsilon(record) <= record["epsilon"] * 1.001
      if name == "dp_fedavg":
        assert record["site_level"]["epsilon"] < record["epsilon"]
    else:
      assert entry["epsilon"] is None and entry["model"] is None  # not private: not released
  assert not (out / "models" / "centralized").exists()
  page = (out / "federated.html").read_text()
  assert "<svg" in page and "dopamine" in page and "http" not in page.replace(
      "http://www.w3.org/2000/svg", "")
  assert not [p for p in os.listdir(out.parent) if p.startswith(".federated-partial-")]


def test_dropout_skips_sites_and_accounting_counts_what_ran(all_run):
  _, results, _ = all_run
  algorithms = results["algorithms"]
  config = results["config"]
  failures = algorithms["local_dp"]["details"]["site_failures"]
  assert failures > 0  # 25% dropout over 6 rounds x 3 sites: the run saw failures
  # Every algorithm sees the same failures (one schedule per seed).
  assert {algorithms[a]["details"]["site_failures"] for a in
          ("fedavg", "local_dp", "dp_fedavg", "dopamine", "cyclical")} == {failures}
  steps = algorithms["local_dp"]["privacy"]["steps_per_site"]
  assert sum(steps.values()) == config["local_steps"] * (3 * 6 - failures)
  # Dopamine: in a round where sites failed, their noise shares were missing, so the
  # ledger holds a smaller noise multiplier sigma * sqrt(active / K) for that round.
  sigma = algorithms["dopamine"]["details"]["noise_multiplier"]
  # Each of the 3 sites adds sigma * clip / sqrt(3): together the central scale.
  share = algorithms["dopamine"]["details"]["noise_stddev_share"]
  assert 3 * share ** 2 == pytest.approx((sigma * config["clip"]) ** 2)
  noises = {m["noise_multiplier"] for mechanisms in
            algorithms["dopamine"]["privacy"]["mechanisms_per_site"].values()
            for m in mechanisms}
  assert max(noises) == pytest.approx(sigma)
  assert min(noises) < sigma
  for noise in noises:
    active = 3 * (noise / sigma) ** 2  # sites whose shares were added that round
    assert active == pytest.approx(round(active), abs=1e-6) and 1 <= round(active) <= 3


def test_ten_sites_dp_fedavg_fixed_clipping_and_adaptive_where_tff_allows(tmp_path):
  from clinical_dp.simulators import simulate, write_simulated
  frame, spec = simulate("icu", patients=1200, sites=10, seed=3)
  write_simulated(str(tmp_path), frame, spec)
  # epsilon 3: noise multiplier >= 0.1 x 8 clients, where TFF's adaptive clipping raises;
  # epsilon 2000: little noise, adaptive clipping is allowed and used.
  for target, clipping in ((3.0, "fixed"), (2000.0, "adaptive")):
    out = tmp_path / clipping
    config = FederatedConfig.fast(algorithm="dp_fedavg", rounds=3, target_epsilon=target,
                                  delta=1e-4, clients_per_round=8)
    completed = simulate_cli("--data", tmp_path / "data.csv", "--spec", tmp_path / "spec.yaml",
                             "--output", out, *config.to_args())
    assert completed.returncode == 0, completed.output
    results = read_results(out)
    entry = results["algorithms"]["dp_fedavg"]
    assert len(results["sites"]) == 10 and entry["epsilon"] <= target
    assert entry["details"]["clipping"] == clipping
    assert (entry["details"]["noise_multiplier"] >= 0.8) == (clipping == "fixed")


def _refuse(capsys, output, *args):
  """Runs the CLI in this process: bad input is refused before TensorFlow is imported."""
  from federated import simulate
  code = simulate.main([*map(str, args), "--output", str(output)])
  return code, capsys.readouterr()


def _assert_refused(outcome, output, *needles):
  code, captured = outcome
  assert code == 2, captured
  lines = [l for l in captured.err.splitlines() if l.startswith("federated.simulate:")]
  assert len(lines) == 1 and not captured.out, captured
  for needle in needles:
    assert needle in lines[0], lines[0]
  assert not os.path.exists(output)


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tiny_federation, tmp_path, capsys):
  out = tmp_path / "out"
  spec = tiny_federation / "spec.yaml"
  data = tiny_federation / "data.csv"
  _assert_refused(_refuse(capsys, out, "--data", tmp_path / "absent.csv", "--spec", spec), out,
                  "absent.csv", "file not found")
  no_site = tmp_path / "no_site.yaml"
  no_site.write_text("\n".join(l for l in spec.read_text().splitlines()
                               if not l.startswith("site_column")))
  _assert_refused(_refuse(capsys, out, "--data", data, "--spec", no_site), out,
                  "no_site.yaml", "site_column")
  import pandas as pd
  table = pd.read_csv(data).drop(columns=["hospital"])
  csv = tmp_path / "no_hospital.csv"
  table.to_csv(csv, index=False)
  _assert_refused(_refuse(capsys, out, "--data", csv, "--spec", spec), out,
                  "no_hospital.csv", "'hospital'")
  bad_spec = tmp_path / "bad.yaml"
  bad_spec.write_text("name: x\nlabel_column: [\n")
  _assert_refused(_refuse(capsys, out, "--data", data, "--spec", bad_spec), out, "bad.yaml",
                  "YAML")
  _assert_refused(_refuse(capsys, out, "--data", data, "--spec", spec, "--clients-per-round", 4),
                  out, "--clients-per-round 4", "3 sites")
  _assert_refused(_refuse(capsys, out, "--examples", tmp_path, "--spec", spec), out,
                  "Split-train")
  _assert_refused(_refuse(capsys, out, "--prepared", data, "--spec", spec), out,
                  "--split-buckets")
  _assert_refused(_refuse(capsys, out, "--prepared", data, "--spec", spec, "--split-buckets",
                          "train=8,eval"), out, "--split-buckets", "name=count")
  _assert_refused(_refuse(capsys, out, "--data", data, "--spec", spec, "--split-buckets",
                          "train=8,eval=1,test=1"), out, "--split-buckets", "--prepared")
  import sys
  assert "tensorflow_federated" not in sys.modules  # TFF only ever runs in child sessions
