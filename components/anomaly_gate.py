"""AnomalyGate: stops the pipeline when ExampleValidator found anomalies.

ExampleValidator only records anomalies; this gate reads them, counts the rows
behind each one, and fails with a plain-words report so that nothing downstream
(Transform, trainers) runs on data that breaks the schema. When the data are clean
it passes the schema on unchanged, which is what ties Transform to the gate.
"""

import dataclasses
import glob
import json
import os
import shutil
from typing import Dict, List, Optional

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components import early_start
from components.spec_schema_gen import SCHEMA_FILE

ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomaliesError(RuntimeError):
  """The data break the schema; the message lists every anomaly in plain words."""


@dataclasses.dataclass(frozen=True)
class AnomalyReport:
  split: str
  column: str
  problem: str
  rows: int


def _required(feature: schema_pb2.Feature) -> bool:
  """A column the spec does not let be empty (with `missing: model` only the label and
  the identifiers must be present)."""
  return feature.presence.min_fraction > 0


def _value_breaks(feature: schema_pb2.Feature, values) -> bool:
  if not values:
    return _required(feature)
  value = values[0]
  if feature.HasField("float_domain"):
    return not feature.float_domain.min <= value <= feature.float_domain.max
  if feature.HasField("int_domain"):
    return not feature.int_domain.min <= value <= feature.int_domain.max
  if feature.HasField("string_domain"):
    return value.decode("utf-8", "replace") not in feature.string_domain.value
  return False


def _feature_values(feature: tf.train.Feature):
  kind = feature.WhichOneof("kind")
  return list(getattr(feature, kind).value) if kind else []


def count_breaking_rows(example_files: List[str], schema: schema_pb2.Schema,
                        columns: List[str]) -> Dict[str, int]:
  """Counts, per column, rows whose value is absent (where the schema requires one), of
  the wrong type, or out of domain."""
  features = {f.name: f for f in schema.feature}
  counts = {c: 0 for c in columns}
  expected_kind = {schema_pb2.FLOAT: "float_list", schema_pb2.INT: "int64_list",
                   schema_pb2.BYTES: "bytes_list"}
  for record in tf.data.TFRecordDataset(example_files, compression_type="GZIP"):
    example = tf.train.Example.FromString(record.numpy())
    for column in columns:
      if column not in features:
        continue
      value = example.features.feature.get(column)
      feature = features[column]
      if value is None or value.WhichOneof("kind") is None:
        counts[column] += _required(feature)  # an empty cell
      elif value.WhichOneof("kind") != expected_kind.get(feature.type):
        counts[column] += 1
      elif _value_breaks(feature, _feature_values(value)):
        counts[column] += 1
  return counts


def read_anomalies(anomalies_artifact, examples_artifact, schema: schema_pb2.Schema
                   ) -> List[AnomalyReport]:
  """All anomalies of every split, each with its number of breaking rows."""
  reports = []
  for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    if not anomalies.anomaly_info and not anomalies.HasField("dataset_anomaly_info"):
      continue
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples_artifact], split), "*"))
    columns = sorted(anomalies.anomaly_info)
    counts = count_breaking_rows(files, schema, columns)
    for column in columns:
      info = anomalies.anomaly_info[column]
      problem = "; ".join(r.short_description + ": " + r.description for r in info.reason)
      reports.append(AnomalyReport(split, column, problem or info.description, counts[column]))
    if anomalies.HasField("dataset_anomaly_info"):
      reports.append(AnomalyReport(split, "", anomalies.dataset_anomaly_info.description, 0))
  return reports


def describe(reports: List[AnomalyReport], column_names: Optional[Dict[str, str]] = None
             ) -> str:
  """One line per column, rows summed over splits, e.g. "(10 rows: train 8, eval 2)";
  columns under the user's names ({feature key: name}, clinical_dp/names.py)."""
  column_names = column_names or {}
  by_column: Dict[str, List[AnomalyReport]] = {}
  for report in reports:
    by_column.setdefault(report.column, []).append(report)
  lines = [f"ExampleValidator found anomalies in {len(by_column)} column(s); "
           "the pipeline stopped before Transform:"]
  for column, column_reports in by_column.items():
    where = f"column '{column_names.get(column, column)}'" if column else "the dataset"
    problem = column_reports[0].problem.strip().rstrip(".")
    rows = sum(r.rows for r in column_reports)
    splits = ", ".join(f"{r.split} {r.rows}" for r in column_reports)
    count = f" ({rows} row{'s' if rows != 1 else ''}: {splits})" if rows else ""
    lines.append(f"  {where}: {problem}{count}")
  return "\n".join(lines)


@tfx.dsl.components.component
def AnomalyGate(  # pylint: disable=invalid-name
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
    column_names: tfx.dsl.components.Parameter[str] = "{}",
) -> None:
  """Raises DataAnomaliesError on any anomaly; otherwise passes the schema on.
  `column_names` is JSON {feature key: column name in the user's table}."""
  schema_path = os.path.join(schema.uri, SCHEMA_FILE)
  schema_proto = io_utils.parse_pbtxt_file(schema_path, schema_pb2.Schema())
  reports = read_anomalies(anomalies, examples, schema_proto)
  if reports:
    raise DataAnomaliesError(describe(reports, json.loads(column_names or "{}")))
  os.makedirs(validated_schema.uri, exist_ok=True)
  shutil.copyfile(schema_path, os.path.join(validated_schema.uri, SCHEMA_FILE))
  early_start.gate_passed(examples.uri)  # under `clinical-dp run`: the federated child
