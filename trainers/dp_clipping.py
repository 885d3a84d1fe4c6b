"""Exact per-example gradient clipping for small Keras models, in one batched pass.

DP-SGD clips the gradient of every example's loss before summing. TF Privacy's Keras
optimizers get those gradients from a Jacobian (one backward pass per example, or one
vectorized pass that still materializes a full gradient per example). For the Dense and
Conv1D layers of the AC-GAN discriminator nothing per example needs materializing:

* A layer with kernel W computes z_p = a_p W + b at positions p (one position for Dense;
  one per output step for Conv1D, where a_p is the input patch under the kernel). With
  g_p = dL/dz_p from ONE ordinary backward pass, example i's weight gradient is
  G_i = sum_p a_p g_p^T and its bias gradient sum_p g_p.
* An example's loss may come from several calls of the model (the AC-GAN pairs real
  patient i with generated patient i); its positions are then those of all calls, so
  the calls' contributions are summed before any norm is taken.
* |G_i|^2 either directly (einsum of a and g, cost P*I*O per example for P positions,
  I inputs, O outputs) or as the "ghost norm" sum_{p,q} (a_p.a_q)(g_p.g_q) (cost
  P^2*(I+O)), whichever is cheaper for the layer's shapes (Li et al. 2021, Bu et al.
  2022; TF Privacy's fast_gradient_clipping does the ghost norm for Dense layers).
* The clipped sum sum_i c_i G_i with c_i = min(1, C / |g_i|) is the ordinary kernel
  gradient with each example's g scaled by c_i: the gradient of sum_i c_i L_i, as in
  TF Privacy's fast clipping, but taken from the same forward and backward pass. That is
  exact because examples do not interact in these models (no batch statistics), and it
  means dropout masks are the same for the norms and the update by construction.

Noise and the optimizer step are TF Privacy's: `FastDPKerasAdamOptimizer` is its generic
DP Adam with the Gaussian sum query, given clipped sums instead of a vector loss. The
noisy sum is divided by the expected batch of Poisson sampling (trainers/dp_training.py),
not by the number of examples drawn. The clipped sum's L2 sensitivity is one clip per
example (clinical_dp/sensitivity.py: clipped_sum).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Callable, List, Optional, Sequence, Tuple

import dp_accounting

import tensorflow as tf

# TF Privacy's package __init__ imports TF Probability and Estimator, which are not
# needed here; this documented switch skips that import (as in trainers/dp_training.py).
sys.skip_tf_privacy_import = True
# pylint: disable=g-import-not-at-top,wrong-import-position
from tensorflow_privacy.privacy.dp_query import gaussian_query
from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads
from tensorflow_privacy.privacy.fast_gradient_clipping import gradient_clipping_utils
from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras
# pylint: enable=g-import-not-at-top,wrong-import-position

# Per-example losses from the model's outputs, one entry per call: [B] from K x outputs.
ExampleLossFn = Callable[[List[Sequence[tf.Tensor]]], tf.Tensor]


@dataclasses.dataclass
class _Tap:
  """What one trainable layer saw in the forward pass."""
  layer: tf.keras.layers.Layer
  inputs: tf.Tensor  # the layer's input, all calls stacked on the batch axis
  outputs: tf.Tensor  # its pre-activation output z, watched by the tape


def _check_supported(layer: tf.keras.layers.Layer) -> None:
  """Only layers whose weight gradient is sum_p a_p g_p^T (plus a bias) are handled."""
  if isinstance(layer, tf.keras.layers.Conv1D) and not isinstance(
      layer, (tf.keras.layers.Conv1DTranspose, tf.keras.layers.SeparableConv1D)):
    if (layer.dilation_rate != (1,) or layer.groups != 1 or layer.padding == "causal"
        or layer.data_format != "channels_last"):
      raise NotImplementedError(f"{layer.name}: only Conv1D with dilation 1, one group, "
                                "same/valid padding and channels_last is supported")
    return
  if type(layer) is not tf.keras.layers.Dense:  # pylint: disable=unidiomatic-typecheck
    raise NotImplementedError(f"{layer.name}: {type(layer).__name__} has trainable weights "
                              "but no per-example gradient rule here")


def _run_in_training_mode(layer, args, kwargs):
  """Calls a layer as model(x, training=True) would (dropout on)."""
  if "training" in inspect.signature(layer.call).parameters:
    kwargs = {**kwargs, "training": True}
  return layer(*args, **kwargs)


def _forward_with_taps(model: tf.keras.Model, inputs, tape: tf.GradientTape
                       ) -> Tuple[list, List[_Tap]]:
  """model(inputs, training=True), recording each trainable layer's input and its
  pre-activation output (watched, so that one backward pass yields every dL/dz)."""
  def generator_fn(layer, args, kwargs):
    if not layer.trainable_weights:
      return _run_in_training_mode(layer, args, kwargs), None
    _check_supported(layer)
    if kwargs or len(args) != 1:
      raise NotImplementedError(f"{layer.name}: expected a call with one input tensor")
    activation, layer.activation = layer.activation, None  # as TF Privacy's registry does
    try:
      outputs = layer(args[0])
    finally:
      layer.activation = activation
    tape.watch(outputs)
    return activation(outputs) if activation else outputs, _Tap(layer, args[0], outputs)

  # TF Privacy's traversal of a functional model, with the hook above on every layer.
  outputs, taps = gradient_clipping_utils.model_forward_pass(model, inputs, generator_fn)
  taps = [t for t in taps if t is not None]
  layers = [t.layer.name for t in taps]
  if len(set(layers)) != len(layers):  # a shared layer's uses would need their cross terms
    raise NotImplementedError(f"a trainable layer is called more than once: {layers}")
  return outputs, taps


def _layer_factors(tap: _Tap) -> tf.Tensor:
  """a: the input seen by the kernel at each position, [N, positions, kernel inputs]."""
  x = tap.inputs
  if isinstance(tap.layer, tf.keras.layers.Conv1D):
    # Conv over patches is a Dense layer: patch t holds the k input steps under the kernel,
    # ordered (step, channel) like the kernel's [k, in, out] flattened to [k*in, out]; the
    # patch op's SAME/VALID padding is the convolution's.
    (size,), (stride,) = tap.layer.kernel_size, tap.layer.strides
    patches = tf.image.extract_patches(
        x[:, :, tf.newaxis, :], sizes=[1, size, 1, 1], strides=[1, stride, 1, 1],
        rates=[1, 1, 1, 1], padding=tap.layer.padding.upper())
    return tf.squeeze(patches, axis=2)
  return _positions_last(x)  # Dense acts on the last axis


def _positions_last(t: tf.Tensor) -> tf.Tensor:
  """[N, ..., F] -> [N, P, F], the axes between batch and features flattened (P static)."""
  return tf.reshape(t, [-1, t.shape[1:-1].num_elements(), t.shape[-1]])


def _by_example(t: tf.Tensor, num_calls: int) -> tf.Tensor:
  """[K*B, P, F] with the calls stacked on the batch axis -> [B, K*P, F]: each example's
  positions from all of its calls together (so contributions sum before the norm)."""
  positions, features = t.shape[1], t.shape[2]
  t = tf.reshape(t, [num_calls, -1, positions, features])
  return tf.reshape(tf.transpose(t, [1, 0, 2, 3]), [-1, num_calls * positions, features])


def _squared_norms(a: tf.Tensor, g: tf.Tensor, use_bias: bool) -> tf.Tensor:
  """|sum_p a_p g_p^T|^2 (+ |sum_p g_p|^2 for the bias) per example; a [B, P, I],
  g [B, P, O]. Picks the cheaper of the direct and the ghost-norm formula by shape."""
  positions, inputs, outputs = a.shape[1], a.shape[2], g.shape[2]
  if positions * (inputs + outputs) < inputs * outputs:
    # Ghost norm: <G, G> = sum_{p,q} (a_p.a_q)(g_p.g_q), never forming G.
    a_gram = tf.matmul(a, a, transpose_b=True)
    g_gram = tf.matmul(g, g, transpose_b=True)
    squared = tf.reduce_sum(a_gram * g_gram, axis=[1, 2])
    squared = tf.maximum(squared, 0.0)  # rounding must not make a norm imaginary
  else:
    per_example = tf.matmul(a, g, transpose_a=True)  # G_i, [B, I, O]
    squared = tf.reduce_sum(tf.square(per_example), axis=[1, 2])
  if use_bias:
    squared += tf.reduce_sum(tf.square(tf.reduce_sum(g, axis=1)), axis=1)
  return squared


def _weighted_gradients(tap: _Tap, a: tf.Tensor, g: tf.Tensor) -> List[tf.Tensor]:
  """sum_i sum_p a_ip g_ip^T (and sum_i sum_p g_ip) in the layer's weight shapes; g
  already carries each example's clip weight."""
  kernel = tf.matmul(tf.reshape(a, [-1, a.shape[-1]]), tf.reshape(g, [-1, g.shape[-1]]),
                     transpose_a=True)
  grads = [tf.reshape(kernel, tap.layer.kernel.shape)]
  if tap.layer.use_bias:
    grads.append(tf.reduce_sum(g, axis=[0, 1]))
  return grads


