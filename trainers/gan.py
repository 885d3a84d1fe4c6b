"""The DP AC-GAN of SPRINT_gan, for any dataset spec: models and training steps.

Pure TensorFlow; the TFX run_fn wiring lives elsewhere. Series are a (visits x
series) matrix that both networks treat with 1-D convolutions over visits; static
covariates are generated jointly (sigmoid for numeric values on the spec's [0, 1]
scale, a softmax per categorical feature). Only the discriminator sees real patients,
and it is trained with DP Adam on per-example losses (per-example clipping and Gaussian
noise; by default the one-pass clipping of trainers/dp_clipping.py, or TF Privacy's
optimizers, see GanConfig.dp_method); the generator learns through the discriminator
alone, with plain Adam.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from clinical_dp.spec import DatasetSpec
from trainers import dp_clipping, dp_statistics
from trainers.dp_training import dp_adam
from trainers.features import PatientLayout, apply_missingness, snap_to_atoms


BATCH1_METHOD = "batch1"  # GanConfig.dp_method of paper mode (trainers/batch1_dp.py)


@dataclasses.dataclass(frozen=True)
class GanConfig:
  """Architecture and DP training settings of the AC-GAN."""
  latent_dim: int = 100
  generator_units: int = 128
  generator_filters: int = 32
  discriminator_filters: int = 16
  discriminator_units: int = 64
  dropout: float = 0.3
  leaky_slope: float = 0.2
  # Large batches and few steps: at epsilon 1 on ~5000 patients, batch 256 for 30 epochs
  # needs noise 10.2, whose share per example (noise / batch 0.04) is 2.5x smaller than
  # at batch 64 for 50 epochs (0.10). Batch, epochs and learning rates were chosen by
  # benchmarks/gan_settings_sweep.py on simulated data only.
  batch_size: int = 256
  epochs: int = 30
  # At most this many DP steps (dp_training.fit_steps_to_cap): above 3000 x 256 / 30 =
  # 25 600 training rows the epochs shrink, so that training time stops growing with the
  # table; the generator starts as its DP statistics' copula, and the steps refine it.
  max_steps: Optional[int] = 3000
  generator_learning_rate: float = 2e-4
  discriminator_learning_rate: float = 1e-3
  beta_1: float = 0.5
  l2_norm_clip: float = 1.0
  noise_multiplier: Optional[float] = None  # None: the smallest noise within the budget
  generator_steps: int = 1  # generator updates per discriminator update
  label_count_noise_multiplier: float = 20.0  # the released label rate is a noisy count
  # How the discriminator's per-example gradients are clipped; each is the same exact DP
  # update. At batch 64 (benchmarks/dp_step_overhead.py) a non-private step takes 3 ms;
  # "fast", one batched pass (trainers/dp_clipping.py), 1.3-1.4x that; "tf_privacy",
  # DPKerasAdamOptimizer (a Jacobian), about 9x; "vectorized", TF Privacy's
  # VectorizedDPKerasAdamOptimizer, about 8x. "batch1" (paper mode): at an expected
  # batch of 1, trainers/batch1_dp.py's loop (many steps per call, NumPy noise drawn
  # ahead); elsewhere the same update by DPKerasAdamOptimizer.
  dp_method: str = "fast"
  # The generator starts as the Gaussian copula of DP summary statistics (marginals per
  # label class and a normal-score correlation of the within-class scores;
  # trainers/dp_statistics.py) released from
  # this share of the budget (of its 1 / sigma^2); the DP discriminator spends the rest
  # refining it through a residual. 0: SPRINT_gan's generator, learned from noise alone.
  # Chosen by benchmarks/gan_settings_sweep.py on simulated tables only (0.95 against
  # 0.9: sprint seed 11 RF ratio 0.971 / 0.969, Spearman 0.962 / 0.961, median KS
  # 0.040 / 0.041; icu level).
  statistics_share: float = 0.95
  statistics_bins: Optional[int] = None  # None: dp_statistics.default_bins(training rows)
  # Share of the statistics' budget spent on binning scales, DP CDFs that put each numeric
  # column's bins where its values lie (dp_statistics: release_scales); 0: equal bins of
  # the public bounds.
  scale_weight: float = 0.1
  scale_mix: float = 0.8
  scale_public: float = 0.01  # dp_statistics.StatisticsConfig
  marginal_weight: float = 0.5
  correlation_clip: float = 0.6
  # One normal-score correlation of the within-class scores for all patients, or one per
  # label class (each pulled towards their pooled sum where the noise explains their
  # difference: dp_statistics.shrunk_class_correlations). Per class doubles each matrix's
  # relative noise; with every patient kept (issue 24) it no longer buys utility. Sweep,
  # seed 11, epsilon 1, two seeds: sprint pooled Spearman 0.983 against 0.977, RF ratio
  # 0.955 against 0.952; the skewed-lab test table 0.822 against 0.754 (0.768 shrunk).
  correlation_by_class: bool = False
  # Each visit's DP histogram shrunk towards its neighbouring visits' where the noise
  # explains their difference (dp_statistics.smooth_visits; post-processing).
  smooth_visits: bool = True
  # Each visit's correlations pulled towards the same correlations of its neighbouring
  # visits where the noise explains their difference
  # (dp_statistics.smooth_visit_correlations; post-processing). The correlation's noise is
  # what costs the skewed-lab test table its correlation structure (statistics alone,
  # seed 11, three draws: Spearman 0.907 with an exact correlation, 0.854 with exact
  # marginals, 0.823 with neither). Sweep, two seeds, against off: the skewed-lab test
  # table (seeds 11 / 12 / 13) Spearman 0.847 / 0.862 / 0.830 against 0.830 / 0.848 /
  # 0.814, median KS level; sprint 0.982 against 0.980; tables without series unchanged.
  smooth_visit_correlations: bool = True
  # Weight of the residual's mean square in the generator's loss: the anchor that keeps
  # the refined generator near the copula when the discriminator's signal is mostly noise.
  residual_penalty: float = 10.0

  def statistics(self, num_rows: int) -> dp_statistics.StatisticsConfig:
    """The release's settings on a table of num_rows training rows."""
    return dp_statistics.StatisticsConfig(
        bins=self.statistics_bins or dp_statistics.default_bins(num_rows),
        pooled_correlation=not self.correlation_by_class,
        smooth_visits=self.smooth_visits,
        smooth_visit_correlations=self.smooth_visit_correlations, scale_weight=self.scale_weight,
        scale_mix=self.scale_mix, scale_public=self.scale_public,
        marginal_weight=self.marginal_weight,
        correlation_clip=self.correlation_clip)


