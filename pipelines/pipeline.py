"""The pipeline definition: a pure function from configuration to a TFX pipeline."""

import json
from typing import Callable, List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from clinical_dp.names import ColumnKeys
from clinical_dp.spec import DatasetSpec
from components.anomaly_gate import AnomalyGate
from components.evaluation_report import SEX_COLUMN, EvaluationReport
from components.release import ReleasePusher
from components.spec_schema_gen import SpecSchemaGen
from components.synthetic_data import SyntheticDataGen
from pipelines.component_ids import (CLASSIFIER_TRAINER_ID, EVALUATOR_ID, EXAMPLE_GEN_ID,
                                      FEDERATED_STEP_ID, GAN_TRAINER_ID, RELEASE_ID, REPORT_ID,
                                      TWIN_TRAINER_ID)
from pipelines.config import PipelineConfig, SplitConfig
from trainers.preprocessing import COLUMN_NAMES_KEY, SPEC_KEY

PREPROCESSING_FN = "trainers.preprocessing.preprocessing_fn"
GAN_RUN_FN = "trainers.gan_run_fn.run_fn"
CLASSIFIER_RUN_FN = "trainers.classifier_run_fn.run_fn"

# (examples channel, spec YAML, federated.simulate flags) -> a component whose output
# "federated_results" holds federated.json; local runs launch the federated runtime,
# Kubeflow runs the same command in the federated image.
FederatedStepBuilder = Callable[[object, str, List[str]], object]


def _patient_split(splits: SplitConfig, id_column) -> example_gen_pb2.Output:
  """Hash split on the patient id, so a patient's rows all land in one split."""
  config = example_gen_pb2.SplitConfig(splits=[
      example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=splits.train),
      example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=splits.eval),
      example_gen_pb2.SplitConfig.Split(name="test", hash_buckets=splits.test)])
  if id_column:
    config.partition_feature_name = id_column
  return example_gen_pb2.Output(split_config=config)


def _trainer(run_fn: str, transform, schema, custom_config, component_id: str):
  """A Trainer on the train split; no eval-split selection is made (see the privacy rules)."""
  return tfx.components.Trainer(
      run_fn=run_fn,
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema,
      train_args=tfx.proto.TrainArgs(splits=["train"]),
      eval_args=tfx.proto.EvalArgs(splits=["eval"]),
      custom_config=custom_config).with_id(component_id)


def evaluation_config(spec: DatasetSpec, with_twin: bool) -> tfma.EvalConfig:
  """AUROC and accuracy of the DP classifier (and its twin as TFMA's baseline) on the
  raw test patients, overall, by site and by sex where those columns exist. TFMA reads
  ExampleGen's rows: feature keys, and the label as 1 / 0 (clinical_dp/names.py)."""
  keys = ColumnKeys.for_spec(spec)
  def model(name: str, is_baseline: bool) -> tfma.ModelSpec:
    return tfma.ModelSpec(name=name, signature_name="serving_default",
                          label_key=keys.key(spec.label_column), prediction_key="probability",
                          is_baseline=is_baseline)
  slice_columns = [keys.key(c) for c in (spec.site_column, SEX_COLUMN)
                   if c and c in spec.required_columns]
  return tfma.EvalConfig(
      model_specs=[model("candidate", False)] + ([model("baseline", True)] if with_twin else []),
      slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[c])
                                           for c in slice_columns],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name="ExampleCount"), tfma.MetricConfig(class_name="AUC"),
          tfma.MetricConfig(class_name="BinaryAccuracy")])])


def _local_federated_step(examples, spec_yaml: str, federated_args: List[str]):
  from components.federated_step import FederatedStep  # pylint: disable=g-import-not-at-top
  return FederatedStep(examples=examples, spec_yaml=spec_yaml,
                       federated_args=json.dumps(federated_args))