def clipped_gradient_sum(model: tf.keras.Model, calls: Sequence[Sequence[tf.Tensor]],
                         example_loss_fn: ExampleLossFn, l2_norm_clip: float
                         ) -> Tuple[List[tf.Tensor], tf.Tensor, tf.Tensor]:
  """sum_i clip(grad L_i, l2_norm_clip) over model.trainable_variables, exactly.

  Args:
    model: a functional Keras model whose trainable layers are Dense or Conv1D and whose
      examples do not interact (no batch normalization).
    calls: K input lists, each one batch of B examples for one call of the model; the
      calls run as one forward pass, stacked on the batch axis.
    example_loss_fn: from the K calls' outputs (each as the model returns them), the
      loss of each of the B examples, [B]; example i may depend on row i of every call.
    l2_norm_clip: C; each example's gradient over all weights together is scaled by
      min(1, C / norm).

  Returns:
    (the clipped sums, aligned with model.trainable_variables; the per-example losses;
    the per-example gradient norms before clipping).
  """
  num_calls = len(calls)
  stacked = [tf.concat(list(parts), axis=0) for parts in zip(*calls)]
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    outputs, taps = _forward_with_taps(model, stacked, tape)
    splits = [tf.split(o, num_calls) for o in tf.nest.flatten(outputs)]
    per_call = [tf.nest.pack_sequence_as(outputs, [s[k] for s in splits])
                for k in range(num_calls)]
    losses = example_loss_fn(per_call)
    total = tf.reduce_sum(losses)
  # One backward pass: dL/dz at every tapped layer (each row depends on one example).
  output_grads = tape.gradient(total, [t.outputs for t in taps],
                               unconnected_gradients=tf.UnconnectedGradients.ZERO)

  factors = []
  squared = tf.zeros_like(losses)
  for tap, g in zip(taps, output_grads):
    a = _by_example(_layer_factors(tap), num_calls)
    g = _by_example(_positions_last(g), num_calls)
    squared += _squared_norms(a, g, tap.layer.use_bias)
    factors.append((tap, a, g))
  norms = tf.sqrt(squared)
  clip_weights = clip_grads.compute_clip_weights(l2_norm_clip, norms)  # min(1, C/norm)

  by_variable = {}
  for tap, a, g in factors:
    grads = _weighted_gradients(tap, a, g * clip_weights[:, tf.newaxis, tf.newaxis])
    for variable, grad in zip(tap.layer.trainable_weights, grads):
      by_variable[variable.ref()] = grad
  missing = [v.name for v in model.trainable_variables if v.ref() not in by_variable]
  if missing:
    raise NotImplementedError(f"weights outside Dense/Conv1D kernels and biases: {missing}")
  return [by_variable[v.ref()] for v in model.trainable_variables], losses, norms


