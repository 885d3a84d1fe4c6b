"""The pipeline definition: a pure function from configuration to a TFX pipeline."""

from typing import List

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from clinical_dp.spec import DatasetSpec
from components.anomaly_gate import AnomalyGate
from components.spec_schema_gen import SpecSchemaGen
from components.synthetic_data import SyntheticDataGen
from pipelines.config import PipelineConfig, SplitConfig
from trainers.preprocessing import SPEC_KEY

PREPROCESSING_FN = "trainers.preprocessing.preprocessing_fn"
GAN_RUN_FN = "trainers.gan_run_fn.run_fn"
CLASSIFIER_RUN_FN = "trainers.classifier_run_fn.run_fn"
GAN_TRAINER_ID = "GanTrainer"
CLASSIFIER_TRAINER_ID = "DpClassifierTrainer"


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


def create_components(config: PipelineConfig, spec: DatasetSpec) -> List:
  """Ingest, statistics, spec schema, validation, gate, transform, DP trainers, synthetic data."""
  example_gen = tfx.components.CsvExampleGen(
      input_base=config.input_dir, output_config=_patient_split(config.splits, spec.id_column))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = SpecSchemaGen(statistics=statistics_gen.outputs["statistics"],
                             spec_yaml=spec.to_yaml())
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"],
                             examples=example_gen.outputs["examples"],
                             schema=schema_gen.outputs["schema"])
  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=anomaly_gate.outputs["validated_schema"],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config={SPEC_KEY: spec.to_dict()})
  schema = anomaly_gate.outputs["validated_schema"]
  gan_config, classifier_config = config.training.custom_configs(spec.to_dict())
  gan_trainer = _trainer(GAN_RUN_FN, transform, schema, gan_config, GAN_TRAINER_ID)
  synthetic_data = SyntheticDataGen(generator=gan_trainer.outputs["model"],
                                    spec_yaml=spec.to_yaml(),
                                    num_patients=config.training.synthetic_patients)
  classifier_trainer = _trainer(CLASSIFIER_RUN_FN, transform, schema, classifier_config,
                                CLASSIFIER_TRAINER_ID)
  return [example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate, transform,
          gan_trainer, synthetic_data, classifier_trainer]


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
