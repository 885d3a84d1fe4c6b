"""Clinics or hospitals of uneven size, shared by the simulators."""

import numpy as np


def draw_sites(rng: np.random.Generator, n: int, sites: int) -> np.ndarray:
  """Site index of each of n rows, with Zipf-like site sizes (site 0 the largest)."""
  weights = 1.0 / np.arange(1, sites + 1) ** 0.8
  return rng.choice(sites, size=n, p=weights / weights.sum())


def site_names(indices: np.ndarray, prefix: str) -> list:
  return [f"{prefix}{k:02d}" for k in indices]
