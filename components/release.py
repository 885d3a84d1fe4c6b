"""ReleasePusher: writes what may be published, and nothing else, to one place.

In the manner of TFX's Pusher, it copies the pipeline's releasable artifacts out of the
pipeline root to a destination (`release/` in a local run directory, a bucket URI on
Kubeflow); where Pusher asks for a blessing, this asks for a privacy record. Its inputs
are the artifacts trained under differential privacy: the synthetic table, the generator,
the DP classifier and the federated step's DP models, and the dataset spec when DP
statistics of the patients shaped it (`privacy_spent`: `clinical-dp spec draft
--dp-bounds`), whose charge the total then includes. It never reads the real examples.
An artifact without `privacy_record.json` stops the release before anything is written.

The destination holds one directory per artifact (its files and its record) and
PRIVACY.md: every record, what releasing them together costs, and what each guarantee
covers; privacy.json says the same for programs.
"""

import dataclasses
import json
import math
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact
from tfx.utils import path_utils

from clinical_dp import sensitivity
from clinical_dp.console import say
from clinical_dp.files import copy_tree
from clinical_dp.release_layout import (DP_CLASSIFIER, FEDERATED, GENERATOR, PRIVACY_MD,
                                        RELEASE_PRIVACY_JSON, SPEC, SPEC_YAML, SYNTHETIC,
                                        SYNTHETIC_CSV)
from clinical_dp.spec import parse_spec
from components.federated_step import FederatedResults
from trainers.dp_training import PRIVACY_RECORD_FILE, read_privacy_record

PRIVACY_JSON = RELEASE_PRIVACY_JSON
FEDERATED_MODELS = "models"  # federated.simulate's DP models, one directory per algorithm
# What each artifact is, for PRIVACY.md.
DESCRIPTIONS = {
    SYNTHETIC: f"{SYNTHETIC_CSV}: synthetic patients in the input's columns and units",
    GENERATOR: "the DP generator (SavedModel) that samples synthetic patients",
    DP_CLASSIFIER: "the DP classifier (SavedModel; serves raw clinical columns)",
    FEDERATED: "a model trained by DP federated learning across the sites (SavedModel)",
    SPEC: f"{SPEC_YAML}: the dataset spec, some of whose bounds or categories were estimated "
          "from the patients under DP (`clinical-dp spec draft --dp-bounds`, `spec check`)",
}
# The synthetic table is sampled from the generator alone: post-processing costs nothing.
POST_PROCESSING = {SYNTHETIC: GENERATOR}
PATIENT_UNITS = ("patient", "example (one row per patient)")
UNIT_MEANINGS = {
    "patient": "one patient: adding or removing all of a patient's rows",
    "example (one row per patient)": "one patient (one row each): adding or removing a row",
    "site": "one site (hospital or clinic): adding or removing its whole data",
}
RELATION_MEANINGS = {
    sensitivity.RELATION: "adding or removing one patient (all of that patient's rows)",
    sensitivity.REPLACE_ONE: "replacing one patient by another (the number of patients "
                             "fixed)",
    sensitivity.SITE_RELATION: "adding or removing one site's whole data",
}
REQUIRED_FIELDS = ("epsilon", "delta", "unit", "accountant")


class UnrecordedArtifactError(ValueError):
  """An artifact meant for release has no usable privacy record."""


class ReleaseDestinationError(ValueError):
  """The release destination holds something other than an earlier release."""


class ReleasedArtifacts(artifact.Artifact):
  """Where the release was written (custom property `release_uri`) and what it holds."""
  TYPE_NAME = "clinical_dp.ReleasedArtifacts"  # namespaced: Kubeflow compiles only those


@dataclasses.dataclass(frozen=True)
class Candidate:
  """An artifact meant for release: its name under the destination, where it is, and
  which of its files go out (None: the whole directory)."""
  name: str
  source: str
  files: Optional[Tuple[str, ...]] = None


def candidates(synthetic_uri: str, generator_dir: str, classifier_dir: str,
               federated_uri: Optional[str]) -> List[Candidate]:
  """The pipeline's releasable artifacts. The synthetic Examples stay behind (the CSV
  holds the same rows); the federated references that are not private are never exported
  by federated.simulate, so every model directory it wrote is a candidate."""
  found = [Candidate(SYNTHETIC, synthetic_uri, (SYNTHETIC_CSV, PRIVACY_RECORD_FILE)),
           Candidate(GENERATOR, generator_dir), Candidate(DP_CLASSIFIER, classifier_dir)]
  models = os.path.join(federated_uri, FEDERATED_MODELS) if federated_uri else None
  if models and tf.io.gfile.isdir(models):
    found += [Candidate(f"{FEDERATED}/{name.rstrip('/')}", os.path.join(models, name))
              for name in sorted(tf.io.gfile.listdir(models))]
  return found


