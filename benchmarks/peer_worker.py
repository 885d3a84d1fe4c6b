"""Fits one peer DP generator (MST or AIM, from dpmm) and samples a synthetic table.

Runs in the peers' own runtime (.venv-peers, requirements/peers.lock), never in the
pipeline's: it imports only the standard library, numpy, pandas and dpmm, and takes
its flags with argparse because absl is not in that runtime.
benchmarks/peer_generators.py starts it once per generator, epsilon and seed:

  .venv-peers/bin/python benchmarks/peer_worker.py --generator mst --epsilon 1 \
      --delta 1e-5 --seed 0 --train train.csv --domain domain.json --out synthetic.csv

domain.json lists the modeled columns in order, each
  {"name", "kind": "categorical", "values": [...]}  or
  {"name", "kind": "numeric", "min", "max", "integer", "bins"}
with public bounds only (the dataset spec's). Numeric columns are cut into `bins`
equal bins over [min, max] (an integer column with no more values than bins gets one
bin per value); a sampled bin is drawn back as a uniform value inside it, rounded for
integer columns. The timings go to <out>.json.
"""

import argparse
import dataclasses
import json
import time
from importlib import metadata
from typing import Dict, List

import numpy as np
import pandas as pd

GENERATORS = ("mst", "aim")


@dataclasses.dataclass(frozen=True)
class Column:
  """One modeled column and how it maps to the integer codes the generators model."""
  name: str
  kind: str
  values: tuple = ()
  min: float = 0.0
  max: float = 0.0
  integer: bool = False
  bins: int = 32

  @property
  def one_bin_per_value(self) -> bool:
    # An integer column such as a count of drug classes keeps its exact values.
    return self.integer and self.max - self.min + 1 <= self.bins

  @property
  def size(self) -> int:
    if self.kind == "categorical":
      return len(self.values)
    return int(self.max - self.min + 1) if self.one_bin_per_value else self.bins

  def encode(self, cells: pd.Series) -> np.ndarray:
    if self.kind == "categorical":
      codes = cells.map({str(v): i for i, v in enumerate(self.values)})
      if codes.isna().any():
        raise ValueError(f"column {self.name}: values outside {list(self.values)}")
      return codes.to_numpy(np.int64)
    x = cells.astype(float).to_numpy()
    if self.one_bin_per_value:
      return np.clip(np.round(x - self.min), 0, self.size - 1).astype(np.int64)
    width = (self.max - self.min) / self.bins
    return np.clip(np.floor((x - self.min) / width), 0, self.bins - 1).astype(np.int64)

  def decode(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    codes = np.asarray(codes, np.int64)
    if self.kind == "categorical":
      return np.asarray(self.values, dtype=object)[codes]
    if self.one_bin_per_value:
      return (self.min + codes).astype(np.int64)
    width = (self.max - self.min) / self.bins
    x = self.min + (codes + rng.uniform(0.0, 1.0, len(codes))) * width
    x = np.clip(x, self.min, self.max)
    return np.round(x).astype(np.int64) if self.integer else np.round(x, 6)


def read_domain(path: str) -> List[Column]:
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  return [Column(name=c["name"], kind=c["kind"], values=tuple(c.get("values", ())),
                 min=float(c.get("min", 0.0)), max=float(c.get("max", 0.0)),
                 integer=bool(c.get("integer", False)), bins=int(c.get("bins", 32)))
          for c in raw["columns"]]


def _model(args: argparse.Namespace, domain: Dict[str, int]):
  from numpy.random import RandomState  # pylint: disable=g-import-not-at-top
  rng = RandomState(args.seed)
  # n_jobs=1: dpmm's default starts a multiprocessing pool; the benchmark runs one
  # worker at a time under nice, on a shared machine.
  if args.generator == "mst":
    from dpmm.models.mst import MSTGM  # pylint: disable=g-import-not-at-top
    return MSTGM(epsilon=args.epsilon, delta=args.delta, n_iters=args.iters, compress=True,
                 domain=domain, random_state=rng, n_jobs=1)
  from dpmm.models.aim import AIMGM  # pylint: disable=g-import-not-at-top
  return AIMGM(epsilon=args.epsilon, delta=args.delta, n_iters=args.iters, compress=True,
               domain=domain, random_state=rng, n_jobs=1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--generator", required=True, choices=GENERATORS)
  parser.add_argument("--epsilon", type=float, required=True)
  parser.add_argument("--delta", type=float, required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--iters", type=int, required=True,
                      help="iterations of dpmm's inference (its n_iters)")
  parser.add_argument("--rows", type=int, default=0, help="synthetic rows (0: as many as train)")
  parser.add_argument("--train", required=True)
  parser.add_argument("--domain", required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()

  from dpmm.pipelines.base import GenerativePipeline  # pylint: disable=g-import-not-at-top

  columns = read_domain(args.domain)
  raw = pd.read_csv(args.train, dtype=str, keep_default_na=False)
  codes = pd.DataFrame({c.name: c.encode(raw[c.name]) for c in columns})
  domain = {c.name: c.size for c in columns}
  rows = args.rows or len(raw)

  start = time.perf_counter()
  # No dpmm binner: the codes above already sit on the spec's public bins, so the
  # domain costs no privacy budget.
  pipeline = GenerativePipeline(gen=_model(args, domain), proc=None)
  pipeline.fit(codes, domain=domain, random_state=args.seed)
  fitted = time.perf_counter()
  sampled = pipeline.generate(n_records=rows, random_state=args.seed + 1)
  done = time.perf_counter()

  rng = np.random.default_rng(args.seed + 2)
  synthetic = pd.DataFrame({c.name: c.decode(sampled[c.name].to_numpy(), rng) for c in columns})
  synthetic.to_csv(args.out, index=False)
  with open(args.out + ".json", "w", encoding="utf-8") as f:
    json.dump({"generator": args.generator, "epsilon": args.epsilon, "delta": args.delta,
               "seed": args.seed, "iters": args.iters, "rows": rows,
               "fit_seconds": fitted - start, "sample_seconds": done - fitted,
               "package": f"dpmm {metadata.version('dpmm')}"}, f, indent=2)


if __name__ == "__main__":
  main()
