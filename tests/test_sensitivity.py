"""Each stated sensitivity from first principles, and the accountant against the exact
Gaussian mechanism: never the accountant against itself.

(a) For each statistic a release computes, every neighbouring pair of a small table (one
    row added or removed) is enumerated through the project's own functions, and the
    largest L2 change must equal the sensitivity clinical_dp/sensitivity.py states (some
    pair reaches it: the positive control).
(b) A plan whose sampling rate is 1 is the Gaussian mechanism, whose exact epsilon
    (Balle and Wang 2018) is computed here from the normal CDF.
(c) Every trainer's plan and record, recomputed by an outside reviewer from the record's
    fields with the sensitivity of its relation (tests/privacy_recompute.py), states no
    epsilon below the recomputed one. This failed on the code before issue 23, whose
    fixed-size batches were accounted with the add-or-remove sensitivity under
    replace-one (the classifier's epsilon 1.000 recomputed to 2.26).
"""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize, stats

from clinical_dp import sensitivity
from clinical_dp.simulators import simulate
from tests import privacy_recompute
from trainers import accounting, dp_clipping, dp_statistics, dp_training
from trainers.classifier import ClassifierConfig
from trainers.dp_training import PrivacyBudget, plan_for
from trainers.features import PatientLayout
from trainers.gan import GanConfig


def _neighbours(rows: int):
  """(kept rows) of every table with one row of `rows` removed; adding that row back is
  the other direction of the same pair, with the same L2 distance."""
  for removed in range(rows):
    yield [i for i in range(rows) if i != removed]


def _largest_change(statistic, rows: int) -> float:
  full = statistic(list(range(rows)))
  return max(float(np.linalg.norm(full - statistic(kept))) for kept in _neighbours(rows))


def _small_flat_table(tmp_dir, rows=9, seed=3):
  """A small simulated trial as the statistics see it: flat features on [0, 1]."""
  from clinical_dp.simulators import write_simulated
  from clinical_dp.validation import validate_table
  from trainers import features
  frame, spec = simulate("sprint", patients=40, seed=seed)
  data, _ = write_simulated(str(tmp_dir), frame, spec)
  table = validate_table(data, spec).table.head(rows)
  inputs, labels = features.encode_table(table, spec)
  layout = PatientLayout.from_spec(spec)
  return features.flatten_inputs(inputs), labels.reshape(-1), layout


def _table_with_holes():
  """A hand-made table with every kind of hole `missing: model` keeps: a missing number,
  a missing category, dropout after each visit, no visit observed."""
  import pandas as pd
  from clinical_dp.spec import spec_from_dict
  from trainers import features
  spec = spec_from_dict({
      "name": "holes", "label_column": "y", "missing": "model",
      "static": [{"name": "a", "type": "numeric", "min": 0, "max": 10},
                 {"name": "c", "type": "categorical", "values": ["u", "v", "w"]}],
      "series": [{"name": "s", "min": 0, "max": 10, "columns": ["s1", "s2", "s3"]}]})
  nan = np.nan
  table = pd.DataFrame({
      "y": [0, 1, 0, 1, 0, 1, 1],
      "a": [1.0, nan, 5, 9.5, nan, 3, 7],
      "c": ["u", None, "v", "w", "u", None, "v"],
      "s1": [1, 2, nan, 4, 5, nan, 8], "s2": [2, 5, nan, nan, 6, nan, 9],
      "s3": [3, nan, nan, nan, 7, nan, 1]})
  inputs, labels = features.encode_table(table, spec)
  return features.flatten_inputs(inputs), labels.reshape(-1), PatientLayout.from_spec(spec)


