"""The one mapping between a table's column names and the pipeline's feature keys.

A CSV header can hold anything: spaces, dots, slashes, `%`, a leading digit,
non-ASCII letters, Python keywords (`lambda`, `class`), names that differ only by
case. TensorFlow cannot take all of those as signature argument names, so the
pipeline runs on safe keys: a name that is already a plain lowercase identifier
keeps itself, any other gets a readable ASCII key, made unique. The prepared input
is written with the keys and the label mapped to 1 / 0 (`internal_spec`); every
output a person reads (synthetic.csv, the report, federated results, the models'
documented inputs) is mapped back with the same `ColumnKeys`.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import keyword
import re
import unicodedata
from typing import Dict, List, Tuple

import pandas as pd

from clinical_dp.spec import DatasetSpec

_PLAIN = re.compile(r"[a-z][a-z0-9_]*\Z")
_MAX_KEY_LENGTH = 48
# Suffix and names the pipeline uses for its own tensors (trainers/preprocessing.py).
_TRANSFORMED_SUFFIX = "_xf"
_RESERVED = frozenset({"label", "spec", "examples", "self", "num_patients", "positive_rate",
                       "logit", "probability"})
SIGNATURE_INPUTS_FILE = "signature_inputs.json"
# Characters that NFKD does not reduce to ASCII, and signs worth keeping as words.
_SPELLED = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
            "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "%": " pct ", "#": " n ", "+": " plus "}


def _is_safe(name: str) -> bool:
  return (bool(_PLAIN.match(name)) and len(name) <= _MAX_KEY_LENGTH
          and not keyword.iskeyword(name) and not hasattr(builtins, name)
          and not name.endswith(_TRANSFORMED_SUFFIX) and name not in _RESERVED)


def _slug(name: str) -> str:
  """A readable ASCII lowercase identifier for any text (accents dropped, the rest `_`)."""
  for letter, spelled in _SPELLED.items():
    name = name.replace(letter, spelled)
  ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
  slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:_MAX_KEY_LENGTH - 8]
  if not slug or not slug[0].isalpha():
    slug = f"c_{slug}".rstrip("_")
  return slug if _is_safe(slug) else f"{slug}_col"


@dataclasses.dataclass(frozen=True)
class ColumnKeys:
  """Column (and series) name -> feature key, one-to-one."""
  pairs: Tuple[Tuple[str, str], ...]

  @classmethod
  def for_spec(cls, spec: DatasetSpec) -> "ColumnKeys":
    """Safe names keep themselves; the others get a slug, numbered on a collision.
    Deterministic: it depends on the spec alone, in the spec's order."""
    names: List[str] = []
    for name in spec.required_columns + [s.name for s in spec.series]:
      if name not in names:
        names.append(name)
    taken = {name for name in names if _is_safe(name)}
    pairs = []
    for name in names:
      if _is_safe(name):
        pairs.append((name, name))
        continue
      base = key = _slug(name)
      number = 2
      while key in taken:
        key, number = f"{base}_{number}", number + 1
      taken.add(key)
      pairs.append((name, key))
    return cls(tuple(pairs))

  @functools.cached_property  # looked up per cell when splits are read back
  def to_key(self) -> Dict[str, str]:
    return dict(self.pairs)

  @functools.cached_property
  def to_name(self) -> Dict[str, str]:
    return {key: name for name, key in self.pairs}

  def key(self, name: str) -> str:
    return self.to_key[name]

  def name(self, key: str) -> str:
    return self.to_name.get(key, key)

  @property
  def renamed(self) -> Dict[str, str]:
    """Only the names that the pipeline does not use as they are."""
    return {name: key for name, key in self.pairs if name != key}

  def internal_spec(self, spec: DatasetSpec) -> DatasetSpec:
    """The spec the pipeline runs on: feature keys for names, the label as 1 / 0."""
    key = self.key
    return dataclasses.replace(
        spec, label_column=key(spec.label_column), label_positive=1, label_negative=0,
        id_column=key(spec.id_column) if spec.id_column else None,
        site_column=key(spec.site_column) if spec.site_column else None,
        static=tuple(dataclasses.replace(f, name=key(f.name)) for f in spec.static),
        series=tuple(dataclasses.replace(s, name=key(s.name),
                                         columns=tuple(key(c) for c in s.columns))
                     for s in spec.series))

  def to_internal(self, frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=self.to_key)

  def to_user(self, frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=self.to_name)

  def signature_inputs(self, keys) -> Dict[str, str]:
    """{column as in the user's table: signature input key}, for a model's documentation."""
    return {self.name(k): k for k in keys}


def user_labels(binary: pd.Series, spec: DatasetSpec) -> pd.Series:
  """1 / 0 back to the classes the user's spec names."""
  return binary.astype(int).map({1: spec.label_positive, 0: spec.label_negative})


def binary_label_spec(spec: DatasetSpec) -> DatasetSpec:
  """The user's names with the label as the pipeline stores it (1 / 0): for reading the
  pipeline's rows under the user's column names."""
  return dataclasses.replace(spec, label_positive=1, label_negative=0)