def spec_record(spent: Sequence[Dict]) -> Dict:
  """One privacy record for the DP statistics a spec was written from: their epsilons and
  deltas add up (basic composition; each is stated under the release's relation)."""
  relations = {relation_of(record) for record in spent}
  if relations != {sensitivity.RELATION}:
    raise ValueError(f"the spec's privacy_spent records name relation(s) {sorted(relations)}; "
                     f"only {sensitivity.RELATION!r} composes with the release")
  return {"epsilon": float(sum(r["epsilon"] for r in spent)),
          "delta": float(sum(r["delta"] for r in spent)),
          "unit": "patient", "relation": sensitivity.RELATION,
          "accountant": " + ".join(sorted({r["accountant"] for r in spent}))
                        + (" (basic composition of the records)" if len(spent) > 1 else ""),
          "sampling": "none: every row counted",
          "randomness": ", ".join(sorted({str(r.get("randomness", "not stated"))
                                          for r in spent})),
          "selection": "none", "records": list(spent)}


def spec_candidate(spec_yaml: str, directory: str) -> Optional[Candidate]:
  """The spec as a release candidate, written to `directory` with its privacy record, when
  its privacy_spent records DP statistics of the patients; None when it records none."""
  spec = parse_spec(spec_yaml, "the run's spec") if spec_yaml else None
  if spec is None or not spec.privacy_spent:
    return None
  tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(os.path.join(directory, SPEC_YAML), "w") as f:
    f.write(spec.to_yaml())
  with tf.io.gfile.GFile(os.path.join(directory, PRIVACY_RECORD_FILE), "w") as f:
    f.write(json.dumps(spec_record(spec.privacy_spent), indent=2))
  return Candidate(SPEC, directory)


def select_federated(found: List[Candidate], models: Sequence[str]
                     ) -> Tuple[List[Candidate], List[str]]:
  """The candidates to release, keeping of the DP federated models only `models` (by
  algorithm), and the names of those left behind."""
  prefix = FEDERATED + "/"
  kept = [c for c in found if not c.name.startswith(prefix) or c.name[len(prefix):] in models]
  return kept, [c.name for c in found if c not in kept]


def _record_problem(candidate: Candidate) -> Optional[str]:
  path = os.path.join(candidate.source, PRIVACY_RECORD_FILE)
  if not tf.io.gfile.exists(path):
    return f"no {PRIVACY_RECORD_FILE} in {candidate.source}"
  try:
    record = read_privacy_record(candidate.source)
  except ValueError as e:
    return f"{path} is not JSON ({e})"
  missing = [f for f in REQUIRED_FIELDS if record.get(f) is None]
  if missing:
    return f"{path} lacks {', '.join(missing)}"
  if not math.isfinite(record["epsilon"]):
    return f"{path} states no finite epsilon (not private)"
  return None


def check_records(found: List[Candidate]) -> Dict[str, Dict]:
  """Every candidate's record, or UnrecordedArtifactError naming each one without."""
  problems = {c.name: _record_problem(c) for c in found}
  refused = {name: problem for name, problem in problems.items() if problem}
  if refused:
    raise UnrecordedArtifactError(
        "ReleasePusher: refusing to release an artifact without a privacy record: "
        + "; ".join(f"{name} ({problem})" for name, problem in refused.items())
        + ". Nothing was released.")
  return {c.name: read_privacy_record(c.source) for c in found}


def unit_level(unit: str) -> str:
  """'patient' for the patient-level units (one row per patient is the same unit), else
  the unit's first word ('site')."""
  return "patient" if unit in PATIENT_UNITS else unit.split()[0]


def relation_of(record: Dict) -> str:
  """The neighbouring relation a record's epsilon holds under. A record that names none
  (written before records stated it) counts as the site relation when its unit is a
  site, else as 'not stated'; either way it is never summed into the per-patient total."""
  if record.get("relation"):
    return record["relation"]
  return sensitivity.SITE_RELATION if unit_level(record["unit"]) == "site" else "not stated"