def create_components(config: PipelineConfig, spec: DatasetSpec,
                      federated_step: Optional[FederatedStepBuilder] = None) -> List:
  """Ingest, statistics, spec schema, validation, gate, transform, DP trainers, synthetic
  data, evaluation and report, (with a site column) the federated step, and the release.

  `spec` is the user's. The data components run on its internal form (feature keys,
  label 1 / 0), as the prepared input is written; the components whose outputs a person
  reads (synthetic data, report, federated results) take the user's spec and map back.
  """
  keys = ColumnKeys.for_spec(spec)
  internal = keys.internal_spec(spec).to_dict()
  example_gen = tfx.components.CsvExampleGen(
      input_base=config.input_dir,
      output_config=_patient_split(config.splits, spec.id_column and keys.key(spec.id_column))
  ).with_id(EXAMPLE_GEN_ID)  # TFX's default id, named where the runner looks for it
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = SpecSchemaGen(statistics=statistics_gen.outputs["statistics"],
                             spec_yaml=keys.internal_spec(spec).to_yaml())
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"],
                             examples=example_gen.outputs["examples"],
                             schema=schema_gen.outputs["schema"],
                             column_names=json.dumps(keys.to_name, ensure_ascii=False))
  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=anomaly_gate.outputs["validated_schema"],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config={SPEC_KEY: internal},
      # Its pre- and post-transform statistics would be two more full passes of TFDV
      # (StatisticsGen has made the first; nothing reads the second): at a million
      # patients most of Transform's time.
      disable_statistics=True)
  schema = anomaly_gate.outputs["validated_schema"]
  training = config.training
  column_names = {COLUMN_NAMES_KEY: keys.to_name}
  gan_trainer = _trainer(GAN_RUN_FN, transform, schema,
                         {**training.gan_custom_config(internal, config.gan_checkpoint),
                          **column_names},
                         GAN_TRAINER_ID)
  synthetic_data = SyntheticDataGen(generator=gan_trainer.outputs["model"],
                                    spec_yaml=spec.to_yaml(),
                                    num_patients=training.synthetic_patients)
  classifier_trainer = _trainer(CLASSIFIER_RUN_FN, transform, schema,
                                {**training.classifier_custom_config(internal), **column_names},
                                CLASSIFIER_TRAINER_ID)
  components = [example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate,
                transform, gan_trainer, synthetic_data, classifier_trainer]
  twin_trainer = None
  if training.train_twin:
    twin_trainer = _trainer(CLASSIFIER_RUN_FN, transform, schema,
                            {**training.classifier_custom_config(internal, private=False),
                             **column_names}, TWIN_TRAINER_ID)
    components.append(twin_trainer)
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs["examples"], model=classifier_trainer.outputs["model"],
      baseline_model=twin_trainer.outputs["model"] if twin_trainer else None,
      example_splits=["test"],
      eval_config=evaluation_config(spec, with_twin=twin_trainer is not None)
  ).with_id(EVALUATOR_ID)
  components.append(evaluator)
  federated = None
  if config.federated is not None and spec.site_column:
    build = federated_step or _local_federated_step
    federated = build(example_gen.outputs["examples"], spec.to_yaml(),
                      federated_step_args(config)).with_id(FEDERATED_STEP_ID)
    # It reads ExampleGen's rows itself, so only the gate's order keeps anomalies out.
    federated.add_upstream_node(anomaly_gate)
    if config.federated_beside_chain:
      # Its child started beside the chain (components/early_start.py): its turn,
      # where it is adopted, comes after the rest of the chain, just before the report.
      federated.add_upstream_node(synthetic_data)
      federated.add_upstream_node(evaluator)
    components.append(federated)
  report = EvaluationReport(
      examples=example_gen.outputs["examples"],
      synthetic_examples=synthetic_data.outputs["synthetic_examples"],
      generator=gan_trainer.outputs["model"], gan_run=gan_trainer.outputs["model_run"],
      classifier=classifier_trainer.outputs["model"],
      evaluation=evaluator.outputs["evaluation"],
      federated_results=federated.outputs["federated_results"] if federated else None,
      spec_yaml=spec.to_yaml(), report_config=config.report.to_json()).with_id(REPORT_ID)
  release = ReleasePusher(
      synthetic_examples=synthetic_data.outputs["synthetic_examples"],
      generator=gan_trainer.outputs["model"], dp_classifier=classifier_trainer.outputs["model"],
      federated_results=federated.outputs["federated_results"] if federated else None,
      dataset=spec.name, release_uri=config.release_destination,
      federated_models=",".join(config.release_federated),
      spec_yaml=spec.to_yaml() if spec.privacy_spent else "").with_id(RELEASE_ID)
  # Last, like Pusher after the Evaluator: nothing is released from a run whose audit
  # failed. It takes no real data, so release/ cannot hold any.
  release.add_upstream_node(report)
  return components + [report, release]


def federated_step_args(config: PipelineConfig) -> List[str]:
  """federated.simulate's arguments in the federated step (none without one)."""
  if config.federated is None:
    return []
  return config.federated.to_args() + config.federated_workers.to_args()


def create_pipeline(config: PipelineConfig, spec: DatasetSpec) -> tfx.dsl.Pipeline:
  """The whole pipeline with local SQLite metadata."""
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=create_components(config, spec),
      enable_cache=config.enable_cache,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          config.metadata_path),
      beam_pipeline_args=config.beam.pipeline_args())
