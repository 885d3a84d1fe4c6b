"""SpecSchemaGen: the data schema derived from the dataset spec, not inferred.

Types, bounds and allowed categorical values all come from the spec. Only the
storage type of the identifier columns (patient id, site), which the spec does not
state, is read from the statistics.
"""

import os

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from clinical_dp.spec import DatasetSpec, parse_spec

SCHEMA_FILE = "schema.pbtxt"


def _required_scalar(schema: schema_pb2.Schema, name: str, kind: int) -> schema_pb2.Feature:
  feature = schema.feature.add(name=name, type=kind)
  feature.presence.min_fraction = 1.0
  feature.presence.min_count = 1
  feature.shape.dim.add(size=1)
  return feature


def _nullable_scalar(schema: schema_pb2.Schema, name: str, kind: int) -> schema_pb2.Feature:
  """At most one value, possibly none: Transform reads it as a SparseTensor whose
  absent cells trainers/preprocessing.py imputes and marks."""
  feature = schema.feature.add(name=name, type=kind)
  feature.presence.min_fraction = 0.0
  feature.value_count.min, feature.value_count.max = 0, 1
  return feature


def _is_integer_vocabulary(values) -> bool:
  return all(v.lstrip("-").isdigit() for v in values)


def schema_from_spec(spec: DatasetSpec, identifier_types=None) -> schema_pb2.Schema:
  """Builds the TFMD schema of the prepared input table described by `spec`.

  `identifier_types` maps the id and site columns to a schema_pb2 type; BYTES
  when not given.
  """
  identifier_types = identifier_types or {}
  # nullability is the spec's (a public schema input), never inferred from the data
  modeled = _nullable_scalar if spec.models_missing else _required_scalar
  schema = schema_pb2.Schema()
  for key in (spec.id_column, spec.site_column):
    if key:
      _required_scalar(schema, key, identifier_types.get(key, schema_pb2.BYTES))
  label = _required_scalar(schema, spec.label_column, schema_pb2.INT)
  label.int_domain.min, label.int_domain.max = 0, 1
  for feature in spec.static:
    if feature.is_categorical:
      if _is_integer_vocabulary(feature.values):
        column = modeled(schema, feature.name, schema_pb2.INT)
        numbers = [int(v) for v in feature.values]
        column.int_domain.min, column.int_domain.max = min(numbers), max(numbers)
      else:
        column = modeled(schema, feature.name, schema_pb2.BYTES)
        column.string_domain.name = feature.name
        column.string_domain.value.extend(feature.values)
    else:
      _bounded(modeled(schema, feature.name, _number_type(feature.integer)), feature.min,
               feature.max, feature.integer)
  for series in spec.series:
    for name in series.columns:
      _bounded(modeled(schema, name, _number_type(series.integer)), series.min, series.max,
               series.integer)
  return schema


def _number_type(integer: bool) -> int:
  return schema_pb2.INT if integer else schema_pb2.FLOAT


def _bounded(column: schema_pb2.Feature, low: float, high: float, integer: bool) -> None:
  if integer:
    column.int_domain.min, column.int_domain.max = int(low), int(high)
  else:
    column.float_domain.min, column.float_domain.max = low, high


_STATS_TYPES = {statistics_pb2.FeatureNameStatistics.INT: schema_pb2.INT,
                statistics_pb2.FeatureNameStatistics.FLOAT: schema_pb2.FLOAT,
                statistics_pb2.FeatureNameStatistics.STRING: schema_pb2.BYTES,
                statistics_pb2.FeatureNameStatistics.BYTES: schema_pb2.BYTES}


def _identifier_types(statistics, spec: DatasetSpec):
  split = artifact_utils.decode_split_names(statistics.split_names)[0]
  stats_file = os.path.join(artifact_utils.get_split_uri([statistics], split), "FeatureStats.pb")
  stats = tfdv.load_stats_binary(stats_file)
  types = {}
  for feature in stats.datasets[0].features:
    name = feature.path.step[0] if feature.path.step else feature.name
    if name in (spec.id_column, spec.site_column):
      types[name] = _STATS_TYPES[feature.type]
  return types


@tfx.dsl.components.component
def SpecSchemaGen(  # pylint: disable=invalid-name
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
    spec_yaml: tfx.dsl.components.Parameter[str],
) -> None:
  """Writes the spec-derived schema as the pipeline's Schema artifact."""
  spec = parse_spec(spec_yaml, source="pipeline spec")
  types = _identifier_types(statistics, spec)
  io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE), schema_from_spec(spec, types))
