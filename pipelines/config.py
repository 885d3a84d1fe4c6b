"""Typed configuration of the TFX pipeline."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

from clinical_dp.release_layout import RELEASE_DIR
from components.evaluation_report import ReportConfig, fast_report_config
from federated.config import DEFAULT_FEDERATED_RELEASE, FederatedConfig
from federated.workers import WorkersConfig
from trainers import classifier_run_fn, gan_run_fn
from trainers.classifier import ClassifierConfig
from trainers.dp_training import SEED_KEY, PrivacyBudget
from trainers.gan import GanConfig, paper_config
from trainers.gan_checkpoint import DEFAULT_EVERY_SECONDS, CheckpointConfig
from trainers.preprocessing import SPEC_KEY

BEAM_MODES = ("in_memory", "multi_processing", "multi_threading")
TRAINING_MODES = ("default", "paper")
FAST_EPOCHS = 2
CHECKPOINTS_DIR = "checkpoints"  # under the run directory, or the pipeline root on Kubeflow


def gan_checkpoint_dir(output_dir: str) -> str:
  return os.path.join(output_dir, CHECKPOINTS_DIR, "gan")


@dataclasses.dataclass(frozen=True)
class BeamConfig:
  """Where Beam runs. DirectRunner in memory by default; any runner by extra args."""
  mode: str = "in_memory"
  workers: int = 1
  extra_args: Tuple[str, ...] = ()

  def pipeline_args(self) -> List[str]:
    if self.mode not in BEAM_MODES:
      raise ValueError(f"beam mode must be one of {list(BEAM_MODES)}, got {self.mode!r}")
    return [f"--direct_running_mode={self.mode}", f"--direct_num_workers={self.workers}",
            *self.extra_args]


@dataclasses.dataclass(frozen=True)
class SplitConfig:
  """Hash buckets of the patient split; test is held out from all training and tuning."""
  train: int = 8
  eval: int = 1
  test: int = 1


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """The DP trainers and what each may spend. Each released artifact has its own budget;
  released together, their epsilons and deltas add up (basic composition)."""
  mode: str = "default"
  gan: GanConfig = GanConfig()
  gan_budget: PrivacyBudget = PrivacyBudget(target_epsilon=1.0, delta=1e-5)
  classifier: ClassifierConfig = ClassifierConfig()
  classifier_budget: PrivacyBudget = PrivacyBudget(target_epsilon=1.0, delta=1e-5)
  synthetic_patients: int = 0  # 0: as many as the generator was trained on
  train_twin: bool = False  # non-private classifier for comparison; never released
  gan_checkpoint_seconds: float = DEFAULT_EVERY_SECONDS  # how often GAN training checkpoints
  # The DP trainers' seed. None (every real run): each trainer draws a secret one
  # (clinical_dp/secret_seed.py). A number reproduces a run, for tests and benchmarks, and
  # lets whoever knows it redraw the noise.
  seed: Optional[int] = None

  def _seeded(self, custom: Dict) -> Dict:
    return custom if self.seed is None else {**custom, SEED_KEY: self.seed}

  def gan_custom_config(self, spec_dict: Dict[str, Any],
                        checkpoint: Optional[CheckpointConfig] = None) -> Dict:
    """The GAN Trainer's custom_config (JSON-serializable); with `checkpoint`, training
    checkpoints there and resumes from what it finds (trainers/gan_checkpoint.py)."""
    custom = {SPEC_KEY: spec_dict, gan_run_fn.GAN_KEY: dataclasses.asdict(self.gan),
              gan_run_fn.BUDGET_KEY: dataclasses.asdict(self.gan_budget)}
    if checkpoint is not None:
      custom[gan_run_fn.CHECKPOINT_KEY] = checkpoint.to_dict()
    return self._seeded(custom)

  def classifier_custom_config(self, spec_dict: Dict[str, Any], private: bool = True) -> Dict:
    """The DP classifier's (or, private=False, its twin's) Trainer custom_config."""
    return self._seeded({
        SPEC_KEY: spec_dict,
        classifier_run_fn.CLASSIFIER_KEY: dataclasses.asdict(self.classifier),
        classifier_run_fn.BUDGET_KEY: dataclasses.asdict(self.classifier_budget),
        classifier_run_fn.PRIVATE_KEY: private})


def training_config(mode: str = "default", fast: bool = False, epochs: Optional[int] = None,
                    train_twin: bool = False) -> TrainingConfig:
  """Our defaults, or SPRINT_gan's published setting ("paper"); `epochs` overrides both
  trainers' epochs (paper mode on fewer epochs is the same algorithm, for a smoke test)."""
  if mode not in TRAINING_MODES:
    raise ValueError(f"training mode must be one of {list(TRAINING_MODES)}, got {mode!r}")
  epochs = epochs or (FAST_EPOCHS if fast else None)
  config = TrainingConfig(train_twin=train_twin)
  if mode == "paper":
    # SPRINT_gan reports epsilon about 1.9 for 500 epochs; the budget leaves room for it.
    config = dataclasses.replace(config, mode=mode, gan=paper_config(),
                                 gan_budget=PrivacyBudget(target_epsilon=3.0, delta=1e-5))
  if epochs:
    config = dataclasses.replace(config, gan=dataclasses.replace(config.gan, epochs=epochs),
                                 classifier=dataclasses.replace(config.classifier, epochs=epochs))
  return config


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything create_pipeline needs besides the dataset spec."""
  pipeline_name: str
  output_dir: str
  input_dir: str
  splits: SplitConfig = SplitConfig()
  beam: BeamConfig = BeamConfig()
  enable_cache: bool = False
  max_patients: int = 0  # 0 keeps every patient; the fast configuration samples a subset
  training: TrainingConfig = TrainingConfig()
  report: ReportConfig = ReportConfig()
  # The federated step runs when the spec names a site column; None leaves it out.
  federated: Optional[FederatedConfig] = FederatedConfig()
  # Where its rounds run (federated.simulate's worker flags): infrastructure, kept out of
  # FederatedConfig, which says what is trained and is recorded with the models.
  federated_workers: WorkersConfig = WorkersConfig()
  # The federated step's child starts when ExampleGen has written the examples (or at
  # the latest when the AnomalyGate passes; a gate that fails ends it) and runs beside the
  # rest of the chain, FederatedStep's turn coming after it (components/early_start.py):
  # `clinical-dp run` only; LocalDagRunner alone would start it in its turn and
  # Kubeflow runs independent steps side by side itself.
  federated_beside_chain: bool = False
  # The report's references (the real table's models and the DP baselines, which need no
  # generator: components/report_references.py) start beside the chain when ExampleGen
  # has written the examples, under `clinical-dp run`, on tables of at most this many
  # training rows (None: never). Above it the report computes them in its turn: its
  # splits, read a second time beside the chain's own components and the federated
  # child, would cost more memory than the time saved is worth (the report's reading
  # alone held 5 GB at a million patients; docs/benchmarks.md).
  references_beside_chain_max_rows: Optional[int] = 300_000
  # Where ReleasePusher writes what may be published: None, <output_dir>/release; "",
  # its own output artifact under the pipeline root (Kubeflow without a root given).
  release_uri: Optional[str] = None
  # The DP federated models ReleasePusher publishes (federated_release's names).
  release_federated: Tuple[str, ...] = DEFAULT_FEDERATED_RELEASE
  # GAN checkpoints in one subdirectory per data and settings (Kubeflow, where the
  # pipeline root outlives runs), rather than the run directory's own (local runs).
  checkpoints_by_fingerprint: bool = False

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_dir, "tfx")

  @property
  def release_destination(self) -> str:
    if self.release_uri is not None:
      return self.release_uri
    return os.path.join(self.output_dir, RELEASE_DIR)

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_dir, "metadata.sqlite")

  @property
  def gan_checkpoint(self) -> Optional[CheckpointConfig]:
    """Where GAN training checkpoints: outside the Trainer's per-execution outputs, so
    that a new execution (`clinical-dp run --resume`, a retried Kubeflow step) finds
    them; None without an output directory (Kubeflow without a pipeline root)."""
    if not self.output_dir:
      return None
    return CheckpointConfig(directory=gan_checkpoint_dir(self.output_dir),
                            every_seconds=self.training.gan_checkpoint_seconds,
                            by_fingerprint=self.checkpoints_by_fingerprint)


def with_budget(training: TrainingConfig, target_epsilon: Optional[float] = None,
                delta: Optional[float] = None) -> TrainingConfig:
  """`training` with each released model's budget changed where a value is given
  (`clinical-dp run --target-epsilon / --delta`)."""
  if target_epsilon is None and delta is None:
    return training
  def budget(default: PrivacyBudget) -> PrivacyBudget:
    return PrivacyBudget(target_epsilon if target_epsilon is not None else default.target_epsilon,
                         delta if delta is not None else default.delta)
  return dataclasses.replace(training, gan_budget=budget(training.gan_budget),
                             classifier_budget=budget(training.classifier_budget))


def build_config(output_dir: str, *, fast: bool = False,
                 training: Optional[TrainingConfig] = None, seed: Optional[int] = None,
                 federated: bool = True,
                 release_federated: Tuple[str, ...] = DEFAULT_FEDERATED_RELEASE,
                 beam: BeamConfig = BeamConfig(), checkpoints_by_fingerprint: bool = False,
                 pipeline_name: str = "clinical-dp", input_dir: Any = None,
                 release_uri: Optional[str] = None,
                 federated_workers: WorkersConfig = WorkersConfig()) -> PipelineConfig:
  """The one builder of a PipelineConfig, for every runner: `clinical-dp run` (cli/run.py),
  the TFX CLI's pipelines/local_runner.py and the Kubeflow compiler (kubeflow/runner.py).

  Without `input_dir`, a local run: output_dir is made absolute and the prepared table goes
  in output_dir/input. Kubeflow passes its data root (a runtime parameter) as input_dir and
  its pipeline root (a URI, or "") as output_dir, kept as given. `fast` is the small
  configuration of tests and smoke runs; `seed` seeds the DP trainers and the federated
  step (None: secret seeds); federated=False leaves the federated step out.
  """
  if input_dir is None:
    output_dir = os.path.abspath(output_dir)
    input_dir = os.path.join(output_dir, "input")
  training = training or training_config(fast=fast)
  federated_config = FederatedConfig.fast() if fast else FederatedConfig()
  if seed is not None:
    training = dataclasses.replace(training, seed=seed)
    federated_config = dataclasses.replace(federated_config, seed=seed)
  return PipelineConfig(pipeline_name=pipeline_name, output_dir=output_dir, input_dir=input_dir,
                        beam=beam, max_patients=600 if fast else 0, training=training,
                        report=fast_report_config() if fast else ReportConfig(),
                        federated=federated_config if federated else None,
                        federated_workers=federated_workers, release_uri=release_uri,
                        release_federated=release_federated,
                        checkpoints_by_fingerprint=checkpoints_by_fingerprint)