def paper_config(epochs: int = 500) -> GanConfig:
  """SPRINT_gan's published setting: batch 1, clip 1e-4, noise 1, lr 2e-5, beta_1 0.5.

  At batch 1 the one-pass clipping has no edge; the batch-1 loop of trainers/batch1_dp.py
  (the same update as TF Privacy's DPKerasAdamOptimizer) is the fastest
  (benchmarks/gan_training_time.py).
  """
  return GanConfig(batch_size=1, l2_norm_clip=1e-4, noise_multiplier=1.0,
                   generator_learning_rate=2e-5, discriminator_learning_rate=2e-5,
                   beta_1=0.5, epochs=epochs, discriminator_filters=32,
                   discriminator_units=1024, dp_method=BATCH1_METHOD, statistics_share=0.0,
                   max_steps=None)


def build_generator(layout: PatientLayout, config: GanConfig,
                    copula: Optional[dp_statistics.DpCopula] = None) -> tf.keras.Model:
  """(latent, label) -> [series (visits x series)], [static]; all on the [0, 1] scale.

  With a released copula, the copula generator (build_copula_generator); else SPRINT_gan's."""
  if copula is not None:
    return build_copula_generator(layout, config, copula)
  latent = tf.keras.Input((config.latent_dim,), name="latent")
  label = tf.keras.Input((1,), dtype=tf.int32, name="label")
  embedded = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(2, config.latent_dim)(label))
  raw = "_unmasked" if layout.models_missing else ""  # the masked outputs take the names
  hidden = tf.keras.layers.Multiply()([latent, embedded])
  outputs = []
  if layout.has_series:
    half = (layout.num_visits + 1) // 2
    x = tf.keras.layers.Dense(half * config.generator_units)(hidden)
    x = tf.keras.layers.LeakyReLU(config.leaky_slope)(x)
    x = tf.keras.layers.Reshape((half, config.generator_units))(x)
    x = tf.keras.layers.UpSampling1D(2)(x)
    x = tf.keras.layers.Conv1D(config.generator_filters, 3, padding="same")(x)
    x = tf.keras.layers.LeakyReLU(config.leaky_slope)(x)
    x = tf.keras.layers.Conv1D(layout.num_series, 3, padding="same", activation="sigmoid")(x)
    outputs.append(tf.keras.layers.Cropping1D((0, 2 * half - layout.num_visits),
                                              name=f"series{raw}")(x))
  if layout.has_static:
    x = tf.keras.layers.Dense(config.generator_units)(hidden)
    x = tf.keras.layers.LeakyReLU(config.leaky_slope)(x)
    parts = []
    if layout.numeric_static:
      parts.append(tf.keras.layers.Dense(len(layout.numeric_static), activation="sigmoid")(x))
    for name, size in layout.categorical_static:
      parts.append(tf.keras.layers.Dense(size, activation="softmax", name=f"{name}_probs")(x))
    outputs.append(parts[0] if len(parts) == 1 else
                   tf.keras.layers.Concatenate(name=f"static{raw}")(parts))
  if layout.models_missing:
    flat = tf.keras.layers.Concatenate()([tf.keras.layers.Flatten()(x) for x in outputs])
    outputs = _layout_outputs(layout, MissingnessMask(layout, name="missingness")(flat))
  return tf.keras.Model([latent, label], outputs, name="generator")