@pytest.mark.parametrize("table", ["sprint", "holes"])
def test_histograms_move_by_sqrt_m_for_one_row_added_or_removed(tmp_path, table):
  """m is the number of released histograms: with missing values modeled a nullable
  value's histogram holds its "missing" bin (its indicator is not released on its own),
  a visit after dropout counts nowhere, and the dropout code is one more."""
  flat, _, layout = _small_flat_table(tmp_path) if table == "sprint" else _table_with_holes()
  codes_layout = dp_statistics.CodeLayout.from_layout(layout, bins=8)
  codes = codes_layout.encode(flat)
  m = codes_layout.num_released
  if table == "holes":
    assert codes_layout.nullable and codes_layout.dropout is not None
    assert m == codes_layout.num_codes - 2

  def released(kept, weight=1.0):
    histograms = dp_statistics.released_histograms(codes[kept], codes_layout, weight)
    return np.concatenate([histograms[j] for j in sorted(histograms)])

  stated = sensitivity.histograms(m)
  assert _largest_change(released, len(codes)) == pytest.approx(stated)
  # the dropout code's histogram at weight w: sqrt(m - 1 + w^2), as the release states
  weight = 3.0
  stated = codes_layout.marginal_sensitivity(weight)
  if codes_layout.dropout is not None:
    assert stated == pytest.approx(math.sqrt(m - 1 + weight ** 2))
  assert _largest_change(lambda kept: released(kept, weight), len(codes)) == pytest.approx(
      stated)
  # Under replace-one the same histograms move by sqrt(2 m): a relation's sensitivity is
  # its own (the first row replaced by a row with every code different; plain codes).
  plain = dataclasses.replace(codes_layout, nullable=(), dropout=None)

  def plain_counts(rows):
    histograms = dp_statistics.released_histograms(rows, plain)
    return np.concatenate([histograms[j] for j in sorted(histograms)])

  other = (codes[0] + 1) % np.asarray(codes_layout.sizes)
  replaced = plain_counts(np.vstack([other, codes[1:]]))
  assert np.linalg.norm(plain_counts(codes) - replaced) == pytest.approx(
      math.sqrt(2 * plain.num_codes))


def test_binning_scale_trees_move_by_sqrt_levels_times_columns(tmp_path):
  """Each scale's tree is `levels` histograms a row adds a total of one count to (a
  series spreads it over its visits): sqrt(levels x scales) at most, reached by a table
  of static columns only (one-hot rows); a series' visits spread over several nodes
  move it by less."""
  flat, _, layout = _small_flat_table(tmp_path)
  codes_layout = dp_statistics.CodeLayout.from_layout(layout, bins=8)
  columns = codes_layout.scale_columns
  assert len(columns) == layout.num_series + len(layout.numeric_static)

  observed = codes_layout.observed(codes_layout.encode(flat))[:, :codes_layout.numeric]

  def trees(kept, columns=columns):
    return dp_statistics.scale_tree_counts(flat[kept], columns, 3, 3, observed[kept]).ravel()

  stated = sensitivity.histograms(3 * len(columns))
  assert _largest_change(trees, len(flat)) <= stated + 1e-12
  static = [[j] for j in range(codes_layout.numeric)]
  assert _largest_change(lambda kept: trees(kept, static), len(flat)) == pytest.approx(
      sensitivity.histograms(3 * len(static)))


def test_the_label_count_moves_by_one(tmp_path):
  _, labels, _ = _small_flat_table(tmp_path)
  assert labels.sum() > 0
  largest = _largest_change(lambda kept: np.array([labels[kept].sum()], float), len(labels))
  assert largest == pytest.approx(sensitivity.count())


def _upper(moment):
  return moment[np.triu_indices(len(moment))]


def test_the_second_moment_never_moves_beyond_its_sensitivity_and_an_extreme_row_reaches_it():
  """Rows through the release's own clipping, and one crafted row that puts its unit norm
  on 1 / c^2 coordinates at the clip c = 0.5, where the bound is reached."""
  for clip in (0.35, 0.5):
    config = dataclasses.replace(dp_statistics.StatisticsConfig(bins=8),
                                 coordinate_clip=clip, correlation_clip=0.6)
    scores = np.random.default_rng(0).standard_normal((9, 12)) * 3
    vectors = dp_statistics.clipped_score_vectors(scores, config)
    largest = _largest_change(lambda kept: _upper(dp_statistics.second_moment(vectors[kept])),
                              len(vectors))
    assert largest <= sensitivity.second_moment(clip) + 1e-12
  extreme = np.zeros(12)
  extreme[:4] = 0.5  # |x| = 1 and four coordinates at c
  config = dataclasses.replace(dp_statistics.StatisticsConfig(bins=8), coordinate_clip=0.5,
                               correlation_clip=1 / math.sqrt(12))
  vectors = np.vstack([dp_statistics.clipped_score_vectors(extreme[None] * 5, config),
                       dp_statistics.clipped_score_vectors(scores[:5], config)])
  largest = _largest_change(lambda kept: _upper(dp_statistics.second_moment(vectors[kept])),
                            len(vectors))
  assert largest == pytest.approx(sensitivity.second_moment(0.5))