def compose_released(records: Dict[str, Dict],
                     post_processing: Optional[Dict[str, str]] = None) -> Dict:
  """What releasing the artifacts together costs: the artifacts are trained separately on
  the same patients, so their epsilons and deltas add up (basic composition); one that is
  post-processing of another (the synthetic table of the generator) adds nothing.

  Only guarantees under the same neighbouring relation add. The total is the one of the
  release's relation, one patient added or removed (clinical_dp/sensitivity.py); a
  guarantee under any other relation is stated beside it under `other_relations` and
  not added in.
  """
  post_processing = post_processing or {}
  trained = {k: r for k, r in records.items() if k not in post_processing}
  by_relation: Dict[str, Dict[str, Dict]] = {}
  for name, record in trained.items():
    by_relation.setdefault(relation_of(record), {})[name] = record
  def total(group: Dict[str, Dict]) -> Dict:
    return {"epsilon": sum(r["epsilon"] for r in group.values()),
            "delta": sum(r["delta"] for r in group.values()),
            "composition": "basic (sum) over " + ", ".join(sorted(group))}
  patient = by_relation.pop(sensitivity.RELATION, {})
  composed = {**total(patient), "unit": "patient", "relation": sensitivity.RELATION,
              "artifacts": sorted(patient)}
  if post_processing:
    composed["post_processing"] = {k: f"post-processing of the {v}: adds nothing"
                                   for k, v in post_processing.items() if k in records}
  if by_relation:
    composed["other_relations"] = {relation: {**total(group), "artifacts": sorted(group)}
                                   for relation, group in sorted(by_relation.items())}
  return composed


def _federated_sentence(federated_ran: bool, withheld: Sequence[str]) -> str:
  if not federated_ran:
    return ("was not run in this pipeline (no site column, a single site, or left out): no "
            "federated model is released")
  if not withheld:
    return "ran: its DP models are released"
  return ("ran: the DP models released are those listed below; " + ", ".join(withheld)
          + " were trained for the report's comparison and are not released (each would "
          "add its epsilon to the total; `--release-federated` chooses)")


def release_privacy(records: Dict[str, Dict], federated_ran: bool,
                    withheld: Sequence[str] = ()) -> Dict:
  """privacy.json: each artifact's record and the composed total."""
  return {
      "artifacts": records,
      "all_released_together": compose_released(records, POST_PROCESSING),
      "federated": _federated_sentence(federated_ran, withheld),
      "not_released": list(withheld),
  }


def _number(value) -> str:
  return f"{value:.3f}" if isinstance(value, float) else str(value)


def _what_it_covers(name: str, record: Dict) -> str:
  unit = record["unit"]
  level = unit_level(unit)
  meaning = UNIT_MEANINGS.get(unit, UNIT_MEANINGS.get(level, unit))
  sampling = record.get("sampling") or "not stated"
  relation = relation_of(record)
  lines = [f"- neighbouring relation: {relation} "
           f"({RELATION_MEANINGS.get(relation, 'not stated by the record')})",
           f"- unit: {unit} ({meaning} changes the probability of any output by at most a "
           f"factor e^{_number(record['epsilon'])}, except with probability "
           f"{record['delta']:g})",
           f"- delta: {record['delta']:g}",
           f"- accountant: {record['accountant']}",
           f"- sampling: {sampling}",
           f"- randomness (batches, noise): {record.get('randomness', 'not stated')}",
           f"- selection on real data: {record.get('selection', 'not stated')}"]
  if name in POST_PROCESSING:
    lines.append(f"- post-processing of the {POST_PROCESSING[name]}, whose guarantee it "
                 "carries: releasing it beside the generator costs nothing more")
  return "\n".join(lines)


def privacy_markdown(privacy: Dict, dataset: str) -> str:
  """PRIVACY.md: the records, the composed total and what each guarantee covers."""
  records = privacy["artifacts"]
  together = privacy["all_released_together"]
  lines = [
      f"# Release of {dataset}: what it holds and what it guarantees", "",
      "Every artifact here was made under differential privacy (DP) from the data owner's "
      "patients and carries its privacy record (`privacy_record.json`). Nothing else of the "
      "run is here: the real table, the pipeline's examples and the evaluation report "
      "(computed from the real patients, not DP) stay with the data owner.", "",
      "## Neighbouring relation", "",
      f"Every guarantee below is stated for **{sensitivity.RELATION}**: "
      f"{sensitivity.RELATION_DETAIL}. Each mechanism's noise is calibrated to its L2 "
      "sensitivity under this relation (one clip for a clipped-gradient sum, the square "
      "root of the number of histograms for one-hot histograms, each weighted histogram "
      "counting its weight squared (the dropout code's, when missing values are modeled), "
      "one for a count; the spec's DP estimates, when it has them, the square root of the "
      "number of histograms and counts released), and "
      "each artifact's record says which relation it was accounted under.", "",
      "## Released together", "",
      f"Per patient ({sensitivity.RELATION}): epsilon {together['epsilon']:.3f} at delta "
      f"{together['delta']:g}, {together['composition']} (basic composition: the artifacts "
      "are trained separately on the same patients, so their epsilons and deltas add up; "
      "only guarantees under this one relation are added).", ""]
  for name, note in together.get("post_processing", {}).items():
    lines += [f"- {name}: {note}."]
  for relation, group in together.get("other_relations", {}).items():
    lines += [f"- {relation}: epsilon {group['epsilon']:.3f} at delta {group['delta']:g} "
              f"for {', '.join(group['artifacts'])}; a different neighbouring relation, so "
              "it is stated here and not added to the per-patient total."]
  lines += [f"- Federated learning {privacy['federated']}.", "",
            "| artifact | epsilon | delta | relation | unit | accountant | sampling |",
            "|---|---|---|---|---|---|---|"]
  lines += [f"| {name} | {record['epsilon']:.3f} | {record['delta']:g} | "
            f"{relation_of(record)} | {record['unit']} | "
            f"{record['accountant']} | {record.get('sampling') or 'not stated'} |"
            for name, record in records.items()]
  lines += ["", "## Each artifact", ""]
  for name, record in records.items():
    kind = FEDERATED if name.startswith(FEDERATED + "/") else name
    lines += [f"### {name}", "", DESCRIPTIONS[kind] + f"; files in `{name}/`.", "",
              _what_it_covers(name, record), "",
              f"The full record: `{name}/{PRIVACY_RECORD_FILE}`.", ""]
  return "\n".join(lines)


