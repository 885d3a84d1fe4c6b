"""The public library of clinical variables that `clinical-dp spec draft` matches headers to.

The library is a data file (clinical_dp/spec_library/clinical_variables.yaml), each entry
with its source: names and synonyms, and per unit the public plausibility bounds, whole
numbers or reporting decimals; categorical entries carry public code lists (sex). Nothing
in it is a statistic of any table, so a bound drafted from it tells nothing about the
patients.

A header matches an entry when its normal form (normal_form) equals the normal form of
the entry's name or one of its synonyms; a unit written in the header, `Creatinine
(umol/L)`, picks that unit's bounds, else the entry's first unit is assumed (and the
draft says so).
"""

from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

LIBRARY_PATH = os.path.join(os.path.dirname(__file__), "spec_library", "clinical_variables.yaml")
# A unit written after the name: `Na+ (mmol/L)`, `Temp [°C]`, `SpO2 %`.
_TRAILING_UNIT = re.compile(r"\s*(?:\(([^()]*)\)|\[([^\[\]]*)\]|(%))\s*$")


@dataclasses.dataclass(frozen=True)
class Unit:
  unit: str
  min: float
  max: float
  integer: bool = False
  decimals: Optional[int] = None
  aliases: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Variable:
  name: str
  type: str  # "numeric" or "categorical"
  synonyms: Tuple[str, ...]
  source: str
  units: Tuple[Unit, ...] = ()
  code_lists: Tuple[Tuple[str, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class Match:
  """A header matched to a library variable, with the unit its bounds are in."""
  header: str
  variable: Variable
  unit: Optional[Unit]
  unit_assumed: bool  # the header names no unit (or one the entry lacks): the first is used


def _fold(text: str) -> str:
  """Lower case, accents and signs dropped: `Température` -> `temperature`, `Na+` -> `na`."""
  ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
  return re.sub(r"[^a-z0-9]", "", ascii_text.lower().replace("ß", "ss"))


def split_unit(header: str) -> Tuple[str, Optional[str]]:
  """(the name, the unit written after it or None): `Na+ (mmol/L)` -> (`Na+`, `mmol/L`)."""
  header = unicodedata.normalize("NFKC", header).replace("ß", "ss")
  found = _TRAILING_UNIT.search(header)
  if not found or found.start() == 0:
    return header.strip(), None
  unit = next(group for group in found.groups() if group is not None)
  return header[:found.start()].strip(), unit.strip()


def normal_form(header: str) -> str:
  """What headers and synonyms are compared by: the name without its unit, folded."""
  return _fold(split_unit(header)[0])


class VariableLibrary:
  """The library's variables, indexed by the normal form of every name and synonym."""

  def __init__(self, variables: Sequence[Variable], code_lists: Dict[str, List[Tuple[str, ...]]],
               source: str = "<library>"):
    self.variables = tuple(variables)
    self.code_lists = code_lists
    self._by_form: Dict[str, Variable] = {}
    for variable in self.variables:
      for name in (variable.name,) + variable.synonyms:
        form = normal_form(name)
        other = self._by_form.get(form)
        if other is not None and other.name != variable.name:
          raise ValueError(f"{source}: '{name}' names both {other.name} and {variable.name}")
        self._by_form[form] = variable

  def match(self, header: str) -> Optional[Match]:
    """The variable a column header names, or None."""
    name, unit_text = split_unit(header)
    variable = self._by_form.get(_fold(name))
    if variable is None:
      return None
    if not variable.units:
      return Match(header, variable, None, unit_assumed=False)
    if unit_text is not None:
      wanted = _fold(unit_text)
      for unit in variable.units:
        if wanted in {_fold(u) for u in (unit.unit,) + unit.aliases}:
          return Match(header, variable, unit, unit_assumed=False)
    return Match(header, variable, variable.units[0], unit_assumed=True)


def _unit(raw: Dict, where: str) -> Unit:
  integer = bool(raw.get("integer", False))
  unit = Unit(unit=str(raw.get("unit", "")), min=float(raw["min"]), max=float(raw["max"]),
              integer=integer, decimals=raw.get("decimals"),
              aliases=tuple(str(a) for a in raw.get("aliases") or ()))
  if not unit.min < unit.max:
    raise ValueError(f"{where}: min {unit.min} is not below max {unit.max}")
  if integer and unit.decimals:
    raise ValueError(f"{where}: both integer and decimals {unit.decimals}")
  return unit


def load_library(path: str = LIBRARY_PATH) -> VariableLibrary:
  """The library file at `path` (ValueError naming the entry where one breaks a rule)."""
  with open(path, encoding="utf-8") as f:
    raw = yaml.safe_load(f)
  variables = []
  for index, item in enumerate(raw["variables"]):
    where = f"{path}: variables[{index}] ({item.get('name')})"
    if not item.get("source"):
      raise ValueError(f"{where}: every entry needs its source")
    variables.append(Variable(
        name=item["name"], type=item["type"],
        synonyms=tuple(str(s) for s in item.get("synonyms") or ()), source=item["source"],
        units=tuple(_unit(u, f"{where} unit {u.get('unit')!r}") for u in item.get("units") or ()),
        code_lists=tuple(tuple(str(c) for c in codes) for codes in item.get("code_lists") or ())))
    if variables[-1].type == "numeric" and not variables[-1].units:
      raise ValueError(f"{where}: a numeric entry needs at least one unit with its bounds")
  code_lists = {name: [tuple(str(c) for c in codes) for codes in lists]
                for name, lists in (raw.get("code_lists") or {}).items()}
  return VariableLibrary(variables, code_lists, path)
