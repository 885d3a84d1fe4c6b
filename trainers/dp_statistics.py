"""Differentially private summary statistics of the training patients, and the Gaussian
copula they define.

Every statistic is a Gaussian mechanism on a sum over rows; its noise standard deviation
is its noise multiplier times its L2 sensitivity under "one patient added or removed"
(clinical_dp/sensitivity.py derives each: histograms, second_moment), and the multiplier
is charged to the release's privacy plan (trainers/accounting.py,
`released_noise_multipliers`), in the same accountant as any DP training that follows.
The statistics before their noise are functions of their own (`released_histograms`,
`second_moment`), so that tests can enumerate neighbouring tables through them.
Everything after the noise is post-processing.

A patient is read as m discrete codes: each numeric value (series visit by visit, then
static numeric, on the spec's [0, 1] scale) by its bin among `bins` equal bins of its
binning scale, each categorical value by its category.
- binning scales (scale_weight > 0): laboratory values, doses and lengths of stay fill a
  sliver of their public range, so equal bins of the public bounds put a skewed column in
  one or two bins, and values drawn uniformly within them lose its shape. Each numeric
  column (a series: all its visits together) first releases a DP estimate of its CDF: a
  tree of `scale_levels` levels over its public range, each node `scale_branching`
  children, every level a histogram that a row adds one count to (a series' visits 1 / V
  each), so together L2 sensitivity sqrt(levels x columns) (clinical_dp/sensitivity.py:
  histograms). Node counts are estimated top down (each node's children by norm-sub of
  their noisy counts to its own estimate, evenly below `scale_split` noise deviations per
  child). The binning scale is the mix `scale_mix` x DP CDF + `scale_public` x the
  public scale + the rest x the uniform scale of the range the tree's significant nodes
  cover (a margin wider), for a column whose DP 5%-95% range is narrower than
  `scale_spread` of its public range; the others keep the public scale, decided from the
  released tree alone.
  Bins are equal on the binning scale, so they follow where the data lie, and a value uniform within a bin follows the DP CDF's
  shape at the tree's leaf width. Mixing in the public scale keeps the scale strictly
  increasing (invertible) and gives a few-valued column's values bins of their own.
- marginals: per label class, one histogram per code; a row adds one count to each of
  its m histograms, so together they have L2 sensitivity sqrt(m). Negative and spurious
  noisy counts are removed by shifting every count of a histogram down by one amount and
  clipping at zero so that the total stays the noisy class size ("norm-sub").
  Missing values modeled (features.PatientLayout): a nullable value's histogram ends with
  a "missing" bin, split afterwards into its values' probabilities and its indicator's;
  a visit after dropout counts nowhere, and the dropout code's histogram, weighted, is the
  dropout curve (released_histograms). In the correlation a missing static value scores 0
  and its indicator carries the hole; the copula samples whole trajectories, and apply_missingness masks
  them after the sampled dropout, so monotone patterns hold by construction.
- correlation: the second moment of the rows' normal scores (each value through its
  class's DP marginal CDF), each row's score vector x scaled to norm at most 1 (from
  sqrt(m) * clip) and then each coordinate to [-c, c]; the released upper triangle of
  x x^T then has L2 sensitivity sqrt((1 + c^2) / 2) (correlation_sensitivity). One
  matrix for all patients (pooled), or one per class, each class's pulled towards their
  pooled sum by as much as the noise explains their difference (shrunk_class_correlations,
  post-processing). A visit's correlations pulled towards the same correlations of its
  neighbouring visits as far as the noise explains their difference
  (smooth_visit_correlations, post-processing). Made a positive definite correlation
  afterwards.
Sampling the copula: z ~ N(0, R_y), u = Phi(z), each code by the inverse of its marginal
CDF, a numeric value uniform within its bin (so no value leaves the public bounds and no
column piles up at a bound).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import special

from clinical_dp import sensitivity
from clinical_dp.spec import DROPOUT_KEY
from trainers.features import PatientLayout, apply_missingness, snap_to_atoms
from trainers.preprocessing import missing_key

_SCORE_EDGE = 1e-6  # normal scores are taken of u in [edge, 1 - edge]


@dataclasses.dataclass(frozen=True)
class StatisticsConfig:
  """What the release measures and how its share of the budget is divided."""
  bins: int = 32
  by_class: bool = True  # marginals per label class, else one set for all patients
  pooled_correlation: bool = True  # one correlation of within-class scores for all patients
  marginal_weight: float = 0.5  # share of the statistics' 1 / sigma^2 spent on marginals
  correlation_clip: float = 1.0  # score vectors scaled to norm <= clip * sqrt(m)
  # ... and then each coordinate of the scaled vector to [-c, c]: the upper triangle of
  # a row's x x^T then has L2 norm sqrt((|x|^4 + sum x_i^4) / 2) <= sqrt((1 + c^2) / 2),
  # so the correlation needs that much less noise (c >= 1: no clip, sensitivity 1).
  coordinate_clip: float = 0.35
  # Each visit's histogram pulled towards its neighbouring visits' by as much as the noise
  # explains their difference (smooth_visits); off for a plain copula (the baselines).
  smooth_visits: bool = False
  # Each correlation between a visit and another code pulled towards the same correlation
  # one visit earlier and later (smooth_visit_correlations; post-processing); off for a
  # plain copula.
  smooth_visit_correlations: bool = False
  # Share of the statistics' 1 / sigma^2 spent on binning scales (module docstring);
  # 0: equal bins of the public bounds (the baselines).
  scale_weight: float = 0.0
  scale_branching: int = 4
  scale_levels: int = 5  # 4^5 = 1024 leaves: 0.05 mg/dL of a 0-50 range
  scale_mix: float = 0.8
  # Of the rest of the binning scale (1 - scale_mix), the share kept uniform over the
  # whole public range; the remainder is uniform over the range the DP tree shows values
  # in (its nodes the noise cannot explain), scale_held_margin wider on each side. The
  # public share keeps the scale strictly increasing, so every value stays reachable;
  # spread over the whole public range (0.2, the remainder 0) it gave the empty part of a
  # skewed lab's range two of eleven bins, which the marginals' noise filled: synthetic
  # 99th percentiles 2 to 9 times the real ones on the skewed-lab test table. Settings
  # sweep, seed 11, two seeds, 0.01 against 0.2: skewed median KS 0.036 / 0.045, Spearman
  # 0.830 / 0.824; labs Spearman 0.876 / 0.848; icu 0.985 / 0.980; sprint level.
  scale_public: float = 0.01
  scale_held_margin: float = 0.25
  # A node's count is split among its children only when their mean count would be at
  # least this many noise standard deviations, else evenly.
  scale_split: float = 4.0
  # A column whose DP 5%-95% quantile range spans this share of its public range or more
  # keeps equal bins of the public bounds (identity scale): its values fill the range,
  # and following the scale's noise would cost more than its bins gain (per-visit
  # medians of a trial's blood pressure).
  scale_spread: float = 0.35
  # With missing values modeled, each row adds a weight w > 1 to the dropout code's
  # histogram (sensitivity sqrt(m - 1 + w^2)): the dropout curve is a running sum of its
  # bins, so their noise adds up along the visits. w^2 = 1 + dropout_share x (m - 1), so
  # the other m - 1 histograms get sqrt(1 + dropout_share) more noise at most (9.5%) and
  # the dropout curve w times less: w = 3.1 for the simulated trial's 44 histograms (its
  # dropout curve's error per class from 0.017-0.045 to 0.006-0.023 over six draws).
  dropout_share: float = 0.2

  def dropout_weight(self, num_released: int) -> float:
    return float(np.sqrt(1.0 + self.dropout_share * max(num_released - 1, 0)))


def default_bins(num_rows: int) -> int:
  """Bins per numeric column for a table of num_rows: more rows afford finer bins before
  the noise summed over a column's bins outweighs what finer bins gain (0.75 n^(1/3),
  from 8 to 32; chosen on simulated tables: 13 on 5800 rows, 20 on 18000)."""
  return int(np.clip(round(0.75 * num_rows ** (1 / 3)), 8, 32))


@dataclasses.dataclass(frozen=True)
class CodeLayout:
  """Which flat feature columns form each code: numeric columns one each (binned),
  categorical one-hot blocks one each; with missing values modeled, which code is each
  nullable value's indicator and which the series' dropout code (features.PatientLayout)."""
  numeric: int  # the first `numeric` flat columns are numeric
  categories: Tuple[int, ...]  # sizes of the one-hot blocks that follow
  bins: int
  num_series: int = 0  # the first num_visits x num_series codes, visit by visit
  num_visits: int = 0
  nullable: Tuple[Tuple[int, int], ...] = ()  # (value code, its indicator code)
  dropout: Optional[int] = None  # the code of the number of visits observed
  patient: Optional[PatientLayout] = None

  @classmethod
  def from_layout(cls, layout: PatientLayout, bins: int) -> "CodeLayout":
    series = layout.num_visits * layout.num_series
    numeric = series + len(layout.numeric_static)
    code = {name: series + i for i, name in enumerate(layout.numeric_static)}
    code.update({name: numeric + j for j, (name, _) in enumerate(layout.categorical_static)})
    nullable = tuple((code[name], code[missing_key(name)]) for name in layout.nullable_static)
    return cls(numeric, tuple(size for _, size in layout.categorical_static), bins,
               layout.num_series, layout.num_visits, nullable,
               code.get(DROPOUT_KEY) if layout.has_dropout else None, layout)

  @property
  def indicator_codes(self) -> List[int]:
    """Codes not released on their own: an indicator is read off its value's histogram."""
    return [indicator for _, indicator in self.nullable]

  @property
  def num_released(self) -> int:
    """Histograms the marginals release, m: one per code but the indicators."""
    return self.num_codes - len(self.nullable)

  def histogram_weights(self, dropout_weight: float) -> Dict[int, float]:
    """{released code: the weight a row adds to its histogram}: 1, the dropout code's
    dropout_weight."""
    return {j: dropout_weight if j == self.dropout else 1.0 for j in range(self.num_codes)
            if j not in self.indicator_codes}

  def marginal_sensitivity(self, dropout_weight: float) -> float:
    """L2 sensitivity of released_histograms (clinical_dp/sensitivity.py)."""
    return sensitivity.weighted_histograms(self.histogram_weights(dropout_weight).values())

  def observed(self, codes: np.ndarray) -> np.ndarray:
    """(rows, m) codes -> (rows, m) bool: whether each row's value of each code was
    observed (a nullable value whose indicator says missing: not; a visit after dropout:
    not)."""
    observed = np.ones(codes.shape, bool)
    for value, indicator in self.nullable:
      observed[:, value] = codes[:, indicator] == 0
    if self.dropout is not None:
      for visit in range(self.num_visits):
        for series in range(self.num_series):
          observed[:, visit * self.num_series + series] = codes[:, self.dropout] > visit
    return observed

  def visits_of(self, series: int) -> List[int]:
    """The codes of one series, visit by visit."""
    return [visit * self.num_series + series for visit in range(self.num_visits)]

  @property
  def scale_columns(self) -> List[List[int]]:
    """The numeric codes that share a binning scale: each series' visits, then each
    static numeric code alone."""
    series = self.num_series * self.num_visits
    return ([self.visits_of(s) for s in range(self.num_series)]
            + [[j] for j in range(series, self.numeric)])

  @property
  def num_codes(self) -> int:
    return self.numeric + len(self.categories)

  @property
  def sizes(self) -> List[int]:
    return [self.bins] * self.numeric + list(self.categories)

  def encode(self, flat: np.ndarray) -> np.ndarray:
    """(rows, flat width) on [0, 1] -> (rows, m) integer codes."""
    codes = [np.clip(np.floor(flat[:, :self.numeric] * self.bins), 0, self.bins - 1)]
    offset = self.numeric
    for size in self.categories:
      codes.append(np.argmax(flat[:, offset:offset + size], axis=1)[:, None])
      offset += size
    return np.concatenate(codes, axis=1).astype(np.int64)

  def decode(self, codes: np.ndarray, within_bin: np.ndarray) -> np.ndarray:
    """Codes and a position in [0, 1) within each numeric bin -> flat features."""
    parts = [(codes[:, :self.numeric] + within_bin[:, :self.numeric]) / self.bins]
    for j, size in enumerate(self.categories):
      parts.append(np.eye(size)[codes[:, self.numeric + j]])
    return np.concatenate(parts, axis=1).astype(np.float32)