def _is_release(uri: str) -> bool:
  """An empty directory or one that only ever held what a release writes."""
  ours = {SYNTHETIC, GENERATOR, DP_CLASSIFIER, FEDERATED, SPEC, PRIVACY_MD, PRIVACY_JSON}
  return all(name.rstrip("/") in ours for name in tf.io.gfile.listdir(uri))


def write_release(found: List[Candidate], destination: str, dataset: str,
                  federated_ran: bool, withheld: Sequence[str] = ()) -> Dict:
  """Checks every record, then replaces the release at `destination` with exactly the
  candidates, PRIVACY.md and privacy.json; returns privacy.json's content."""
  records = check_records(found)
  if tf.io.gfile.isdir(destination):
    if not _is_release(destination):
      raise ReleaseDestinationError(
          f"ReleasePusher: {destination} holds files that are not an earlier release; "
          "choose an empty or new release URI")
    tf.io.gfile.rmtree(destination)  # an earlier release: it must not linger in this one
  for candidate in found:
    target = os.path.join(destination, candidate.name)
    if candidate.files is None:
      copy_tree(candidate.source, target)
    else:
      tf.io.gfile.makedirs(target)
      for name in candidate.files:
        tf.io.gfile.copy(os.path.join(candidate.source, name), os.path.join(target, name),
                         overwrite=True)
  privacy = release_privacy(records, federated_ran, withheld)
  with tf.io.gfile.GFile(os.path.join(destination, PRIVACY_JSON), "w") as f:
    f.write(json.dumps(privacy, indent=2))
  with tf.io.gfile.GFile(os.path.join(destination, PRIVACY_MD), "w") as f:
    f.write(privacy_markdown(privacy, dataset))  # last: a release is whole once it is there
  return privacy


def read_release(destination: str) -> Dict:
  """privacy.json of a written release."""
  with tf.io.gfile.GFile(os.path.join(destination, PRIVACY_JSON)) as f:
    return json.load(f)


@tfx.dsl.components.component
def ReleasePusher(  # pylint: disable=invalid-name
    synthetic_examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    generator: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    dp_classifier: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    release: tfx.dsl.components.OutputArtifact[ReleasedArtifacts],
    dataset: tfx.dsl.components.Parameter[str],
    federated_models: tfx.dsl.components.Parameter[str],
    release_uri: tfx.dsl.components.Parameter[str] = "",
    federated_results: tfx.dsl.components.InputArtifact[FederatedResults] = None,
    spec_yaml: tfx.dsl.components.Parameter[str] = "",
) -> None:
  """Writes the release to release_uri ("": this component's own output artifact), with
  the DP federated models named in federated_models (algorithms, comma-separated) and the
  spec when DP statistics of the patients shaped it (its privacy_spent)."""
  destination = release_uri or release.uri
  found, withheld = select_federated(
      candidates(synthetic_examples.uri, path_utils.serving_model_path(generator.uri),
                 path_utils.serving_model_path(dp_classifier.uri),
                 federated_results.uri if federated_results else None),
      [m for m in federated_models.split(",") if m])
  with tempfile.TemporaryDirectory() as scratch:
    spec = spec_candidate(spec_yaml, os.path.join(scratch, SPEC))
    found += [spec] if spec else []
    privacy = write_release(found, destination, dataset, federated_results is not None,
                            withheld)
  together = privacy["all_released_together"]
  say(f"  ReleasePusher: {len(found)} artifacts with privacy records to {destination} "
      f"(together epsilon {together['epsilon']:.3f}, delta {together['delta']:g} per patient, "
      f"{sensitivity.RELATION})"
      + (f"; not released: {', '.join(withheld)}" if withheld else ""))
  release.set_string_custom_property("release_uri", destination)
  release.set_string_custom_property("released", json.dumps([c.name for c in found]))
