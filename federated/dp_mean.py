"""dp_fedavg's aggregate in plain TensorFlow: the client-level DP mean, seeded noise.

The mechanism is that of TFF's `DifferentiallyPrivateFactory.gaussian_fixed` and
`gaussian_adaptive` (TF Privacy's GaussianSumQuery, or QuantileAdaptiveClipSumQuery
with geometric updates, under a NormalizedQuery), written out here because TF Privacy
draws the noise from an unseeded generator, so dp_fedavg's figures moved from run to
run. federated/iterative_process.py wires these functions into a TFF aggregation process.

Each site clips its model update to L2 norm `clip` over all its weights. The server
adds N(0, (value_noise_multiplier x clip)^2) to every coordinate of the sum and
divides by the planned sites per round K (a public constant, not the count that took
part). With adaptive clipping each site also reports whether its update was within
the clip, as +-0.5 (one site moves the centred count by 0.5 at most); the server adds
N(0, clipped_count_stddev^2) to that count and moves the clip geometrically towards
the target quantile of update norms (Andrew et al. 2019, arXiv:1905.03871).

Release n of a run draws its noise from the seed fold_in(key, n): a function of the
run's key (from --seed) and n only, so a rerun adds the same noise and no two
releases share it. The noise is as large as before; the accounting is unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

import tensorflow as tf

from federated import model_steps as model_lib


@dataclasses.dataclass(frozen=True)
class Mechanism:
  """One round's Gaussian mechanism; the noise split is TFF's (see process.py)."""
  clients_per_round: int
  initial_clip: float
  value_noise_multiplier: float       # noise on the sum: value_noise_multiplier x clip
  adaptive: bool = False
  clipped_count_stddev: float = 0.0   # adaptive only: noise on the within-clip count
  target_unclipped_quantile: float = 0.5  # gaussian_adaptive's defaults
  clip_learning_rate: float = 0.2


def clip_update(update: Sequence[tf.Tensor], clip: tf.Tensor) -> Tuple[list, tf.Tensor]:
  """A site's record: its update clipped to `clip`, and +-0.5 for whether it was within."""
  clipped, norm = tf.clip_by_global_norm(list(update), clip)
  return clipped, tf.cast(norm <= clip, tf.float32) - 0.5


def release_seed(key: tf.Tensor, release: tf.Tensor) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(key, release)


def noisy_mean(mechanism: Mechanism, clipped_sum: Sequence[tf.Tensor], within_sum: tf.Tensor,
               clip: tf.Tensor, seed: tf.Tensor) -> Tuple[list, tf.Tensor]:
  """The released mean of the sites' clipped updates, and the clip of the next round."""
  value_seed, count_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  sites = float(mechanism.clients_per_round)
  noised = model_lib.add_gaussian_noise(clipped_sum, mechanism.value_noise_multiplier * clip,
                                        value_seed)
  mean = [n / sites for n in noised]
  if not mechanism.adaptive:
    return mean, clip
  [count] = model_lib.add_gaussian_noise([within_sum], mechanism.clipped_count_stddev,
                                         count_seed)
  within_fraction = tf.clip_by_value(count / sites + 0.5, 0.0, 1.0)
  step = mechanism.clip_learning_rate * (within_fraction - mechanism.target_unclipped_quantile)
  return mean, tf.maximum(clip * tf.exp(-step), 0.0)