class GeneratorGaussianSumQuery(gaussian_query.GaussianSumQuery):
  """TF Privacy's Gaussian sum query with its noise drawn from a `tf.random.Generator`.

  The mechanism, its DP event and its accounting are GaussianSumQuery's; only where the
  normal draws come from differs. TF Privacy draws them with stateful random ops, whose
  state lives in the traced graph and starts afresh in a new process: a resumed run would
  add the very noise of its first steps again, which DP's independent noise per step
  does not allow. The generator's state is a variable a checkpoint saves, so a resumed
  run continues the stream exactly (trainers/gan_checkpoint.py).
  """

  def __init__(self, l2_norm_clip: float, stddev: float, noise_rng: tf.random.Generator):
    super().__init__(l2_norm_clip, stddev)
    self._noise_rng = noise_rng

  def get_noised_result(self, sample_state, global_state):
    def add_noise(v):
      return v + tf.cast(self._noise_rng.normal(tf.shape(v), stddev=global_state.stddev),
                         v.dtype)
    result = tf.nest.map_structure(add_noise, sample_state)
    event = dp_accounting.GaussianDpEvent(global_state.stddev / global_state.l2_norm_clip)
    return result, global_state, event


def gaussian_sum_query(l2_norm_clip: float, noise_multiplier: float,
                       noise_rng: Optional[tf.random.Generator] = None
                       ) -> gaussian_query.GaussianSumQuery:
  """The query DPKerasAdamOptimizer builds, with its noise from noise_rng when given."""
  stddev = l2_norm_clip * noise_multiplier
  if noise_rng is None:
    return gaussian_query.GaussianSumQuery(l2_norm_clip, stddev)
  return GeneratorGaussianSumQuery(l2_norm_clip, stddev, noise_rng)