class MissingnessMask(tf.keras.layers.Layer):
  """Flat features -> the same with values that agree with their indicators and dropout
  code (features.apply_missingness): what the discriminator sees of a synthetic patient is
  encoded as a real one with the same holes. No weights."""

  def __init__(self, layout: PatientLayout, **kwargs):
    super().__init__(trainable=False, **kwargs)
    self._layout = layout

  def call(self, flat):  # pylint: disable=arguments-differ
    return apply_missingness(flat, self._layout)


class CopulaDecoder(tf.keras.layers.Layer):
  """Normal scores z and labels -> flat features, through the label class's DP marginals.

  u = Phi(z); a numeric code's value is the inverse of its piecewise-linear CDF (uniform
  within a bin of its binning scale, then mapped back to the public scale through the
  released scale's inverse), so it moves smoothly with z and stays inside the public
  bounds; a categorical code is the category whose CDF step holds u. The marginals and
  scales are constants of the graph (released statistics, post-processing)."""

  def __init__(self, copula: dp_statistics.DpCopula, **kwargs):
    super().__init__(trainable=False, **kwargs)
    codes = copula.layout
    self._numeric, self._bins, self._categories = codes.numeric, codes.bins, codes.categories
    # [class][code] cumulative probabilities; one class when the marginals are pooled
    knots = [[np.concatenate([[0.0], np.cumsum(p)]) for p in group]
             for group in copula.probabilities]
    self._knots = tf.constant(np.asarray([[k for k in group[:codes.numeric]]
                                          for group in knots]), tf.float32)
    self._category_knots = [tf.constant(np.asarray([group[codes.numeric + j][1:-1]
                                                     for group in knots]), tf.float32)
                            for j in range(len(codes.categories))]
    self._by_class = copula.by_class
    self._scale_knots = None if copula.scales is None else tf.constant(
        copula.scales.code_knots, tf.float32)  # (numeric codes, leaves + 1)
    self._patient = codes.patient
    self._snapped = None if copula.scales is None else copula.scales.public_codes

  def call(self, z, labels):
    group = labels[:, 0] if self._by_class else tf.zeros_like(labels[:, 0])
    u = 0.5 * tf.math.erfc(-z / np.sqrt(2.0))
    parts = []
    if self._numeric:
      knots = tf.gather(self._knots, group)  # (batch, numeric codes, bins + 1)
      u_numeric = u[:, :self._numeric, None]
      bins = tf.clip_by_value(tf.searchsorted(knots[:, :, 1:-1], u_numeric, side="right"),
                              0, self._bins - 1)
      low = tf.gather(knots, bins, batch_dims=2)
      high = tf.gather(knots, bins + 1, batch_dims=2)
      within = tf.clip_by_value((u_numeric - low) / tf.maximum(high - low, 1e-9), 0.0, 1.0)
      edges = tf.cast(bins, tf.float32)[:, :, 0]
      low, high = edges / self._bins, (edges + 1) / self._bins
      numeric = ((tf.cast(bins, tf.float32) + within) / self._bins)[:, :, 0]
      if self._scale_knots is not None:
        numeric, low, high = (self._from_binning(x) for x in (numeric, low, high))
      if self._patient is not None:  # whole numbers and reported decimals: see snap_to_atoms
        numeric = snap_to_atoms(numeric, low, high, self._patient, self._snapped)
      parts.append(numeric)
    for j, size in enumerate(self._categories):
      knots = tf.gather(self._category_knots[j], group)  # (batch, size - 1)
      category = tf.searchsorted(knots, u[:, self._numeric + j, None], side="right")[:, 0]
      parts.append(tf.one_hot(category, size))
    return tf.concat(parts, axis=1)

  def _from_binning(self, numeric):
    """(batch, numeric codes) on the binning scales -> on the public scale
    (dp_statistics.BinningScales.from_binning)."""
    knots = self._scale_knots
    leaves = knots.shape[1] - 1
    values = tf.transpose(numeric)  # (numeric codes, batch)
    leaf = tf.clip_by_value(tf.searchsorted(knots, values, side="right") - 1, 0, leaves - 1)
    low = tf.gather(knots, leaf, batch_dims=1)
    high = tf.gather(knots, leaf + 1, batch_dims=1)
    within = tf.clip_by_value((values - low) / tf.maximum(high - low, 1e-12), 0.0, 1.0)
    return tf.transpose((tf.cast(leaf, tf.float32) + within) / leaves)


