"""The README and docs/ point only at things that exist.

Every relative link leads to a file (and, with an #anchor, to a heading of it), every
`make TARGET` quoted names a Makefile target, and every `clinical-dp COMMAND [SUBCOMMAND]`
quoted names a command of the CLI. The commands are read from the CLI's argparse
definitions as text, so this test imports neither the CLI nor TensorFlow and runs in
well under a second; it finds the CLI by what its files contain, not by their path, so
that moving the entry points to another package does not silence it.
"""

import collections
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Pages a reader is sent to: the README, docs/ and the Markdown beside the code
# (kubeflow/README.md). Virtual environments and run outputs are not the project's.
_SKIP_DIRS = {".git", "outputs", "node_modules"}


def _markdown_files():
  files = []
  for path in sorted(ROOT.rglob("*.md")):
    parts = path.relative_to(ROOT).parts
    if any(p in _SKIP_DIRS or p.startswith(".venv") for p in parts):
      continue
    files.append(path)
  return files


MARKDOWN = _markdown_files()

_FENCE = re.compile(r"^( {0,3})(```|~~~)")


def _split_code(text):
  """(prose with code removed, code lines): fenced blocks and inline code spans."""
  prose, code = [], []
  in_fence = False
  for line in text.split("\n"):
    if _FENCE.match(line):
      in_fence = not in_fence
      prose.append("")
      continue
    if in_fence:
      code.append(line)
      prose.append("")
    else:
      prose.append(line)
  prose_text = "\n".join(prose)
  spans = re.findall(r"(`+)(.+?)\1", prose_text, flags=re.S)
  code.extend(" ".join(span.split()) for _, span in spans)
  prose_text = re.sub(r"(`+)(.+?)\1", "", prose_text, flags=re.S)
  return prose_text, code


def _slug(heading):
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
  text = re.sub(r"`", "", heading.strip()).lower()
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def _anchors(path):
  anchors, seen = set(), collections.Counter()
  in_fence = False
  for line in path.read_text(encoding="utf-8").split("\n"):
    if _FENCE.match(line):
      in_fence = not in_fence
      continue
    match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
    if match and not in_fence:
      slug = _slug(match.group(1))
      anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
      seen[slug] += 1
  return anchors


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _links(path):
  prose, _ = _split_code(path.read_text(encoding="utf-8"))
  return _LINK.findall(prose)


def _is_external(target):
  return re.match(r"(https?|mailto|ftp):", target) is not None


def test_there_are_pages_to_check():
  names = {p.relative_to(ROOT).as_posix() for p in MARKDOWN}
  assert "README.md" in names and "docs/design.md" in names, names


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_somewhere(page):
  broken = []
  for target in _links(page):
    if _is_external(target):
      continue
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / file_part).resolve() if file_part else page
    if not dest.exists():
      broken.append(f"{target}: no file {dest}")
    elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
      broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
  assert not broken, f"{page.relative_to(ROOT)}: broken links:\n  " + "\n  ".join(broken)


def test_no_page_points_outside_the_repository():
  outside = []
  for page in MARKDOWN:
    for target in _links(page):
      if _is_external(target):
        continue
      dest = (page.parent / target.partition("#")[0]).resolve()
      if ROOT not in dest.parents and dest != ROOT:
        outside.append(f"{page.relative_to(ROOT)}: {target}")
  assert not outside, outside


def _make_targets():
  targets = set()
  for line in (ROOT / "Makefile").read_text(encoding="utf-8").split("\n"):
    match = re.match(r"^([A-Za-z0-9_.\-/ ]+?)\s*::?(?!=)", line)
    if match and not line.startswith((".", "\t")):
      targets.update(match.group(1).split())
  return targets


def _cli_commands():
  """{top-level command: {subcommands}} from the argparse definitions, read as text.

  A parser made by `X.add_parser("name")` is a top-level command when X is not the
  subparsers object of another parser made that way in the same file (the root parser's
  subparsers, or one passed in from another module).
  """
  sources = []
  for package in sorted(ROOT.iterdir()):
    if not (package / "__init__.py").exists() or package.name == "tests":
      continue
    for path in sorted(package.rglob("*.py")):
      text = path.read_text(encoding="utf-8")
      # add_subparsers marks a CLI module; add_parser alone, a command split into a
      # module of its own that is handed the subparsers object.
      if "add_subparsers" in text or ".add_parser(" in text:
        sources.append(text)
  commands = collections.defaultdict(set)
  for text in sources:
    owner_of_subparsers = dict(re.findall(r"(\w+)\s*=\s*(\w+)\.add_subparsers\(", text))
    made = []  # (parser variable, subparsers variable, names)
    for match in re.finditer(r"(?:(\w+)\s*=\s*)?(\w+)\.add_parser\(\s*[\"']([\w\-]+)[\"']",
                             text):
      names = {match.group(3)}
      call = text[match.end():match.end() + 600].split("\n\n")[0]
      aliases = re.search(r"aliases\s*=\s*[\[(]([^\])]*)[\])]", call)
      if aliases:
        names.update(re.findall(r"[\"']([\w\-]+)[\"']", aliases.group(1)))
      made.append((match.group(1), match.group(2), names))
    names_of_parser = {var: names for var, _, names in made if var}
    for _, subparsers, names in made:
      parent = owner_of_subparsers.get(subparsers)
      if parent in names_of_parser:
        for parent_name in names_of_parser[parent]:
          commands[parent_name].update(names)
      else:
        for name in names:
          commands.setdefault(name, set())
  return dict(commands)


def test_the_cli_definitions_are_found():
  commands = _cli_commands()
  # The README's three commands for your own table; if these are not found, the
  # parsing above no longer matches how the CLI is written.
  assert "run" in commands and {"draft", "check"} <= commands.get("spec", set()), commands


# A quoted command starts a code line or an inline code span, possibly after a shell
# prompt, `&&`, `;`, `|` or a path to the executable.
_MAKE = re.compile(r"(?:^|[;&|(]\s*|\$\s+)make\s+([^\s;&|#]+)")
_CLI = re.compile(r"(?:^|[;&|(]\s*|\$\s+)(?:[\w./\-]*/)?clinical-dp\s+([^\s;&|#]+)(?:\s+([^\s;&|#]+))?")


def _quoted(page, pattern):
  _, code = _split_code(page.read_text(encoding="utf-8"))
  for line in code:
    for match in pattern.finditer(line.strip()):
      yield match


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_quoted_make_targets_exist(page):
  targets = _make_targets()
  unknown = {m.group(1) for m in _quoted(page, _MAKE)
             if not m.group(1).startswith("-") and m.group(1) not in targets}
  assert not unknown, f"{page.relative_to(ROOT)}: no Makefile target {sorted(unknown)}"


def _word(token):
  return None if token is None else token.rstrip(":,.;)")


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_quoted_cli_commands_exist(page):
  commands = _cli_commands()
  unknown = set()
  for match in _quoted(page, _CLI):
    command, sub = _word(match.group(1)), _word(match.group(2))
    if command.startswith("-"):  # clinical-dp --help
      continue
    if command not in commands:
      unknown.add(command)
    elif commands[command] and sub is not None and not sub.startswith("-") \
        and sub != "..." and sub not in commands[command]:
      unknown.add(f"{command} {sub}")
  assert not unknown, f"{page.relative_to(ROOT)}: no clinical-dp command {sorted(unknown)}"
