"""`clinical-dp spec draft` and `spec check`: a dataset spec from a table's header, and
DP warnings where its numeric ranges look wrong."""

from __future__ import annotations

import argparse
import os

from cli import EXIT_OK
from clinical_dp.spec import load_spec
from clinical_dp.validation import load_valid_table


def _draft(args: argparse.Namespace) -> int:
  from clinical_dp.files import write_text_atomically  # pylint: disable=g-import-not-at-top
  from clinical_dp.spec_draft import DraftOptions, draft_spec  # pylint: disable=g-import-not-at-top
  if os.path.exists(args.out) and not args.force:
    raise ValueError(f"{args.out} exists; give --force to replace it (a reviewed spec is work "
                     "you may not want to lose)")
  estimator = None
  if args.dp_bounds is not None:
    from trainers import dp_spec_statistics  # pylint: disable=g-import-not-at-top
    config = dp_spec_statistics.DpSpecConfig(epsilon=args.dp_bounds, delta=args.dp_delta,
                                             seed=args.seed)
    def estimator(frame, numeric, categorical, id_column):
      return dp_spec_statistics.draft_estimates(frame, numeric, categorical, config, id_column)
  draft = draft_spec(args.data, DraftOptions(label=args.label, id_column=args.id,
                                             site_column=args.site, name=args.name),
                     estimator=estimator)
  write_text_atomically(args.out, draft.text)
  print(f"{args.out}: drafted from the header of {args.data}: {draft.columns} modeled columns, "
        f"{len(draft.matched)} matched to the public library of clinical variables")
  for note in draft.notes:
    print(f"  note: {note}")
  if draft.placeholders:
    print(f"  {len(draft.placeholders)} placeholder(s) to fill before `validate` accepts it:")
    for placeholder in draft.placeholders:
      print(f"    {placeholder}")
  if draft.privacy_record:
    record = draft.privacy_record
    print(f"  DP estimates for {len(record['columns'])} column(s) spent epsilon "
          f"{record['epsilon']:g} at delta {record['delta']:g} ({record['relation']}); the "
          "spec records it under privacy_spent and the release adds it to its total")
  print(f"next: review {args.out}, then  clinical-dp validate --data {args.data} --spec "
        f"{args.out}")
  return EXIT_OK


def _check(args: argparse.Namespace) -> int:
  """Validates, then warns (from DP estimates, charged to the spec) where a numeric
  column's declared range is far wider than its values or its values look whole or 0 / 1."""
  from clinical_dp.files import write_text_atomically  # pylint: disable=g-import-not-at-top
  from clinical_dp.spec import with_privacy_record  # pylint: disable=g-import-not-at-top
  from trainers import dp_spec_statistics  # pylint: disable=g-import-not-at-top
  spec = load_spec(args.spec)
  table = load_valid_table(args.data, spec).table  # InvalidInputError names each broken rule
  numeric = {f.name: ([f.name], f.min, f.max) for f in spec.static if not f.is_categorical}
  numeric.update({s.name: (list(s.columns), s.min, s.max) for s in spec.series})
  if not numeric:
    print(f"{args.spec}: no numeric column to check; nothing spent")
    return EXIT_OK
  config = dp_spec_statistics.DpSpecConfig(epsilon=args.epsilon, delta=args.dp_delta,
                                           seed=args.seed)
  uses, record = dp_spec_statistics.column_use(table, numeric, config, spec.id_column)
  with open(args.spec, encoding="utf-8") as f:
    text = f.read()
  write_text_atomically(args.spec, with_privacy_record(text, record, args.spec))
  integer = {f.name: f.integer for f in spec.static if not f.is_categorical}
  integer.update({s.name: s.integer for s in spec.series})
  warnings_found = dp_spec_statistics.check_warnings(uses, integer)
  spent = spec.epsilon_spent + record["epsilon"]
  print(f"{args.spec}: valid against {args.data}; {len(numeric)} numeric entries checked "
        f"from DP estimates (epsilon {args.epsilon:g}, delta {args.dp_delta:g}, recorded under "
        f"privacy_spent, which now totals epsilon {spent:g}: the release adds it to its "
        "total; each check spends again)")
  for warning in warnings_found:
    print(f"  warning: {warning}")
  if not warnings_found:
    print("  no warning: every declared range is in use and no column looks whole-number or "
          "0 / 1 where the spec says otherwise")
  return EXIT_OK


def add_spec_parser(commands) -> None:
  """`spec draft` and `spec check` under the clinical-dp command."""
  spec = commands.add_parser("spec", help="draft a dataset spec from a table's header")
  spec_commands = spec.add_subparsers(dest="spec_command", required=True)
  draft = spec_commands.add_parser(
      "draft", help="a spec to review: bounds from a public library of clinical variables, "
                    "never from the data; placeholders where only you can say")
  draft.add_argument("--data", required=True, help="the table (CSV)")
  draft.add_argument("--out", required=True, help="where to write the spec (YAML)")
  draft.add_argument("--label", default=None, help="the outcome column (default: by its name)")
  draft.add_argument("--id", default=None, help="the patient id column (default: by its name)")
  draft.add_argument("--site", default=None, help="the site column (default: by its name)")
  draft.add_argument("--name", default=None, help="the spec's name (default: the file's)")
  draft.add_argument("--force", action="store_true", help="replace --out if it exists")
  draft.add_argument(
      "--dp-bounds", type=float, default=None, metavar="EPSILON",
      help="fill the bounds of numeric columns the library does not know, and the categories "
           "of categorical ones, from DP estimates that spend EPSILON of the patients' "
           "privacy; the spec records it and the release adds it to its total")
  draft.add_argument("--dp-delta", type=float, default=1e-6,
                     help="delta of --dp-bounds (default 1e-6)")
  draft.add_argument("--seed", type=int, default=None,
                     help="seed of --dp-bounds' noise (tests; default: a secret one)")
  draft.set_defaults(handler=_draft)
  check = spec_commands.add_parser(
      "check", help="after validate, warn where a numeric range is far wider than the values "
                    "or the values look whole-number or 0 / 1 (DP estimates, charged to the "
                    "spec's privacy_spent)")
  check.add_argument("--data", required=True, help="the table (CSV)")
  check.add_argument("--spec", required=True, help="its spec (YAML); its privacy_spent gains "
                                                   "this check's record")
  check.add_argument("--epsilon", type=float, default=0.5,
                     help="privacy the check's estimates spend (default 0.5)")
  check.add_argument("--dp-delta", type=float, default=1e-6, help="their delta (default 1e-6)")
  check.add_argument("--seed", type=int, default=None,
                     help="seed of the noise (tests; default: a secret one)")
  check.set_defaults(handler=_check)