def build_copula_generator(layout: PatientLayout, config: GanConfig,
                           copula: dp_statistics.DpCopula) -> tf.keras.Model:
  """The DP copula as a generator: z = L eps + r(eps, label), decoded by CopulaDecoder.

  L (the Cholesky factor of the released correlation) is fixed; the residual r starts at
  zero (its last layer is zero-initialized), so before any DP step the generator samples
  exactly the copula, and the DP discriminator can only refine it from there."""
  m = copula.layout.num_codes
  if config.latent_dim < m:
    raise ValueError(f"latent_dim {config.latent_dim} is below the copula's {m} codes")
  latent = tf.keras.Input((config.latent_dim,), name="latent")
  label = tf.keras.Input((1,), dtype=tf.int32, name="label")
  cholesky = np.stack([np.linalg.cholesky(c) for c in copula.correlations])
  factors = tf.constant(cholesky.astype(np.float32))
  group = label[:, 0] if len(cholesky) == 2 else tf.zeros_like(label[:, 0])
  base = tf.einsum("bij,bj->bi", tf.gather(factors, group), latent[:, :m])
  condition = tf.concat([latent, tf.one_hot(label[:, 0], 2)], axis=1)
  x = tf.keras.layers.Dense(config.generator_units)(condition)
  x = tf.keras.layers.LeakyReLU(config.leaky_slope)(x)
  residual = tf.keras.layers.Dense(m, kernel_initializer="zeros", name="residual")(x)
  flat = CopulaDecoder(copula, name="copula")(base + residual, label)
  if layout.models_missing:
    flat = MissingnessMask(layout, name="missingness")(flat)
  generator = tf.keras.Model([latent, label], _layout_outputs(layout, flat), name="generator")
  generator.add_loss(config.residual_penalty * tf.reduce_mean(tf.square(residual)))
  return generator