@dataclasses.dataclass
class BinningScales:
  """Each numeric code's binning scale: the piecewise-linear map from the public [0, 1]
  scale to the scale its bins are equal on, by its values at the tree's leaf edges."""
  knots: np.ndarray  # (scales, leaves + 1), strictly increasing from 0 to 1
  scale_of_code: np.ndarray  # (numeric codes,) -> row of knots

  @property
  def code_knots(self) -> np.ndarray:
    """(numeric codes, leaves + 1): each code's scale."""
    return self.knots[self.scale_of_code]

  def _grid(self) -> np.ndarray:
    return np.linspace(0.0, 1.0, self.knots.shape[1])

  @property
  def public_codes(self) -> np.ndarray:
    """(numeric codes,) bool: the codes whose scale is the public one (equal bins)."""
    return np.all(self.knots == self._grid(), axis=1)[self.scale_of_code]

  def to_binning(self, numeric: np.ndarray) -> np.ndarray:
    """(rows, numeric codes) on the public scale -> on the binning scale: each value to
    the middle of its leaf's span. A leaf is narrow on the public scale, but one that
    holds an atom (a whole number, a lab's reporting step) spans a wide stretch of the
    binning scale; its left edge would put the atom among the bins below it."""
    leaves = self.knots.shape[1] - 1
    leaf = np.clip(np.floor(numeric * leaves), 0, leaves - 1).astype(np.int64)
    public = self.public_codes
    return np.stack([numeric[:, j] if public[j] else
                     (knots[leaf[:, j]] + knots[leaf[:, j] + 1]) / 2
                     for j, knots in enumerate(self.code_knots)], axis=1)

  def from_binning(self, numeric: np.ndarray) -> np.ndarray:
    """The inverse of to_binning."""
    grid = self._grid()
    return np.stack([np.interp(numeric[:, j], knots, grid)
                     for j, knots in enumerate(self.code_knots)], axis=1)