def divided_by_expected_batch(optimizer_class):
  """A TF Privacy DP optimizer class whose noisy gradient sum is divided by a fixed
  expected batch size (constructor argument `expected_batch_size`) instead of the
  number of microbatches in the step (TF Privacy's choice, right for fixed-size
  batches). Its clipping and noise are the base class's, untouched: the rescaling
  multiplies TF Privacy's noisy mean back to the noisy sum and divides that by B."""

  class ExpectedBatchOptimizer(optimizer_class):

    def __init__(self, *args, expected_batch_size: float, **kwargs):
      super().__init__(*args, **kwargs)
      if not expected_batch_size > 0:
        raise ValueError(f"expected_batch_size must be positive, got {expected_batch_size}")
      self._expected_batch_size = float(expected_batch_size)

    def _compute_gradients(self, loss, var_list, grad_loss=None, tape=None):
      if callable(loss):
        raise ValueError("pass the per-example loss vector and the tape")
      grads_and_vars = super()._compute_gradients(loss, var_list, grad_loss, tape)
      microbatches = tf.cast(tf.shape(loss)[0], tf.float32)  # num_microbatches=None
      scale = microbatches / self._expected_batch_size
      return [(g * tf.cast(scale, g.dtype), v) for g, v in grads_and_vars]

  ExpectedBatchOptimizer.__name__ = "ExpectedBatch" + optimizer_class.__name__
  return ExpectedBatchOptimizer


ExpectedBatchDPAdam = divided_by_expected_batch(dp_optimizer_keras.GenericDPAdamOptimizer)


class FastDPKerasAdamOptimizer(ExpectedBatchDPAdam):
  """TF Privacy's DP Adam (Gaussian sum query, one example per microbatch) that can also
  take its per-example clipped sums from `clipped_gradient_sum`.

  `minimize(vector_loss, var_list, tape=tape)` still works as in DPKerasAdamOptimizer;
  `minimize_examples` is the fast path for a model and a per-example loss.
  """

  def __init__(self, l2_norm_clip: float, noise_multiplier: float,
               noise_rng: Optional[tf.random.Generator] = None,
               expected_batch_size: float = 1.0, **adam_kwargs):
    super().__init__(
        dp_sum_query=gaussian_sum_query(l2_norm_clip, noise_multiplier, noise_rng),
        num_microbatches=None, expected_batch_size=expected_batch_size, **adam_kwargs)
    self._l2_norm_clip = l2_norm_clip
    self._noise_multiplier = noise_multiplier

  def noised_mean(self, clipped_sums: List[tf.Tensor], batch_size) -> List[tf.Tensor]:
    """Gaussian noise of stddev C * noise_multiplier on each sum (the query's own noise,
    as in `_compute_gradients`), then divided by batch_size (the expected batch)."""
    noised, self._global_state, _ = self._dp_sum_query.get_noised_result(
        clipped_sums, self._global_state)
    return [g / tf.cast(batch_size, g.dtype) for g in noised]

  def minimize_examples(self, model: tf.keras.Model, calls: Sequence[Sequence[tf.Tensor]],
                        example_loss_fn: ExampleLossFn) -> tf.Tensor:
    """One DP Adam step on model.trainable_variables; returns the per-example losses."""
    sums, losses, _ = clipped_gradient_sum(model, calls, example_loss_fn,
                                           self._l2_norm_clip)
    gradients = self.noised_mean(sums, self._expected_batch_size)
    self._was_dp_gradients_called = True  # the gradients above are clipped and noised
    self.apply_gradients(zip(gradients, model.trainable_variables))
    return losses