def _layout_outputs(layout: PatientLayout, flat: tf.Tensor) -> List[tf.Tensor]:
  """Flat features (features.flat_features' order) -> [series], [static]."""
  outputs = []
  series_width = layout.num_visits * layout.num_series
  if layout.has_series:
    outputs.append(tf.keras.layers.Reshape((layout.num_visits, layout.num_series),
                                           name="series")(flat[:, :series_width]))
  if layout.has_static:
    outputs.append(tf.keras.layers.Activation("linear", name="static")(flat[:, series_width:]))
  return outputs


@dataclasses.dataclass
class TrainingRandomness:
  """Every random draw of a training run after its statistics: latent vectors and labels
  of generated patients, dropout masks, DP noise. Each stream is a tf.random.Generator,
  whose state is a variable a checkpoint saves (TF's stateful random ops keep theirs
  inside the traced graph, where no checkpoint reaches), so that a resumed run draws
  what the uninterrupted one would have drawn, and never a noise it already added."""
  latent: tf.random.Generator
  dropout: tf.random.Generator
  noise: tf.random.Generator

  @classmethod
  def from_seed(cls, seed: int) -> "TrainingRandomness":
    latent, dropout, noise = tf.random.Generator.from_seed(seed).split(3)
    return cls(latent=latent, dropout=dropout, noise=noise)

  def checkpoint_objects(self) -> Dict[str, tf.random.Generator]:
    return {f"rng_{name}": getattr(self, name) for name in ("latent", "dropout", "noise")}


class GeneratorDropout(tf.keras.layers.Layer):
  """Dropout with its masks from a given tf.random.Generator (see TrainingRandomness)."""

  def __init__(self, rate: float, rng: tf.random.Generator, **kwargs):
    super().__init__(**kwargs)
    self.rate = rate
    self._uniform = rng.uniform  # a bound method: the generator is not a weight of the model

  def call(self, inputs, training=None):  # pylint: disable=arguments-differ
    if not training:
      return inputs
    return tf.nn.experimental.general_dropout(inputs, rate=self.rate,
                                              uniform_sampler=self._uniform)


def build_discriminator(layout: PatientLayout, config: GanConfig,
                        dropout_rng: Optional[tf.random.Generator] = None) -> tf.keras.Model:
  """[series], [static] -> (real/fake logit, class logit); dropout masks from dropout_rng
  when given (resumable training), else Keras's own."""
  def dropout():
    if dropout_rng is None:
      return tf.keras.layers.Dropout(config.dropout)
    return GeneratorDropout(config.dropout, dropout_rng)

  inputs, features = [], []
  if layout.has_series:
    series = tf.keras.Input((layout.num_visits, layout.num_series), name="series")
    x = tf.keras.layers.Conv1D(config.discriminator_filters, 3, padding="same")(series)
    x = tf.keras.layers.LeakyReLU(config.leaky_slope)(x)
    x = dropout()(x)
    x = tf.keras.layers.Conv1D(2 * config.discriminator_filters, 3, strides=2, padding="same")(x)
    x = tf.keras.layers.LeakyReLU(config.leaky_slope)(x)
    x = dropout()(x)
    inputs.append(series)
    features.append(tf.keras.layers.Flatten()(x))
  if layout.has_static:
    static = tf.keras.Input((layout.static_width,), name="static")
    inputs.append(static)
    features.append(static)
  x = features[0] if len(features) == 1 else tf.keras.layers.Concatenate()(features)
  x = tf.keras.layers.Dense(config.discriminator_units)(x)
  x = tf.keras.layers.LeakyReLU(config.leaky_slope)(x)
  x = dropout()(x)
  real_fake = tf.keras.layers.Dense(1, name="real_fake")(x)
  label = tf.keras.layers.Dense(1, name="label")(x)
  return tf.keras.Model(inputs, [real_fake, label], name="discriminator")


