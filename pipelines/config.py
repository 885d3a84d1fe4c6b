"""Typed configuration of the TFX pipeline."""

from __future__ import annotations

import dataclasses
import os
from typing import List, Tuple

BEAM_MODES = ("in_memory", "multi_processing", "multi_threading")


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
class PipelineConfig:
  """Everything create_pipeline needs besides the dataset spec."""
  pipeline_name: str
  output_dir: str
  input_dir: str
  splits: SplitConfig = SplitConfig()
  beam: BeamConfig = BeamConfig()
  enable_cache: bool = False
  max_patients: int = 0  # 0 keeps every patient; the fast configuration samples a subset

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_dir, "tfx")

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_dir, "metadata.sqlite")


def default_config(output_dir: str, pipeline_name: str = "clinical-dp", fast: bool = False
                   ) -> PipelineConfig:
  """The default configuration, or the small one used by tests and smoke runs."""
  output_dir = os.path.abspath(output_dir)
  return PipelineConfig(pipeline_name=pipeline_name, output_dir=output_dir,
                        input_dir=os.path.join(output_dir, "input"),
                        max_patients=600 if fast else 0)