def _linear_model(width):
  inputs = tf.keras.Input((width,))
  return tf.keras.Model(inputs, tf.keras.layers.Dense(1, use_bias=True)(inputs))


@pytest.mark.parametrize("clip", [0.05, 10.0])
def test_the_clipped_gradient_sum_moves_by_at_most_one_clip(clip):
  """Through trainers/dp_clipping.py's one-pass sum: with a small clip every example is
  clipped and removing any one moves the sum by exactly C (reached); with a large one no
  example reaches the clip and the change is that example's own gradient, below C."""
  rng = np.random.default_rng(1)
  x = tf.constant(rng.standard_normal((7, 4)), tf.float32)
  y = tf.constant(rng.integers(0, 2, (7, 1)), tf.float32)
  tf.random.set_seed(0)
  model = _linear_model(4)

  def released(kept):
    labels = tf.gather(y, kept)

    def loss(outputs):
      (logits,) = outputs
      return tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits),
                        [-1])
    sums, _, _ = dp_clipping.clipped_gradient_sum(model, [[tf.gather(x, kept)]], loss, clip)
    return np.concatenate([s.numpy().ravel() for s in sums])

  largest = _largest_change(released, 7)
  stated = sensitivity.clipped_sum(clip)
  if clip < 1:
    assert largest == pytest.approx(stated, rel=1e-4)
  else:
    assert 0 < largest < stated


def test_the_gaussian_sum_query_adds_noise_of_multiplier_times_sensitivity():
  """The noise the DP optimizers add is sigma * C per coordinate, C the clipped sum's
  sensitivity: what the accountant's multiplier sigma means."""
  query = dp_clipping.gaussian_sum_query(0.5, 2.0, tf.random.Generator.from_seed(0))
  state = query.initial_global_state()
  noised, _, _ = query.get_noised_result([tf.zeros([20000])], state)
  assert np.std(noised[0].numpy()) == pytest.approx(2.0 * sensitivity.clipped_sum(0.5),
                                                    rel=0.02)


def _exact_gaussian_epsilon(sigma: float, delta: float) -> float:
  """The Gaussian mechanism's exact epsilon at delta (Balle and Wang 2018, Theorem 8), for
  noise multiplier sigma (sensitivity 1): delta(eps) = Phi(1/(2 sigma) - eps sigma)
  - e^eps Phi(-1/(2 sigma) - eps sigma)."""
  def delta_at(eps):
    return (stats.norm.cdf(0.5 / sigma - eps * sigma)
            - math.exp(eps) * stats.norm.cdf(-0.5 / sigma - eps * sigma)) - delta
  return optimize.brentq(delta_at, 0.0, 100.0)


@pytest.mark.parametrize("sigma, steps", [(1.0, 1), (3.0, 1), (4.0, 9)])
def test_a_plan_at_sampling_rate_one_is_the_gaussian_mechanism(sigma, steps):
  """Rate 1 (every row in every step): T steps at multiplier sigma compose to one Gaussian
  of multiplier sigma / sqrt(T). PLD is tight for it; RDP is an upper bound."""
  plan = accounting.PrivacyPlan(num_examples=50, batch_size=50, noise_multiplier=sigma,
                                epochs=steps, delta=1e-5, accountant="pld")
  assert plan.sampling_probability == 1.0 and plan.steps == steps
  exact = _exact_gaussian_epsilon(sigma / math.sqrt(steps), 1e-5)
  assert accounting.compute_epsilon(plan).epsilon == pytest.approx(exact, rel=0.01)
  rdp = accounting.compute_epsilon(dataclasses.replace(plan, accountant="rdp")).epsilon
  assert exact <= rdp <= 1.3 * exact