DP_METHODS = ("fast", "tf_privacy", "vectorized", "batch1")


# The methods whose noise can come from a checkpointed generator or a (seed, step) stream
# (resumable training); TF Privacy's vectorized optimizer draws its noise inside, with
# stateful ops.
RESUMABLE_DP_METHODS = ("fast", "tf_privacy", BATCH1_METHOD)


def dp_discriminator_optimizer(config: GanConfig,
                               noise_rng: Optional[tf.random.Generator] = None,
                               expected_batch_size: Optional[float] = None
                               ) -> tf.keras.optimizers.Optimizer:
  """Per-example clipping (one example per microbatch) and Gaussian noise, by
  config.dp_method, the noisy sum divided by the expected batch (default: the config's
  batch). Each is a TF Privacy DP Adam that `minimize(vector_loss, var_list,
  tape=tape)` accepts; the "fast" one also takes the one-pass clipped sums. With
  noise_rng (a method of RESUMABLE_DP_METHODS) the Gaussian noise is drawn from it."""
  expected = float(expected_batch_size or config.batch_size)
  if noise_rng is not None and config.dp_method not in RESUMABLE_DP_METHODS:
    raise ValueError(f"dp_method {config.dp_method!r} draws its own noise; a noise "
                     f"generator needs one of {RESUMABLE_DP_METHODS}")
  if config.dp_method == "fast":
    return dp_clipping.FastDPKerasAdamOptimizer(
        config.l2_norm_clip, config.noise_multiplier, noise_rng=noise_rng,
        expected_batch_size=expected, learning_rate=config.discriminator_learning_rate,
        beta_1=config.beta_1)
  if config.dp_method in ("tf_privacy", BATCH1_METHOD):  # batch1: its per-step path
    return dp_adam(config.l2_norm_clip, config.noise_multiplier,
                   config.discriminator_learning_rate, config.beta_1, noise_rng=noise_rng,
                   expected_batch_size=expected)
  if config.dp_method == "vectorized":
    from tensorflow_privacy.privacy.optimizers import (  # pylint: disable=g-import-not-at-top
        dp_optimizer_keras_vectorized)
    return dp_clipping.divided_by_expected_batch(
        dp_optimizer_keras_vectorized.VectorizedDPKerasAdamOptimizer)(
            l2_norm_clip=config.l2_norm_clip, noise_multiplier=config.noise_multiplier,
            num_microbatches=None, learning_rate=config.discriminator_learning_rate,
            beta_1=config.beta_1, expected_batch_size=expected)
  raise ValueError(f"dp_method {config.dp_method!r} is not one of {DP_METHODS}")


def generator_optimizer(config: GanConfig) -> tf.keras.optimizers.Optimizer:
  return tf.keras.optimizers.Adam(config.generator_learning_rate, beta_1=config.beta_1)


def _per_example_bce(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  return tf.reshape(tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.cast(tf.reshape(labels, tf.shape(logits)), logits.dtype), logits=logits), [-1])


def sample_fake(generator: tf.keras.Model, batch_size: int, latent_dim: int,
                positive_rate: float = 0.5, rng: Optional[tf.random.Generator] = None
                ) -> Tuple[List[tf.Tensor], tf.Tensor]:
  """Generated patients and the labels they were conditioned on; the draws from rng when
  given (resumable training), else from TF's global seed."""
  if rng is None:
    latent = tf.random.normal((batch_size, latent_dim))
    labels = tf.cast(tf.random.uniform((batch_size, 1)) < positive_rate, tf.int32)
  else:
    latent = rng.normal((batch_size, latent_dim))
    labels = tf.cast(rng.uniform((batch_size, 1)) < positive_rate, tf.int32)
  fake = generator([latent, labels], training=True)
  return (fake if isinstance(fake, list) else [fake]), labels


