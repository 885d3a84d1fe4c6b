"""Entry point for the TFX CLI:

  tfx pipeline create --engine=local --pipeline_path=pipelines/local_runner.py
  tfx run create --engine=local --pipeline_name=clinical-dp

The CLI runs this file as a script. Which table it runs on comes from the
environment (CLINICAL_DP_DATA, CLINICAL_DP_SPEC, CLINICAL_DP_OUTPUT, CLINICAL_DP_FAST,
CLINICAL_DP_RELEASE_FEDERATED as `clinical-dp run --release-federated`); without them it
simulates the default SPRINT-like table under outputs/.
"""

import os

# clinical_dp first: it selects Keras 2 before TensorFlow is imported.
from clinical_dp.simulators import simulate, write_simulated
from clinical_dp.spec import load_spec
from tfx import v1 as tfx  # pylint: disable=g-bad-import-order
from clinical_dp.validation import load_valid_table
from federated.config import DEFAULT_FEDERATED_RELEASE, federated_release
from pipelines.config import build_config
from pipelines.input_selection import plan_run, prepare_input
from pipelines.pipeline import create_pipeline

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEFAULT_DATA_DIR = os.path.join(_PROJECT_ROOT, "outputs", "data", "sprint")


def _data_and_spec():
  data = os.environ.get("CLINICAL_DP_DATA")
  spec = os.environ.get("CLINICAL_DP_SPEC")
  if data and spec:
    return data, spec
  if data or spec:
    raise SystemExit("set both CLINICAL_DP_DATA and CLINICAL_DP_SPEC, or neither")
  data = os.path.join(_DEFAULT_DATA_DIR, "data.csv")
  spec = os.path.join(_DEFAULT_DATA_DIR, "spec.yaml")
  if not (os.path.exists(data) and os.path.exists(spec)):
    write_simulated(_DEFAULT_DATA_DIR, *simulate("sprint"))
  return data, spec


def main():
  data_path, spec_path = _data_and_spec()
  spec = load_spec(spec_path)
  release = os.environ.get("CLINICAL_DP_RELEASE_FEDERATED")
  # The output directory outlives runs here (nothing clears it): GAN checkpoints go in
  # a directory per data and settings, so a rerun on another table starts afresh and an
  # interrupted one resumes (trainers/gan_checkpoint.py).
  config = build_config(
      os.environ.get("CLINICAL_DP_OUTPUT", os.path.join(_PROJECT_ROOT, "outputs", "tfx_cli_run")),
      fast=os.environ.get("CLINICAL_DP_FAST", "") not in ("", "0"),
      release_federated=federated_release(release) if release else DEFAULT_FEDERATED_RELEASE,
      checkpoints_by_fingerprint=True)
  selected, config = plan_run(load_valid_table(data_path, spec), spec, config)
  prepare_input(selected, spec, config)
  tfx.orchestration.LocalDagRunner().run(create_pipeline(config, spec))


if __name__ == "__main__":
  main()
