"""Paper mode's DP AC-GAN steps at expected batch 1: the DP update, many steps per call.

SPRINT_gan trains with one patient per step on average: its batches are Poisson samples
(each training row enters each step independently with probability q = 1/N, so a batch
holds 0, 1, 2, ... rows: at q = 1/N about 37% of steps are empty, 37% hold one row, 18%
two). One step here, with C the clip, sigma the noise multiplier and B = 1 the expected
batch (the plan's batch_size, a public constant):

  g_i = gradient of row i's AC-GAN example loss (real patient i and its own generated
        partner), for each row i of the step's batch
  s   = sum_i g_i * min(1, C / |g_i|)    (each row clipped alone, to global L2 norm C
                                         over all discriminator weights)
  u   = (s + N(0, (sigma C)^2)) / B      (noise per coordinate; B, never the realized
                                         batch size, whose value depends on who was drawn)
  Adam(learning rate, beta_1) on u       (the fused kernel of Keras 2's legacy Adam)

followed by the generator's own step(s), as trainers/gan.py defines them. An empty
batch still takes the step: s = 0, so u is the noise alone, through Adam, and the
generator's step(s) follow every planned step. Adding or removing a patient's row adds
or removes one clipped term of s, so under "one patient added or removed" s has L2
sensitivity C (k C for a patient with k rows, which trainers/accounting.py accounts
for), and each step is the Poisson-sampled Gaussian mechanism (rate q, noise multiplier
sigma) that the plan accounts. At a one-row batch the step is TF Privacy's
DPKerasAdamOptimizer's.

What differs from a per-step trainer is only where the time goes. At SPRINT_gan's size
(417 k discriminator weights) a step is a handful of passes over the weights, and
measured here (benchmarks/gan_training_time.py, 2 shared cores) the largest of them was
drawing the noise: TensorFlow's Philox and Box-Muller took several milliseconds per step
for 417 k normals. So:

* The noise comes from NumPy (`StepNoise`): a pure function of (seed, step), so a
  resumed run draws the same noise, drawn in a background thread for the next block
  of steps while TensorFlow runs the current one (the second core), and handed to
  TensorFlow in place (DLPack), not copied.
* Many steps run in one tf.function call (a graph while loop over the steps, and within
  a step a while loop over its rows), under TensorFlow's single-threaded executor: the
  step's ops are small, and handing them between threads cost more than it bought. For
  the same reason paper mode asks TensorFlow for one intra-op thread
  (`use_one_intra_op_thread`, which only works before TensorFlow's runtime starts:
  `clinical-dp run --mode paper` calls it). A call takes its steps' rows as one flat
  vector and a row count per step, of any lengths, so it is traced once.
* A step's noise row is the starting value of its sum, and each clipped gradient is
  added to it: no pass over the weights to zero an accumulator, and a one-row step
  costs what a fixed batch of one did.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from trainers import accounting, gan

# SeedSequence entropy that keeps this stream apart from every other use of the seed.
_NOISE_STREAM = 0x6E6F697365  # "noise"
_ALIGN_BYTES = 64  # DLPack hands TensorFlow an aligned buffer in place, and aligned rows
                   # and segments stay views there


@dataclasses.dataclass(frozen=True)
class Batch1Settings:
  """How the batch-1 loop runs; none of these changes the update or its noise."""
  steps_per_call: int = 64
  prefetch_noise: bool = True  # draw the next block's noise while this one trains
  single_threaded_executor: bool = True


def applies(config: gan.GanConfig, plan: accounting.PrivacyPlan) -> bool:
  """Whether the config asks for the fused loop and the plan's batches are Poisson
  samples of expected size 1: the steps the loop takes, as the plan accounts them."""
  return (config.dp_method == gan.BATCH1_METHOD and plan.batch_size == 1
          and plan.sampling == "poisson")


def use_one_intra_op_thread() -> bool:
  """Asks TensorFlow for one intra-op thread, process-wide; False when its runtime has
  already started (the setting is fixed then). Measured on 2 shared cores, the graph's
  part of a batch-1 step took 2.4-3.0 ms with one thread against 4.4-4.6 ms with two:
  its ops are too small to gain from being split, and the second core draws the noise."""
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
  except RuntimeError:
    return False
  return True


class StepNoise:
  """Gaussian noise of each DP step, for weights of the given shapes, drawn with NumPy.

  Step t's noise is a pure function of (seed, t): its own PCG64 stream seeded through a
  SeedSequence of (seed, a stream tag, t), so any block of steps can be drawn in any
  order, or again after a restart. Each pair of normals is R (cos T, sin T) with
  R^2 = 2E, E standard exponential (NumPy's ziggurat) and T uniform on [0, 2 pi): R^2
  is chi-square with 2 degrees of freedom, so the pair is exactly two independent
  normals (Box-Muller with an exponential radius); measured here about 2.5x faster
  than NumPy's float32 normal ziggurat and 3x faster than TensorFlow's
  tf.random.normal, and its float32 tail reaches about 7 sigma (TensorFlow's float32
  Box-Muller, which TF Privacy uses, stops near 5.7).

  A step's noise is one flat row: each weight's segment starts on a 64-byte boundary,
  so that TensorFlow can take a row and its segments as views, not copies.
  """

  def __init__(self, shapes: Sequence[Sequence[int]], seed: int, stddev: float = 1.0):
    self.shapes = [tuple(int(d) for d in s) for s in shapes]
    self.sizes = [int(np.prod(s)) for s in self.shapes]
    floats_per_line = _ALIGN_BYTES // 4
    self.offsets = np.cumsum([0] + [-(-n // floats_per_line) * floats_per_line
                                    for n in self.sizes]).tolist()
    self.row_size = self.offsets[-1]
    self.seed, self.stddev = int(seed), float(stddev)

  def fill(self, step: int, out: np.ndarray) -> np.ndarray:
    """Fills the flat float32 `out` with step's N(0, stddev^2) draws."""
    rng = np.random.Generator(np.random.PCG64(
        np.random.SeedSequence((self.seed, _NOISE_STREAM, int(step)))))
    size = out.size
    half = (size + 1) // 2
    radius = rng.standard_exponential(half, dtype=np.float32)
    np.multiply(radius, 2.0, out=radius)
    np.sqrt(radius, out=radius)
    radius *= np.float32(self.stddev)
    angle = rng.random(half, dtype=np.float32)
    angle *= np.float32(2.0 * np.pi)
    np.cos(angle, out=out[:half])
    out[:half] *= radius
    np.sin(angle[:size - half], out=out[half:])
    out[half:] *= radius[:size - half]
    return out

  def block(self, first_step: int, count: int, out: Optional[np.ndarray] = None
            ) -> np.ndarray:
    """Rows [count, row_size] for steps first_step .. first_step + count - 1 (into
    `out` when given: a buffer of at least count rows from `empty_block`)."""
    rows = self.empty_block(count) if out is None else out[:count]
    for row in range(count):
      self.fill(first_step + row, rows[row])
    return rows

  def empty_block(self, count: int) -> np.ndarray:
    return _aligned_empty((count, self.row_size))

  def weights(self, row: tf.Tensor) -> List[tf.Tensor]:
    """One step's row as tensors shaped like the weights (views in TensorFlow)."""
    return [tf.reshape(row[start:start + size], shape) for start, size, shape in
            zip(self.offsets, self.sizes, self.shapes)]

  def for_step(self, step: int) -> List[np.ndarray]:
    """Step's noise shaped like the weights (for tests and reference checks)."""
    row = self.fill(step, np.empty(self.row_size, np.float32))
    return [row[start:start + size].reshape(shape) for start, size, shape in
            zip(self.offsets, self.sizes, self.shapes)]


def _aligned_empty(shape: Tuple[int, ...]) -> np.ndarray:
  """float32 array whose buffer starts on a 64-byte boundary."""
  count = int(np.prod(shape))
  raw = np.empty(count * 4 + _ALIGN_BYTES, np.uint8)
  offset = (-raw.ctypes.data) % _ALIGN_BYTES
  return raw[offset:offset + count * 4].view(np.float32).reshape(shape)


class Batch1DpAdam:
  """DP Adam of the loop, given the noise: each row's gradient clipped alone to global L2
  norm C (tf.clip_by_global_norm, as TF Privacy's Gaussian query), the clipped gradients
  summed onto the noise, the sum divided by the expected batch, Adam. Adam is Keras 2's
  legacy Adam (one fused ResourceApplyAdam per weight), the class TF Privacy's
  DPKerasAdamOptimizer extends, so its state is the same."""

  def __init__(self, l2_norm_clip: float, noise_multiplier: float, learning_rate: float,
               beta_1: float, expected_batch_size: float = 1.0):
    self.l2_norm_clip, self.noise_multiplier = float(l2_norm_clip), float(noise_multiplier)
    self.expected_batch_size = float(expected_batch_size)
    self.adam = tf.keras.optimizers.legacy.Adam(learning_rate, beta_1=beta_1)

  @property
  def noise_stddev(self) -> float:
    return self.l2_norm_clip * self.noise_multiplier

  def clip(self, gradients: Sequence[tf.Tensor]) -> Tuple[List[tf.Tensor], tf.Tensor]:
    """One row's gradient clipped to global L2 norm C, and its norm before clipping."""
    return tf.clip_by_global_norm(list(gradients), self.l2_norm_clip)

  def step(self, noised_sum: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> None:
    """Adam on noised_sum (the clipped gradients' sum plus the noise) / expected batch."""
    if self.expected_batch_size != 1.0:  # at 1, no pass over the weights for nothing
      noised_sum = [g / self.expected_batch_size for g in noised_sum]
    self.adam.apply_gradients(zip(noised_sum, variables))

  def apply(self, row_gradients: Sequence[Sequence[tf.Tensor]],
            variables: Sequence[tf.Variable], noise: Sequence[tf.Tensor]) -> List[tf.Tensor]:
    """One update from the gradients of a step's rows, one list per row (none for an
    empty batch); `noise` is N(0, noise_stddev^2) shaped like the variables. Returns each
    row's gradient norm before clipping."""
    noised_sum, norms = list(noise), []
    for gradients in row_gradients:
      clipped, norm = self.clip(gradients)
      noised_sum = [s + c for s, c in zip(noised_sum, clipped)]
      norms.append(norm)
    self.step(noised_sum, variables)
    return norms


class Batch1Training:
  """Paper mode's training loop: K steps per tf.function call, noise drawn ahead."""

  def __init__(self, discriminator: tf.keras.Model, generator: tf.keras.Model,
               config: gan.GanConfig, inputs: Sequence[np.ndarray], labels: np.ndarray,
               noise_seed: int, latent_rng: Optional[tf.random.Generator] = None,
               settings: Batch1Settings = Batch1Settings()):
    self.discriminator, self.generator, self.config = discriminator, generator, config
    self.latent_rng = latent_rng  # generated patients' draws (gan.TrainingRandomness)
    self.settings = settings
    # The expected batch is the plan's batch_size, the config's (plan_for copies it).
    self.d_optimizer = Batch1DpAdam(config.l2_norm_clip, config.noise_multiplier,
                                    config.discriminator_learning_rate, config.beta_1,
                                    expected_batch_size=config.batch_size)
    # Legacy Adam: the same update as gan.generator_optimizer's, in one fused kernel.
    self.g_optimizer = tf.keras.optimizers.legacy.Adam(config.generator_learning_rate,
                                                       beta_1=config.beta_1)
    variables = discriminator.trainable_variables
    # Adam's variables made here, not by the first trace: a tf.function whose trace makes
    # variables is traced a second time, which doubled the first call's time.
    self.d_optimizer.adam._create_all_weights(variables)  # pylint: disable=protected-access
    self.g_optimizer._create_all_weights(  # pylint: disable=protected-access
        generator.trainable_variables)
    self.noise = StepNoise([v.shape for v in variables], noise_seed,
                           self.d_optimizer.noise_stddev)
    self._inputs = [tf.constant(x) for x in inputs]
    self._labels = tf.constant(labels.reshape(-1, 1).astype(np.int32))
    # Every length is None: Poisson batches of any size, and calls of any number of
    # steps, run the one graph traced on the first call.
    self._run = tf.function(self._steps, autograph=False, input_signature=[
        tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None, self.noise.row_size))])

  @property
  def tracing_count(self) -> int:
    """How many times the loop's graph has been traced (1 after any number of calls)."""
    return self._run.experimental_get_tracing_count()

  def _row_gradient(self, index: tf.Tensor) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Row `index`'s example loss, paired with a generated partner drawn for it, and the
    loss's gradient."""
    config, discriminator = self.config, self.discriminator
    real = [tf.gather(x, index[tf.newaxis]) for x in self._inputs]
    real_labels = tf.gather(self._labels, index[tf.newaxis])
    fake, fake_labels = gan.sample_fake(self.generator, 1, config.latent_dim,
                                        rng=self.latent_rng)
    variables = discriminator.trainable_variables
    # Two batch-1 calls, as gan.discriminator_dp_step makes them: one call on [real;
    # generated] was slower here (its batch-2 matmuls leave oneDNN's matrix-vector path).
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(variables)
      loss = tf.reduce_sum(gan.discriminator_example_losses(
          discriminator, real, real_labels, [tf.stop_gradient(f) for f in fake],
          fake_labels))
    return loss, tape.gradient(loss, variables)

  def _one_step(self, rows: tf.Tensor, noise: List[tf.Tensor]
                ) -> Tuple[tf.Tensor, tf.Tensor]:
    """One DP step on `rows` (any number of them, none included): the discriminator's,
    then the generator's step(s). Returns the sum of the rows' losses and the generator's
    loss."""
    count = tf.shape(rows)[0]

    def add_row(j, loss_sum, *noised_sum):
      loss, gradients = self._row_gradient(rows[j])
      clipped, _ = self.d_optimizer.clip(gradients)
      return (j + 1, loss_sum + loss, *[s + c for s, c in zip(noised_sum, clipped)])

    # The sum starts as the noise: an empty batch's update is the noise alone.
    _, loss_sum, *noised_sum = tf.while_loop(
        lambda j, *_: j < count, add_row, (tf.constant(0), tf.constant(0.0), *noise))
    self.d_optimizer.step(noised_sum, self.discriminator.trainable_variables)
    g_loss = tf.constant(0.0)
    for _ in range(self.config.generator_steps):  # no real data involved
      g_loss = gan.generator_step(self.generator, self.discriminator, self.g_optimizer, 1,
                                  self.config.latent_dim, latent_rng=self.latent_rng)
    return loss_sum, g_loss

  def _steps(self, rows: tf.Tensor, counts: tf.Tensor, noise: tf.Tensor
             ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Steps in order: step i on the next counts[i] of `rows`, with noise row i."""
    count = tf.shape(counts)[0]
    starts = tf.cumsum(counts, exclusive=True)

    def body(i, d_losses, g_losses):
      d_loss, g_loss = self._one_step(rows[starts[i]:starts[i] + counts[i]],
                                      self.noise.weights(noise[i]))
      return i + 1, d_losses.write(i, d_loss), g_losses.write(i, g_loss)

    _, d_losses, g_losses = tf.while_loop(
        lambda i, *_: i < count, body,
        (tf.constant(0), tf.TensorArray(tf.float32, count), tf.TensorArray(tf.float32, count)))
    return d_losses.stack(), g_losses.stack()

  def _call(self, rows: np.ndarray, counts: np.ndarray, noise: np.ndarray):
    # TensorFlow copies a NumPy argument (about 2 MB a step here, into freshly mapped
    # pages); through DLPack it reads the aligned buffer in place. The buffer is not
    # written again until this call has returned (run's double buffering).
    assert noise.flags.c_contiguous and noise.ctypes.data % _ALIGN_BYTES == 0
    noise = tf.experimental.dlpack.from_dlpack(noise.__dlpack__())
    if not self.settings.single_threaded_executor:
      return self._run(rows, counts, noise)
    # Every call, the first (which instantiates the graph) included, under this executor.
    with tf.experimental.function_executor_type("SINGLE_THREADED_EXECUTOR"):
      return self._run(rows, counts, noise)

  def run(self, batches: Iterable[np.ndarray], first_step: int = 1
          ) -> Iterator[Tuple[int, Optional[float], float, bool]]:
    """Trains on each batch (the row indices of one step, any number, none included) in
    order; yields (step, the mean discriminator loss of its rows or None for an empty
    batch, generator loss, settled) per step, steps numbered from first_step. The losses
    come after the call that ran the step; `settled` marks the last step of a call,
    after which the models hold exactly the steps yielded so far (a checkpoint may be
    taken there), and no batch beyond them has been drawn."""
    size = self.settings.steps_per_call
    # Two noise buffers, reused: one trains while the other is drawn. A buffer is
    # refilled only after the call that read it has returned.
    buffers = [self.noise.empty_block(size) for _ in range(2)]
    step = first_step
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      draw = pool.submit if self.settings.prefetch_noise else _now
      pending = draw(self.noise.block, step, size, buffers[0])
      for call, (rows, counts) in enumerate(_chunks(batches, size)):
        noise = pending.result()[:len(counts)]
        pending = draw(self.noise.block, step + len(counts), size, buffers[(call + 1) % 2])
        d_losses, g_losses = self._call(rows, counts, noise)
        last = step + len(counts) - 1
        for count, d_loss, g_loss in zip(counts, d_losses.numpy(), g_losses.numpy()):
          yield (step, float(d_loss) / count if count else None, float(g_loss),
                 step == last)
          step += 1
      pending.result()  # the unused last draw: let it finish before its buffer goes


class _Done:
  """A finished future, for drawing the noise in the calling thread."""

  def __init__(self, value):
    self._value = value

  def result(self):
    return self._value


def _now(fn, *args):
  return _Done(fn(*args))


def _chunks(batches: Iterable[np.ndarray], size: int
            ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
  """Batches grouped `size` steps at a time, as (their rows in one int32 vector, each
  step's row count as int32); no batch beyond a group is drawn before it is yielded."""
  rows: List[np.ndarray] = []
  counts: List[int] = []
  for batch in batches:
    batch = np.asarray(batch)
    if batch.ndim != 1 or (batch.size and not np.issubdtype(batch.dtype, np.integer)):
      raise ValueError(f"a batch must be a vector of row indices, got {batch!r}")
    rows.append(batch)
    counts.append(len(batch))
    if len(counts) == size:
      yield _flat(rows, counts)
      rows, counts = [], []
  if counts:
    yield _flat(rows, counts)


def _flat(rows: List[np.ndarray], counts: List[int]) -> Tuple[np.ndarray, np.ndarray]:
  return np.concatenate(rows).astype(np.int32), np.asarray(counts, np.int32)