def discriminator_example_losses(discriminator: tf.keras.Model, real: List[tf.Tensor],
                                 real_labels: tf.Tensor, fake: List[tf.Tensor],
                                 fake_labels: tf.Tensor) -> tf.Tensor:
  """Per-example AC-GAN loss: each real patient is paired with one generated patient,
  so clipping example i bounds real patient i's influence on the update."""
  return ac_gan_example_losses(discriminator(real, training=True),
                                discriminator(fake, training=True), real_labels, fake_labels)


def ac_gan_example_losses(real_outputs, fake_outputs, real_labels: tf.Tensor,
                           fake_labels: tf.Tensor) -> tf.Tensor:
  """discriminator_example_losses from the discriminator's outputs on both batches."""
  real_score, real_class = real_outputs
  fake_score, fake_class = fake_outputs
  return (_per_example_bce(tf.ones_like(real_labels), real_score)
          + _per_example_bce(real_labels, real_class)
          + _per_example_bce(tf.zeros_like(fake_labels), fake_score)
          + _per_example_bce(fake_labels, fake_class))


def generator_loss(discriminator: tf.keras.Model, fake: List[tf.Tensor],
                   fake_labels: tf.Tensor) -> tf.Tensor:
  score, predicted_class = discriminator(fake, training=True)
  return tf.reduce_mean(_per_example_bce(tf.ones_like(fake_labels), score)
                        + _per_example_bce(fake_labels, predicted_class))


def discriminator_dp_step(discriminator, generator, optimizer, real: List[tf.Tensor],
                          real_labels: tf.Tensor, latent_dim: int,
                          latent_rng: Optional[tf.random.Generator] = None,
                          weights: Optional[tf.Tensor] = None) -> tf.Tensor:
  """One DP update of the discriminator; returns the mean loss of the weighted examples.
  `weights` (0 or 1 per row; default all 1) let an empty Poisson batch pass as one row of
  weight 0: its example's gradient is zero, so the step is the noise alone."""
  batch_size = tf.shape(real_labels)[0]
  if weights is None:
    weights = tf.ones([batch_size])
  fake, fake_labels = sample_fake(generator, batch_size, latent_dim, rng=latent_rng)
  fake = [tf.stop_gradient(f) for f in fake]
  if isinstance(optimizer, dp_clipping.FastDPKerasAdamOptimizer):
    # Real and generated patients in one forward pass; example i's gradient (real i plus
    # generated i) is clipped from that pass and its backward pass (trainers/dp_clipping.py).
    losses = optimizer.minimize_examples(
        discriminator, [real, fake],
        lambda outputs: weights * ac_gan_example_losses(*outputs, real_labels, fake_labels))
  else:
    with tf.GradientTape(persistent=True) as tape:
      losses = weights * discriminator_example_losses(discriminator, real, real_labels, fake,
                                                      fake_labels)
    # The vector loss and the tape route through TF Privacy's clip-and-noise path.
    optimizer.minimize(losses, discriminator.trainable_variables, tape=tape)
  return tf.reduce_sum(losses) / tf.maximum(tf.reduce_sum(weights), 1.0)


def generator_step(generator, discriminator, optimizer, batch_size: int,
                   latent_dim: int, latent_rng: Optional[tf.random.Generator] = None
                   ) -> tf.Tensor:
  """One update of the generator through the (fixed) discriminator; sees no real data."""
  with tf.GradientTape() as tape:
    fake, fake_labels = sample_fake(generator, batch_size, latent_dim, rng=latent_rng)
    loss = generator_loss(discriminator, fake, fake_labels)
    if generator.losses:  # the copula generator's anchor
      loss += tf.add_n(generator.losses)
  gradients = tape.gradient(loss, generator.trainable_variables)
  optimizer.apply_gradients(zip(gradients, generator.trainable_variables))
  return loss
