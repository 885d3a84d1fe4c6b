import textwrap

import pytest

from clinical_dp.simulators import simulate
from clinical_dp.spec import SpecError, load_spec, parse_spec

EXAMPLE = textwrap.dedent("""\
    name: sprint_like
    id_column: patient_id
    label_column: intensive
    label_positive: 1
    site_column: site
    missing: drop
    static:
      - {name: age, type: numeric, min: 18, max: 110}
      - {name: sex, type: categorical, values: [F, M]}
    series:
      - {name: sbp, min: 60, max: 260, columns: [sbp_rz, sbp_1m, sbp_2m]}
      - {name: bp_meds, min: 0, max: 10, integer: true, columns: [meds_rz, meds_1m, meds_2m]}
    """)


def test_readme_example_parses():
  spec = parse_spec(EXAMPLE)
  assert spec.label_negative == 0
  assert spec.feature_columns == ["age", "sex", "sbp_rz", "sbp_1m", "sbp_2m", "meds_rz",
                                  "meds_1m", "meds_2m"]
  assert spec.required_columns[:3] == ["patient_id", "site", "intensive"]
  assert spec.series[1].integer and spec.num_visits == 3


@pytest.mark.parametrize("kind", ["sprint", "icu", "labs"])
def test_round_trip_through_yaml(kind, tmp_path):
  _, spec = simulate(kind, patients=20)
  path = tmp_path / "spec.yaml"
  path.write_text(spec.to_yaml())
  assert load_spec(str(path)) == spec


@pytest.mark.parametrize("text, message", [
    ("name: [unclosed", "not valid YAML"),
    ("- just a list", "must be a YAML mapping"),
    ("name: x\nlabel_column: y\n", "names no features"),
    ("name: x\nlabel_column: y\nstatic: []\nseries: []\n", "names no features"),
    ("label_column: y\nstatic: [{name: a, type: numeric, min: 0, max: 1}]", "'name' is required"),
    ("name: x\nstatic: [{name: a, type: numeric, min: 0, max: 1}]", "'label_column' is required"),
    ("name: x\nlabel_column: y\nstatic: [{name: a, type: numeric, min: 5, max: 1}]",
     "min (5) must be below max (1)"),
    ("name: x\nlabel_column: y\nstatic: [{name: a, type: numeric, max: 1}]", "'min' is required"),
    ("name: x\nlabel_column: y\nstatic: [{name: a, type: text}]", "type must be"),
    ("name: x\nlabel_column: y\nstatic: [{name: a, type: numeric, min: 0, max: 1, "
     "decimals: -1}]", "'decimals' must be a whole number from 0 to 6"),
    ("name: x\nlabel_column: y\nseries: [{name: s, min: 0, max: 9, integer: true, "
     "decimals: 2, columns: [a, b]}]", "contradicts 'integer: true'"),
    ("name: x\nlabel_column: y\nstatic: [{name: a, type: categorical, values: [u]}]",
     "at least two"),
    ("name: x\nlabel_column: y\nlabel_positive: dead\nstatic: [{name: a, type: categorical, "
     "values: [u, v]}]", "label_negative must name the other class"),
    ("name: x\nlabel_column: y\nmissing: impute\nstatic: [{name: a, type: categorical, "
     "values: [u, v]}]", "missing must be one of"),
    ("name: x\nlabel_column: a\nstatic: [{name: a, type: categorical, values: [u, v]}]",
     "named more than once"),
    ("name: x\nlabel_column: y\nseries: [{name: s, min: 0, max: 1, columns: [a, b]}, "
     "{name: t, min: 0, max: 1, columns: [c]}]", "same number of visit columns"),
    ("name: x\nlabel_column: y\ncolour: blue\nstatic: [{name: a, type: categorical, "
     "values: [u, v]}]", "unknown key"),
])
def test_bad_specs_are_refused_with_the_rule(text, message, tmp_path):
  path = tmp_path / "bad.yaml"
  path.write_text(text)
  with pytest.raises(SpecError) as error:
    load_spec(str(path))
  assert str(path) in str(error.value)
  assert message in str(error.value)


def test_missing_spec_file(tmp_path):
  with pytest.raises(SpecError, match="spec file not found"):
    load_spec(str(tmp_path / "nope.yaml"))