def test_released_statistics_at_their_multiplier_are_the_gaussian_mechanism():
  plan = accounting.PrivacyPlan(num_examples=50, batch_size=50, noise_multiplier=0.0,
                                epochs=0, delta=1e-5, accountant="pld",
                                released_noise_multipliers=(5.0, 5.0))
  exact = _exact_gaussian_epsilon(5.0 / math.sqrt(2), 1e-5)
  assert accounting.compute_epsilon(plan).epsilon == pytest.approx(exact, rel=0.01)


BUDGET = PrivacyBudget(1.0, 1e-5)


@pytest.mark.parametrize("config", [ClassifierConfig(), GanConfig()], ids=["classifier", "gan"])
def test_every_trainer_plan_is_poisson_and_recomputes_within_its_stated_epsilon(config):
  """On the default table's size (5235 training patients, one row each): the trainers'
  plans are Poisson-sampled under 'one patient added or removed', and an outside
  reviewer's recomputation of the record (tests/privacy_recompute.py) is within the
  budget. Before issue 23 the plan was fixed-size and recomputed to 2.26 (classifier)
  and 1.81 (generator) for a stated 1.0."""
  count_noise = getattr(config, "label_count_noise_multiplier", 0.0)
  plan = plan_for(5235, config, BUDGET, label_count_noise_multiplier=count_noise)
  assert plan.sampling == "poisson" and plan.relation == sensitivity.RELATION
  config = dp_training.with_noise_for_budget(config, plan, BUDGET)
  plan = plan_for(5235, config, BUDGET, label_count_noise_multiplier=count_noise)
  record = accounting.check_budget(plan, BUDGET.target_epsilon).to_dict()
  assert record["relation"] == "one patient added or removed"
  recomputed = privacy_recompute.recomputed_epsilon(record)
  assert recomputed <= record["epsilon"] * 1.001 and record["epsilon"] <= 1.0
  assert recomputed == pytest.approx(record["epsilon"], rel=0.01)


def test_fixed_size_batches_are_accounted_with_twice_the_clip():
  """Replace-one: a clipped sum moves by 2 C, so fixed-size batches spend what Poisson
  batches at half the noise would (under their own relation); the reviewer agrees."""
  fixed = accounting.PrivacyPlan(num_examples=5235, batch_size=64, noise_multiplier=2.0,
                                 epochs=20, delta=1e-5, sampling="fixed")
  record = accounting.compute_epsilon(fixed)
  assert record.relation == sensitivity.REPLACE_ONE and record.step_sensitivity_in_clips == 2
  assert privacy_recompute.recomputed_epsilon(record.to_dict()) == pytest.approx(
      record.epsilon, rel=0.01)
  poisson = accounting.compute_epsilon(dataclasses.replace(fixed, sampling="poisson"))
  assert record.epsilon > 1.5 * poisson.epsilon
  with pytest.raises(ValueError, match="DP-SGD steps only"):
    dataclasses.replace(fixed, released_noise_multipliers=(3.0,))


def test_a_reviewer_catches_a_record_accounted_with_the_wrong_sensitivity():
  """Positive control for the recomputation: the record as the code before issue 23 wrote
  it (fixed-size batches accounted under replace-one with the add-or-remove sensitivity
  C) recomputes far above its stated epsilon."""
  plan = accounting.PrivacyPlan(num_examples=5235, batch_size=64, noise_multiplier=1.0,
                                epochs=20, delta=1e-5, sampling="fixed")
  honest = accounting.compute_epsilon(plan)
  wrong = accounting.compute_epsilon(dataclasses.replace(plan, noise_multiplier=2.0))
  old_record = dict(honest.to_dict(), epsilon=wrong.epsilon)  # sigma 1 claimed as if 2
  assert privacy_recompute.recomputed_epsilon(old_record) > 1.5 * old_record["epsilon"]


def test_every_enumerated_pair_is_a_neighbour():
  """The enumeration covers every row once: n tables of n - 1 rows."""
  tables = list(_neighbours(5))
  assert len(tables) == 5 and all(len(t) == 4 for t in tables)
  assert set(itertools.chain(*[set(range(5)) - set(t) for t in tables])) == set(range(5))
