"""The pipeline definition: a pure function from configuration to a TFX pipeline."""

from typing import List

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from clinical_dp.spec import DatasetSpec
from components.anomaly_gate import AnomalyGate
from components.spec_schema_gen import SpecSchemaGen
from pipelines.config import PipelineConfig, SplitConfig
from trainers.preprocessing import SPEC_KEY

PREPROCESSING_FN = "trainers.preprocessing.preprocessing_fn"


def _patient_split(splits: SplitConfig, id_column) -> example_gen_pb2.Output:
  """Hash split on the patient id, so a patient's rows all land in one split."""
  config = example_gen_pb2.SplitConfig(splits=[
      example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=splits.train),
      example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=splits.eval),
      example_gen_pb2.SplitConfig.Split(name="test", hash_buckets=splits.test)])
  if id_column:
    config.partition_feature_name = id_column
  return example_gen_pb2.Output(split_config=config)


def create_components(config: PipelineConfig, spec: DatasetSpec) -> List:
  """Ingest, statistics, spec schema, validation, gate, transform."""
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
  return [example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate, transform]


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
