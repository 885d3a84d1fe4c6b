"""Checkpoints of DP AC-GAN training, so that an interrupted run resumes where it stopped.

A checkpoint holds everything the rest of the run depends on: both networks, both
optimizers (Adam moments, iteration counts), the TF random streams of the run
(gan.TrainingRandomness: latent draws, dropout masks, DP noise), the NumPy generator that
draws the batches, and the number of DP steps taken. Restored, the run continues as if
it had never stopped: the same batches, noise and weights as an uninterrupted run
(tests/test_gan_resume.py), and the same privacy record, because the record is computed
from the plan, which counts each planned step once however many processes ran them.
Steps taken after the last checkpoint by a process that then died were never saved or
released, so they are redone, not counted twice.

What is saved is tied to the exact data and settings by a fingerprint (the training
arrays, the trainer config, the budget, the seed or "secret"): resuming with anything
else is refused. The DP statistics released before the first step are derived again on
resume from the same data and seed; a fingerprint of the released values checks that
they came out identical (else they would be a second, uncounted release). A run without
an explicit seed draws a secret one and keeps it in `seed.json` before its first draw,
so that a resume, even after a crash before the first checkpoint, draws the same
statistics (clinical_dp/secret_seed.py).

Files (tf.io.gfile, so gs:// works): TF checkpoints `ckpt-<steps>` kept by a
tf.train.CheckpointManager (the last two), `progress.json`, written atomically after
each checkpoint, which names the checkpoint to restore, and `seed.json`. A checkpoint
holds the discriminator, which saw the real patients, and seed.json the secret behind
the noise: never release either.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import signal
import threading
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from clinical_dp import secret_seed

PROGRESS_FILE = "progress.json"
SEED_FILE = "seed.json"
DEFAULT_EVERY_SECONDS = 180.0  # at most three minutes of training lost to a crash
KEEP_CHECKPOINTS = 2  # the one progress.json names stays while the next is written


class CheckpointMismatchError(ValueError):
  """A checkpoint that belongs to other data or settings than the run resuming it."""


def _other_run(directory: str) -> CheckpointMismatchError:
  return CheckpointMismatchError(
      f"the checkpoint in {directory} is of other training data or settings than this "
      "run's; resume with the run's own arguments and data, or start a new run")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """Where and how often a GAN run checkpoints; directory "" writes none."""
  directory: str = ""
  every_seconds: float = DEFAULT_EVERY_SECONDS
  # One subdirectory per fingerprint: for a checkpoint root that outlives runs (the
  # pipeline root on Kubeflow), a retried step finds its own checkpoint and a run on
  # other data or settings starts afresh. Locally the run directory is the run's own,
  # and a checkpoint that does not match is an error.
  by_fingerprint: bool = False

  def to_dict(self) -> Dict:
    return dataclasses.asdict(self)

  def run_directory(self, run_fingerprint: str) -> str:
    """Where the run with this fingerprint checkpoints."""
    return (os.path.join(self.directory, run_fingerprint[:16]) if self.by_fingerprint
            else self.directory)


@dataclasses.dataclass(frozen=True)
class Progress:
  """What progress.json says about the checkpoint it names."""
  fingerprint: str
  statistics_fingerprint: str
  steps_done: int
  total_steps: int
  numpy_rng_state: Dict  # np.random.Generator.bit_generator.state
  checkpoint: str  # the TF checkpoint's prefix
  saved_at: str  # UTC, ISO 8601
  reason: str  # "periodic", "interrupted: ...", "finished"

  @property
  def finished(self) -> bool:
    return self.steps_done >= self.total_steps


def _hash_arrays(digest, arrays) -> None:
  for array in arrays:
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())


def fingerprint(arrays: List[np.ndarray], **settings) -> str:
  """SHA-256 of the training arrays and the settings (JSON-serializable values)."""
  digest = hashlib.sha256()
  _hash_arrays(digest, arrays)
  digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
  return digest.hexdigest()


def statistics_fingerprint(positive_rate: float, copula) -> str:
  """SHA-256 of what the run released before its first step (label rate, DP copula)."""
  digest = hashlib.sha256(repr(float(positive_rate)).encode())
  if copula is not None:
    _hash_arrays(digest, [p for group in copula.probabilities for p in group]
                 + list(copula.correlations) + [copula.group_sizes]
                 + ([copula.scales.knots] if copula.scales is not None else []))
  return digest.hexdigest()


def read_progress(directory: str) -> Optional[Progress]:
  """The last checkpoint's progress in `directory`, or None when there is none."""
  path = os.path.join(directory, PROGRESS_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return Progress(**json.load(f))


def _write_json_atomically(path: str, content: Dict) -> None:
  """Readers see the old file or the new one, never half of one (local and gs://)."""
  partial = f"{path}.partial"
  with tf.io.gfile.GFile(partial, "w") as f:
    json.dump(content, f, indent=2)
  tf.io.gfile.rename(partial, path, overwrite=True)


def run_seed(config: Optional[CheckpointConfig], run_fingerprint: str,
             seed: Optional[int]) -> int:
  """`seed` when given. Else the run's secret seed: the one an interrupted run kept in its
  checkpoint directory, or a new one, kept there before anything is drawn from it (with
  no checkpoint directory, a new one kept nowhere)."""
  if seed is not None:
    return int(seed)
  if config is None:
    return secret_seed.draw()
  directory = config.run_directory(run_fingerprint)
  path = os.path.join(directory, SEED_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      kept = json.load(f)
    if kept["fingerprint"] != run_fingerprint:
      raise _other_run(directory)
    return int(kept["seed"])
  tf.io.gfile.makedirs(directory)
  drawn = secret_seed.draw()
  _write_json_atomically(path, {"fingerprint": run_fingerprint, "seed": drawn})
  return drawn


class GanCheckpoints:
  """Restores a run's last checkpoint and saves new ones (periodically, on interrupt, at
  the end). `objects` are the tf.train.Checkpoint's: models, optimizers, generators."""

  def __init__(self, config: CheckpointConfig, run_fingerprint: str, released: str,
               total_steps: int, objects: Dict[str, object],
               log: Callable[[str], None]):
    self.directory = config.run_directory(run_fingerprint)
    self._config, self._fingerprint, self._released = config, run_fingerprint, released
    self._total, self._log = total_steps, log
    self._checkpoint = tf.train.Checkpoint(**objects)
    self._manager = tf.train.CheckpointManager(self._checkpoint, self.directory,
                                               max_to_keep=KEEP_CHECKPOINTS,
                                               checkpoint_name="ckpt")
    self._last_time = time.monotonic()
    self._last_steps: Optional[int] = None

  def restore(self, rng: np.random.Generator) -> int:
    """The steps already taken (0 without a checkpoint); the models, optimizers, TF
    generators and `rng` are as they were after them."""
    progress = read_progress(self.directory)
    if progress is None:
      return 0
    if progress.fingerprint != self._fingerprint:
      raise _other_run(self.directory)
    if progress.statistics_fingerprint != self._released:
      raise CheckpointMismatchError(
          f"the DP statistics derived again for the checkpoint in {self.directory} differ "
          "from those of the interrupted run (another library version?); resuming would "
          "release them twice, so start a new run")
    # Optimizer slots not created yet are restored when the first step creates them.
    self._checkpoint.restore(progress.checkpoint).assert_existing_objects_matched()
    rng.bit_generator.state = progress.numpy_rng_state
    self._last_steps = progress.steps_done
    self._log(f"  DP AC-GAN: resuming from step {progress.steps_done} of "
              f"{progress.total_steps} (checkpoint of {progress.saved_at}, {self.directory})")
    return progress.steps_done

  @property
  def saved_steps(self) -> Optional[int]:
    """The steps of the last checkpoint saved or restored by this run (None: none)."""
    return self._last_steps

  def due(self) -> bool:
    return time.monotonic() - self._last_time >= self._config.every_seconds

  def save(self, steps_done: int, rng: np.random.Generator, reason: str) -> None:
    """A checkpoint after `steps_done` steps (the state must be exactly that)."""
    self._last_time = time.monotonic()
    if steps_done == self._last_steps:
      return
    prefix = self._manager.save(checkpoint_number=steps_done)
    _write_json_atomically(os.path.join(self.directory, PROGRESS_FILE), dataclasses.asdict(
        Progress(fingerprint=self._fingerprint, statistics_fingerprint=self._released,
                 steps_done=steps_done, total_steps=self._total,
                 numpy_rng_state=rng.bit_generator.state, checkpoint=prefix,
                 saved_at=datetime.datetime.now(datetime.timezone.utc).isoformat(
                     timespec="seconds"), reason=reason)))
    self._last_steps = steps_done


class DeferredInterrupts:
  """SIGTERM and SIGINT held until the training step under way ends.

  A signal handled at once lands inside a step nearly always (the steps are where the
  time goes), when the state is half of one step and half of the next, and cannot be
  saved. Held until the step ends, it costs one step's wait (milliseconds here) and the
  checkpoint holds every step taken. `deliver()` then does what the handler that was in
  place would have done: under `clinical-dp run` the console's (clinical_dp/console.py:
  RunInterrupted, its grace period, the FAILED marker); where none was set (Kubeflow,
  whose preemption sends SIGTERM), the default: the process ends by the signal. A second
  signal while one is held is delivered at once.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.pending: Optional[int] = None
    self._previous: Dict[int, object] = {}

  def __enter__(self) -> "DeferredInterrupts":
    if threading.current_thread() is threading.main_thread():  # else signals cannot be set
      self._previous = {s: signal.getsignal(s) for s in self.SIGNALS}
      for s in self.SIGNALS:
        signal.signal(s, self._hold)
    return self

  def __exit__(self, *exc_info) -> None:
    self._restore()

  def _restore(self) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    self._previous = {}

  def _hold(self, signum, frame) -> None:  # pylint: disable=unused-argument
    if self.pending is not None:
      self.deliver()
    self.pending = signum

  def deliver(self) -> None:
    """Hands a held signal to the handler that was in place before (which may raise)."""
    signum, self.pending = self.pending, None
    if signum is None:
      return
    handler = self._previous.get(signum, signal.SIG_DFL)
    self._restore()
    if callable(handler):
      handler(signum, None)
    elif handler != signal.SIG_IGN:  # the default action: end the process by the signal
      os.kill(os.getpid(), signum)