@dataclasses.dataclass
class DpCopula:
  """The released statistics: per group (label class, or one group), each code's bin
  probabilities and the normal-score correlation; the noisy group sizes; the numeric
  codes' binning scales (None: equal bins of the public bounds)."""
  layout: CodeLayout
  probabilities: List[List[np.ndarray]]  # [group][code] -> (size,) summing to 1
  correlations: List[np.ndarray]  # [group] -> (m, m)
  group_sizes: np.ndarray  # noisy, post-processed to be positive
  scales: Optional[BinningScales] = None

  @property
  def by_class(self) -> bool:
    return len(self.probabilities) == 2

  def sample(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat features of synthetic patients with the given labels (0 / 1)."""
    labels = np.asarray(labels).reshape(-1)
    groups = labels if self.by_class else np.zeros_like(labels)
    out = np.zeros((len(labels), self.layout.numeric + sum(self.layout.categories)), np.float32)
    for group in np.unique(groups):
      rows = np.flatnonzero(groups == group)
      normal = rng.standard_normal((len(rows), self.layout.num_codes))
      z = normal @ np.linalg.cholesky(self.correlations[group]).T
      out[rows] = self.decode_uniform(special.ndtr(z), group, rng)
    if self.layout.patient is not None:
      out = apply_missingness(out, self.layout.patient).numpy()
    return out

  def decode_uniform(self, u: np.ndarray, group: int, rng: np.random.Generator) -> np.ndarray:
    """Copula uniforms (rows, m) -> flat features through group's marginals: the inverse
    of each piecewise-linear CDF, so a value's place within its bin follows u too (the
    generator's CopulaDecoder computes the same in TensorFlow)."""
    del rng  # the decoding is deterministic in u
    codes = np.zeros(u.shape, np.int64)
    within = np.zeros(u.shape)
    for j, p in enumerate(self.probabilities[group]):
      cdf = np.cumsum(p)
      codes[:, j] = np.minimum(np.searchsorted(cdf[:-1], u[:, j], side="right"), len(p) - 1)
      low = cdf[codes[:, j]] - p[codes[:, j]]
      within[:, j] = np.clip((u[:, j] - low) / np.maximum(p[codes[:, j]], 1e-9), 0.0, 1.0)
    flat = self.layout.decode(codes, within)
    numeric = self.layout.numeric
    low, high = codes[:, :numeric] / self.layout.bins, (codes[:, :numeric] + 1) / self.layout.bins
    if self.scales is not None:
      flat[:, :numeric] = self.scales.from_binning(flat[:, :numeric])
      low, high = self.scales.from_binning(low), self.scales.from_binning(high)
    if self.layout.patient is not None and numeric:
      flat[:, :numeric] = snap_to_atoms(
          flat[:, :numeric], low, high, self.layout.patient,
          None if self.scales is None else self.scales.public_codes).numpy()
    return flat


def statistics_noise(config: StatisticsConfig, total_noise: float) -> Tuple[float, ...]:
  """Noise multipliers (marginals, correlation[, binning scales]) that together spend
  what one Gaussian mechanism of noise `total_noise` would (1 / sigma^2 adds up):
  scale_weight of it on the binning scales, the rest divided by marginal_weight;
  marginals alone when marginal_weight is 1 (independent columns, no scales)."""
  weight = config.marginal_weight
  if weight >= 1:
    if config.scale_weight:
      raise ValueError("binning scales need a correlation release (marginal_weight < 1)")
    return (total_noise,)
  if not 0 < config.scale_public <= 1 - config.scale_mix + 1e-9:
    raise ValueError(f"scale_public must be in (0, 1 - scale_mix], got {config.scale_public}")
  if not 0 <= config.scale_weight < 1 or not 0 <= config.scale_mix < 1:
    raise ValueError(f"scale_weight and scale_mix must be in [0, 1), got "
                     f"{config.scale_weight} and {config.scale_mix}")
  rest = 1.0 - config.scale_weight
  noise = (total_noise / np.sqrt(rest * weight), total_noise / np.sqrt(rest * (1 - weight)))
  if config.scale_weight:
    noise += (total_noise / np.sqrt(config.scale_weight),)
  return noise


def release(flat: np.ndarray, labels: np.ndarray, codes_layout: CodeLayout,
            config: StatisticsConfig, noise: Tuple[float, ...],
            rng: np.random.Generator) -> DpCopula:
  """The DP statistics of the rows `flat` (rows, flat width on [0, 1]) with labels 0 / 1.

  `noise` is statistics_noise's (marginals[, correlation[, binning scales]]), each
  relative to its statistic's per-row sensitivity (the caller accounts them, once each);
  without a correlation noise the columns are independent (identity correlation)."""
  marginal_noise = noise[0]
  scales = None
  if len(noise) > 2:
    scales = release_scales(flat, codes_layout, config, noise[2], rng)
    flat = flat.copy()
    flat[:, :codes_layout.numeric] = scales.to_binning(flat[:, :codes_layout.numeric])
  codes = codes_layout.encode(flat)
  labels = np.asarray(labels).reshape(-1)
  groups = labels if config.by_class else np.zeros_like(labels)
  num_groups = 2 if config.by_class else 1
  m = codes_layout.num_codes
  dropout_weight = config.dropout_weight(codes_layout.num_released)
  marginal_scale = marginal_noise * codes_layout.marginal_sensitivity(dropout_weight)
  weights = codes_layout.histogram_weights(dropout_weight)
  probabilities, sizes = [], []
  for group in range(num_groups):
    counts = released_histograms(codes[groups == group], codes_layout, dropout_weight)
    # the noise is added to the weighted counts: dividing by the weight is post-processing
    noisy = {j: (h + rng.normal(0, marginal_scale, len(h))) / weights[j]
             for j, h in counts.items()}
    size, group_probabilities = _marginals_from_noisy(noisy, codes_layout, marginal_scale)
    sizes.append(size)
    probabilities.append(group_probabilities)
  if config.smooth_visits:
    probabilities = [smooth_visits(group, codes_layout, marginal_scale / size)
                     for group, size in zip(probabilities, sizes)]
  if len(noise) == 1:
    return DpCopula(codes_layout, probabilities, [np.eye(m)] * num_groups, np.asarray(sizes))
  scaled = np.zeros((len(codes), m))
  for group in range(num_groups):
    rows = np.flatnonzero(groups == group)
    scores = _normal_scores(flat[rows], codes[rows], codes_layout, probabilities[group], rng)
    # a missing static value scores as the middle of its distribution: its indicator,
    # a code of its own, carries the hole (a visit after dropout keeps its carried value)
    for value, indicator in codes_layout.nullable:
      scores[codes[rows, indicator] == 1, value] = 0.0
    scaled[rows] = clipped_score_vectors(scores, config)
  correlation_noise = noise[1] * correlation_sensitivity(config.coordinate_clip)
  if config.pooled_correlation:
    correlation = _correlation_from_noisy(
        second_moment(scaled) + _symmetric_noise(m, correlation_noise, rng), codes_layout,
        config, correlation_noise)
    correlations = [correlation] * num_groups
  else:  # disjoint groups: one patient moves one group's moment, so the noise is shared
    moments = [second_moment(scaled[groups == g]) + _symmetric_noise(m, correlation_noise, rng)
               for g in range(num_groups)]
    correlations = [_correlation_from_noisy(c, codes_layout, config, correlation_noise)
                    for c in shrunk_class_correlations(moments, correlation_noise)]
  return DpCopula(codes_layout, probabilities, correlations, np.asarray(sizes), scales)


def release_scales(flat: np.ndarray, codes_layout: CodeLayout, config: StatisticsConfig,
                   noise: float, rng: np.random.Generator) -> BinningScales:
  """The numeric codes' binning scales (module docstring) from scale_tree_counts with
  Gaussian noise of `noise` x its sensitivity; all rows together (both classes)."""
  columns = codes_layout.scale_columns
  observed = codes_layout.observed(codes_layout.encode(flat))[:, :codes_layout.numeric]
  counts = scale_tree_counts(flat, columns, config.scale_branching, config.scale_levels,
                             observed)
  scale = noise * sensitivity.histograms(config.scale_levels * len(columns))
  return scales_from_noisy_trees(counts + rng.normal(0, scale, counts.shape), codes_layout,
                                 config, scale)


def scales_from_noisy_trees(noisy: np.ndarray, codes_layout: CodeLayout,
                            config: StatisticsConfig, node_noise: float) -> BinningScales:
  """Post-processing of the scales' noisy trees (scales, nodes), whose counts have noise
  of standard deviation node_noise, into BinningScales."""
  columns = codes_layout.scale_columns
  leaves = config.scale_branching ** config.scale_levels
  grid = np.linspace(0.0, 1.0, leaves + 1)
  knots = []
  smallest_split = config.scale_split * config.scale_branching * node_noise
  for row in noisy:
    cdf = np.concatenate([[0.0], np.cumsum(_leaf_masses(
        row, config.scale_branching, config.scale_levels, smallest_split))])
    # where the mass lies, read from the nodes the noise cannot explain (3 deviations):
    # the positive noise of empty nodes would spread it
    significant = np.concatenate([[0.0], np.cumsum(_leaf_masses(
        np.where(row >= 3 * node_noise, row, 0.0), config.scale_branching,
        config.scale_levels, smallest_split))])
    spread = np.interp(0.95, significant, grid) - np.interp(0.05, significant, grid)
    concentrated = spread < config.scale_spread
    if concentrated:
      held = _held_range(significant, grid, config.scale_held_margin)
      knots.append(config.scale_mix * cdf + config.scale_public * grid
                   + (1 - config.scale_mix - config.scale_public) * held)
      knots[-1][-1] = 1.0
    else:
      knots.append(grid)  # the public scale, exactly
  knots = np.stack(knots)
  scale_of_code = np.zeros(codes_layout.numeric, np.int64)
  for index, codes in enumerate(columns):
    scale_of_code[codes] = index
  return BinningScales(knots, scale_of_code)


def _held_range(significant: np.ndarray, grid: np.ndarray, margin: float) -> np.ndarray:
  """The CDF (at the grid) of the uniform distribution over where `significant` (a CDF
  from the nodes the noise cannot explain) holds mass, widened by `margin` of its width on
  each side, within [0, 1]."""
  inside = np.flatnonzero((significant > 1e-9) & (significant < 1 - 1e-9))  # sums round
  if not inside.size:
    return grid
  low, high = grid[max(inside[0] - 1, 0)], grid[min(inside[-1] + 1, len(grid) - 1)]
  width = high - low
  low, high = max(low - margin * width, 0.0), min(high + margin * width, 1.0)
  return np.clip((grid - low) / max(high - low, 1e-12), 0.0, 1.0)


def scale_tree_counts(flat: np.ndarray, columns: List[List[int]], branching: int,
                      levels: int, observed: Optional[np.ndarray] = None) -> np.ndarray:
  """The binning scales' trees before their noise: per scale (a list of numeric codes),
  its levels' histograms side by side (branching, branching^2, ... nodes, equal parts of
  the public [0, 1] range), each row adding 1 / len(codes) for each of its codes' values
  that was observed (`observed`: (rows, numeric codes) bool; None: all)."""
  sizes = [branching ** level for level in range(1, levels + 1)]
  counts = np.zeros((len(columns), sum(sizes)))
  if observed is None:
    observed = np.ones((len(flat), max(max(c) for c in columns) + 1), bool)
  for index, codes in enumerate(columns):
    offset = 0
    for size in sizes:
      for code in codes:
        nodes = np.clip(np.floor(flat[:, code] * size), 0, size - 1).astype(np.int64)
        counts[index, offset:offset + size] += np.bincount(
            nodes, weights=observed[:, code].astype(np.float64), minlength=size) / len(codes)
      offset += size
  return counts


def _leaf_masses(noisy: np.ndarray, branching: int, levels: int,
                 smallest_split: float) -> np.ndarray:
  """A tree's leaf probabilities from its noisy level histograms: top down, each node's
  estimated count split among its children by norm-sub of their noisy counts, or evenly
  when it is below smallest_split (where the children's counts would be mostly noise,
  following them puts the mass on spikes a leaf apart and shifts medians)."""
  top = noisy[:branching]
  total = max(float(top.sum()), 1.0)
  mass = total * _norm_sub(top, total)
  offset = branching
  for _ in range(1, levels):
    children = noisy[offset:offset + len(mass) * branching].reshape(len(mass), branching)
    offset += len(mass) * branching
    mass = np.concatenate([
        parent * _norm_sub(own, parent) if parent >= smallest_split
        else np.full(branching, max(parent, 0.0) / branching)
        for parent, own in zip(mass, children)])
  return mass / mass.sum()


def smooth_visits(probabilities: List[np.ndarray], layout: CodeLayout,
                  noise: float) -> List[np.ndarray]:
  """Post-processing of one group's noisy histograms: each visit of a series is pulled
  towards the mean of its neighbouring visits by James-Stein shrinkage, keeping
  1 - expected / observed of their difference, where `expected` is the squared difference
  the noise alone would make (noise: one bin's noise sd on the probability scale). Visits
  whose distribution the noise cannot tell apart from their neighbours' (a plateau of a
  trajectory) average with them, up to equal weights; visits that move keep their own.
  On simulated trials (sprint seed 12, 40 noise draws at epsilon 1) the worst per-visit
  median SBP error's 90th percentile fell from 3.3 to 2.7 mmHg, median KS and
  correlation Spearman improved too."""
  smoothed = list(probabilities)
  for series in range(layout.num_series):
    codes = layout.visits_of(series)
    for visit, code in enumerate(codes):
      neighbours = [probabilities[codes[v]] for v in (visit - 1, visit + 1)
                    if 0 <= v < len(codes)]
      if not neighbours:
        continue
      own, around = probabilities[code], np.mean(neighbours, axis=0)
      expected = len(own) * noise ** 2 * (1 + 1 / len(neighbours))
      pulled = _pulled_towards(own, around, expected, len(neighbours))
      smoothed[code] = pulled / pulled.sum()
  return smoothed


def _pulled_towards(own: np.ndarray, around: np.ndarray, expected: float, neighbours):
  """Positive-part James-Stein, as smooth_visits and smooth_visit_correlations use it:
  `own` keeps 1 - expected / observed of its squared difference from `around` (the mean
  of its `neighbours` neighbours, a count per entry or one for all), where `expected` is
  what the noise alone would make; what it gives up moves it towards `around`, at most to
  equal weights with its neighbours."""
  keep = max(0.0, 1.0 - expected / max(float(np.sum((own - around) ** 2)), 1e-12))
  weight = (1.0 - keep) * np.asarray(neighbours) / (np.asarray(neighbours) + 1)
  return (1.0 - weight) * own + weight * around


def _correlation_from_noisy(moment: np.ndarray, layout: CodeLayout, config: StatisticsConfig,
                            noise: float) -> np.ndarray:
  """Post-processing of one noisy second moment (each entry's noise of standard deviation
  `noise`) into the released correlation: smoothed over visits where configured, then
  made a positive definite correlation."""
  if config.smooth_visit_correlations:
    moment = smooth_visit_correlations(moment, layout, noise)
  return _nearest_correlation(moment)


def smooth_visit_correlations(moment: np.ndarray, layout: CodeLayout,
                              noise: float) -> np.ndarray:
  """Post-processing of a noisy second moment (each entry's noise of standard deviation
  `noise`): every correlation that involves a visit is pulled towards the mean of the
  same correlation one visit earlier and one later (both codes of a visit pair moved
  together, so a pair keeps its lag; a static code stays), by positive-part James-Stein
  shrinkage per block of entries (a series against a series or a static code), as
  smooth_visits pulls marginals: a block keeps 1 - expected / observed of its entries'
  differences from their neighbours', where `expected` is what the noise alone would
  make (an entry's noise on the correlation scale is about noise / sqrt(M_ii M_jj)).

  A trial's visits are many codes of one kind, so most of a correlation matrix's entries
  are a visit's correlations, and a visit's correlations change slowly from one visit
  to the next; the noise on each does not. Returns a moment with the same diagonal."""
  visit_codes = layout.num_visits * layout.num_series
  if not visit_codes or layout.num_visits < 2:
    return moment
  diagonal = np.sqrt(np.clip(np.diag(moment), 1e-9, None))
  correlation = moment / np.outer(diagonal, diagonal)
  noise_var = (noise / np.outer(diagonal, diagonal)) ** 2
  m = len(moment)

  def shifted(code: int, step: int) -> Optional[int]:
    if code >= visit_codes:
      return code
    visit = code // layout.num_series + step
    return visit * layout.num_series + code % layout.num_series \
        if 0 <= visit < layout.num_visits else None

  def block(code: int) -> Tuple[str, int]:
    return ("series", code % layout.num_series) if code < visit_codes else ("code", code)

  blocks: Dict[Tuple, List] = {}
  for i in range(m):
    for j in range(i):
      if i >= visit_codes and j >= visit_codes:
        continue
      neighbours = []
      for step in (-1, 1):
        a, b = shifted(i, step), shifted(j, step)
        if a is not None and b is not None and a != b:
          neighbours.append((a, b))
      if neighbours:
        key = tuple(sorted((block(i), block(j))))
        blocks.setdefault(key, []).append((i, j, neighbours))
  smoothed = correlation.copy()
  for entries in blocks.values():
    own = np.array([correlation[i, j] for i, j, _ in entries])
    around = np.array([np.mean([correlation[a, b] for a, b in n]) for _, _, n in entries])
    counts = np.array([len(n) for _, _, n in entries])
    expected = sum(noise_var[i, j] + np.mean([noise_var[a, b] for a, b in n]) / len(n)
                   for i, j, n in entries)
    for (i, j, _), value in zip(entries, _pulled_towards(own, around, expected, counts)):
      smoothed[i, j] = smoothed[j, i] = value
  return smoothed * np.outer(diagonal, diagonal)


def correlation_sensitivity(coordinate_clip: float) -> float:
  """L2 sensitivity of the released upper triangle of sum x x^T over the rows'
  clipped_score_vectors (clinical_dp/sensitivity.py: second_moment)."""
  return sensitivity.second_moment(coordinate_clip)


def released_histograms(codes: np.ndarray, layout: CodeLayout,
                        dropout_weight: float = 1.0) -> Dict[int, np.ndarray]:
  """The marginals' histograms before their noise, {code: counts}, one per code but the
  indicators: a nullable value's histogram has its `bins` (or categories) and then a
  "missing" bin, so its indicator costs nothing more; a visit after a row's dropout
  counts nowhere, so each visit's marginal is that of the patients still observed (its
  carried-forward value counted there had moved the default trial's late visits toward
  the high blood pressure of those who leave: median KS 0.062 against 0.037, settings
  sweep, sprint seed 11; on the skewed-lab test table, where the copula's link of dropout
  to the values masks more of them, 0.043 against 0.052); the dropout code's counts are
  weighted by dropout_weight. A row adds its weight to one bin of each: L2 sensitivity
  layout.marginal_sensitivity(dropout_weight) (clinical_dp/sensitivity.py)."""
  observed = layout.observed(codes)
  indicators = dict(layout.nullable)
  histograms = {}
  for j, size in enumerate(layout.sizes):
    if j in layout.indicator_codes:
      continue
    counts = np.bincount(codes[observed[:, j], j], minlength=size).astype(np.float64)
    if j in indicators:
      counts = np.append(counts, float(np.sum(~observed[:, j])))
    histograms[j] = counts * (dropout_weight if j == layout.dropout else 1.0)
  return histograms


# A "missing" bin whose noisy count is below this many noise deviations is read as empty:
# a column the table never leaves empty would otherwise get a few synthetic holes from
# the noise alone (0.2-0.6% of rows on the labs table); a true rate that small is lost.
MISSING_BIN_FLOOR = 2.0


def _marginals_from_noisy(noisy: Dict[int, np.ndarray], layout: CodeLayout,
                          noise_sd: float) -> Tuple[float, List[np.ndarray]]:
  """Post-processing of one group's noisy released_histograms (each count's noise of
  standard deviation noise_sd): (the group's size, each code's probabilities). Every
  histogram but a visit's after dropout counts every row of the group, so their noisy
  totals average to its size; a visit's counts the rows still observed, its own noisy
  total (made its size, the tails its norm-sub would clip at the group's size stay); a
  nullable value's histogram splits into its values' probabilities and its indicator's
  [observed, missing]."""
  noisy = dict(noisy)
  for value, _ in layout.nullable:
    if noisy[value][-1] < MISSING_BIN_FLOOR * noise_sd:
      noisy[value] = np.append(noisy[value][:-1], 0.0)
  visits = set(range(layout.num_visits * layout.num_series)) if layout.dropout is not None \
      else set()
  size = max(float(np.mean([h.sum() for j, h in noisy.items() if j not in visits])), 1.0)
  probabilities: List[np.ndarray] = [np.zeros(0)] * layout.num_codes
  for j, counts in noisy.items():
    probabilities[j] = _norm_sub(counts, max(float(counts.sum()), 1.0) if j in visits else size)
  for value, indicator in layout.nullable:
    with_missing = probabilities[value]
    kept = with_missing[:-1].sum()
    probabilities[value] = (with_missing[:-1] / kept if kept > 0
                            else np.full(len(with_missing) - 1, 1.0 / (len(with_missing) - 1)))
    probabilities[indicator] = np.array([kept, with_missing[-1]])
  return size, probabilities


def shrunk_class_correlations(moments: List[np.ndarray], noise: float) -> List[np.ndarray]:
  """Each class's correlation pulled towards the pooled one by as much as the noise
  explains their difference (positive-part James-Stein; post-processing of the released
  noisy moments, so free).

  `moments` are the classes' noisy second moments (sums over their rows), each entry with
  noise of standard deviation `noise`. An off-diagonal entry of a class's correlation
  M_ij / sqrt(M_ii M_jj) then carries noise of variance about noise^2 / (M_ii M_jj); the
  pooled correlation, from the sum of the moments, has far less. Where the classes'
  correlations differ by no more than that noise, their difference is noise and each class
  gets the pooled correlation (on the skewed-lab test table per class correlations had
  cost 0.07 of correlation Spearman); where they differ by more (how medication follows
  blood pressure in each arm of the simulated trial), the classes keep that much of their
  own."""
  def normalized(moment):
    diagonal = np.sqrt(np.clip(np.diag(moment), 1e-9, None))
    return moment / np.outer(diagonal, diagonal), np.outer(diagonal, diagonal)

  pooled, _ = normalized(sum(moments))
  upper = np.triu_indices(len(pooled), 1)
  own = [normalized(moment) for moment in moments]
  difference = sum(float(np.sum((c[upper] - pooled[upper]) ** 2)) for c, _ in own)
  expected = sum(float(np.sum(noise ** 2 / scale[upper] ** 2)) for _, scale in own)
  keep = max(0.0, 1.0 - expected / difference) if difference > 0 else 0.0
  return [pooled + keep * (c - pooled) for c, _ in own]


def clipped_score_vectors(scores: np.ndarray, config: StatisticsConfig) -> np.ndarray:
  """Each row's normal scores scaled to L2 norm <= 1 (from correlation_clip * sqrt(m)),
  then each coordinate clipped to [-c, c]: the vectors whose second moment is released."""
  bound = config.correlation_clip * np.sqrt(scores.shape[1])
  norms = np.linalg.norm(scores, axis=1, keepdims=True)
  scaled = scores / np.maximum(norms / bound, 1.0) / bound
  coordinate = min(config.coordinate_clip, 1.0)
  return np.clip(scaled, -coordinate, coordinate)


def second_moment(scaled: np.ndarray) -> np.ndarray:
  """The second moment before its noise: sum over rows of x x^T (its upper triangle,
  diagonal included, is what the noise makes private; the lower mirrors it)."""
  return scaled.T @ scaled


def _norm_sub(noisy: np.ndarray, total: float) -> np.ndarray:
  """Probabilities from noisy counts: shift all counts down by one amount, clip at 0,
  so that the kept mass equals the noisy total (small noisy counts in empty bins go).
  The shift is exact: with the counts sorted in decreasing order, it is
  (sum of the j largest - total) / j for the largest j whose j-th count stays above it
  (the projection onto a simplex of mass `total`)."""
  ordered = np.sort(noisy)[::-1]
  shifts = (np.cumsum(ordered) - total) / np.arange(1, len(ordered) + 1)
  above = np.flatnonzero(ordered > shifts)
  if total <= 0 or not len(above):
    return np.full(len(noisy), 1.0 / len(noisy))
  kept = np.clip(noisy - shifts[above[-1]], 0, None)
  if kept.sum() <= 0:
    return np.full(len(noisy), 1.0 / len(noisy))
  return kept / kept.sum()


def _normal_scores(flat: np.ndarray, codes: np.ndarray, layout: CodeLayout,
                   probabilities: List[np.ndarray], rng: np.random.Generator) -> np.ndarray:
  """Phi^-1 of each value's place in its DP marginal: a numeric value through the
  piecewise-linear CDF at its own position within its bin (kept off the bin's edges, where
  integer values sit); a category uniformly within its CDF step (distributional
  transform). Jittering numeric values too would drown the correlation of neighbouring
  visits in within-bin noise."""
  scores = np.zeros(codes.shape)
  for j, p in enumerate(probabilities):
    below = np.concatenate([[0.0], np.cumsum(p)[:-1]])
    if j < layout.numeric:
      position = np.clip(flat[:, j] * layout.bins - codes[:, j], 0.02, 0.98)
    else:
      position = rng.random(len(codes))
    u = below[codes[:, j]] + p[codes[:, j]] * position
    scores[:, j] = special.ndtri(np.clip(u, _SCORE_EDGE, 1 - _SCORE_EDGE))
  return scores


def _symmetric_noise(m: int, noise: float, rng: np.random.Generator) -> np.ndarray:
  """Gaussian noise on the upper triangle (diagonal included), mirrored: one draw per
  released entry, so the mechanism's sensitivity is that of the upper triangle."""
  upper = np.triu(rng.normal(0, noise, (m, m)))
  return upper + np.triu(upper, 1).T


def _nearest_correlation(moment: np.ndarray, floor: float = 1e-3) -> np.ndarray:
  """A positive definite correlation matrix from a noisy second moment."""
  diagonal = np.sqrt(np.clip(np.diag(moment), 1e-9, None))
  correlation = moment / np.outer(diagonal, diagonal)
  for _ in range(3):  # eigenvalue floor, then unit diagonal again
    values, vectors = np.linalg.eigh((correlation + correlation.T) / 2)
    correlation = (vectors * np.maximum(values, floor)) @ vectors.T
    scale = np.sqrt(np.diag(correlation))
    correlation = correlation / np.outer(scale, scale)
  return correlation
