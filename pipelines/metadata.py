"""Reads a finished run back from ML Metadata (SQLite)."""

import os
from typing import Dict, List

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
import tensorflow_data_validation as tfdv

_OUTPUT_EVENT = metadata_store_pb2.Event.OUTPUT


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  if not os.path.exists(metadata_path):
    raise FileNotFoundError(f"{metadata_path}: no ML Metadata store")
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def _component_of(store, execution) -> str:
  for context in store.get_contexts_by_execution(execution.id):
    if store.get_context_types_by_id([context.type_id])[0].name == "node":
      return context.name.split(".", 1)[-1]
  return "unknown"


def read_outputs(metadata_path: str) -> List[Dict]:
  """Every output artifact: producing component, output key, type, state and URI."""
  store = open_store(metadata_path)
  executions = store.get_executions()
  events = store.get_events_by_execution_ids([e.id for e in executions])
  types = {t.id: t.name for t in store.get_artifact_types()}
  artifacts = {a.id: a for a in store.get_artifacts()}
  components = {e.id: _component_of(store, e) for e in executions}
  states = {e.id: metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions}
  outputs = []
  for event in events:
    if event.type != _OUTPUT_EVENT:
      continue
    artifact = artifacts[event.artifact_id]
    outputs.append({
        "component": components[event.execution_id],
        "execution_id": event.execution_id,
        "name": event.path.steps[0].key if event.path.steps else "",
        "type": types[artifact.type_id],
        "execution_state": states[event.execution_id],
        "uri": artifact.uri,
    })
  return sorted(outputs, key=lambda o: (o["execution_id"], o["name"]))


def split_sizes(statistics_uri: str) -> Dict[str, int]:
  """Rows per split, from StatisticsGen's output."""
  sizes = {}
  for split in ("train", "eval", "test"):
    path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
    if os.path.exists(path):
      sizes[split] = int(tfdv.load_stats_binary(path).datasets[0].num_examples)
  return sizes
