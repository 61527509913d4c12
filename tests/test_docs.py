"""The documentation keeps up with the code.

What is checked, and the rule for each:

* every hub setting has its row in docs/configuration.md;
* **module tables.** A module table is a Markdown table whose header's first cell is ``module``,
  in docs/*.md or in a package's ``__init__`` docstring, or the layout tree at the top of
  docs/architecture.md.

  - In a package docstring, the first cell of each row names modules of that package (``x`` or
    ``x/`` for a subpackage). Each must exist, and the table lists every module and subpackage of
    the package (private ``_x`` modules may be listed, need not be). The packages in
    :data:`PACKAGE_TABLES` must have one, so a table cannot pass by being deleted.
  - In docs/*.md and the READMEs, the first cell names repository paths (``hub/context.py``) or
    dotted modules (``cvflow.names``); each must exist. docs/indexer.md's
    "Where the code lives" lists every module of ``indexer/``.
  - In docs/architecture.md's tree, every ``name.py`` or ``name/`` entry exists (an indented entry
    is inside the entry above it); and for each package in :data:`TREE_COMPLETE`, every module and
    subpackage has its own entry or is named, as a word, in its package's entry.
* **paths and dotted names.** A backticked repository path (``hub/...``, ``runner/...``) in the
  docs exists; a backticked dotted name (``hub.services.jobs``, ``cvflow.transfer.download``) in
  the docs or in any module's docstring is a module, or an attribute of one.
* **error codes.** ``hub/errors.py``'s docstring lists exactly the statuses its codes use;
  docs/api.md's table of codes lists every code of ``hub.errors.CODES`` with its
  status, and no other; the same for docs/runner.md and ``cvflow.runner.errors.CODES``. A
  backticked ``NNN code`` anywhere in the docs is a real code with that status.
* **commands.** Every command of ``cvflow-hub`` and ``cvflow`` (the lazy tables
  ``hub.cli.COMMANDS``, ``cvflow.commands.COMMANDS``), and every subcommand of their groups, is
  named in the docs (README.md, client/README.md, docs/*.md) as ``cvflow-hub NAME`` /
  ``cvflow NAME``; and every command the docs name that way exists.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ALL_DOCS = [ROOT / "README.md", ROOT / "client" / "README.md", *sorted(DOCS.glob("*.md"))]
SOURCE_PACKAGES = ("hub", "web", "indexer", "client/cvflow")

#: Packages whose ``__init__`` docstring must carry a module table.
PACKAGE_TABLES = ("hub", "hub/services", "hub/mirror", "indexer", "client/cvflow/runner",
                  "client/cvflow/install", "client/cvflow/runtime")
#: Packages the architecture tree lists in full; the others it names, and their own module
#: tables (PACKAGE_TABLES, docs/indexer.md) list their modules.
TREE_COMPLETE = ("hub", "hub/services", "web", "indexer", "client/cvflow", "client/cvflow/install")


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"`CVFLOW_HUB_{f.name.upper()}`" not in text]
    assert missing == [], f"add these to docs/configuration.md: {missing}"


# -- modules -------------------------------------------------------------------------------------


def package_members(package: str) -> set[str]:
    """Modules (``x``) and subpackages (``x/``) directly inside a package directory."""
    directory = ROOT / package
    members = {p.stem for p in directory.glob("*.py") if p.stem not in ("__init__", "__main__")}
    members |= {f"{p.name}/" for p in directory.iterdir() if (p / "__init__.py").is_file()}
    return members


def required(members: set[str]) -> set[str]:
    return {m for m in members if not m.startswith("_")}


def markdown_tables(text: str) -> Iterator[list[list[str]]]:
    """Each Markdown table as rows of cells, header row first, separator row dropped."""
    rows: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [c.strip() for c in stripped[1:-1].split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            yield rows
            rows = []


def module_tables(text: str) -> list[list[str]]:
    """The first cells (rows after the header) of each table whose header starts with ``module``."""
    return [[row[0] for row in table[1:]] for table in markdown_tables(text) if table[0][0] == "module"]


def package_docstring(package: str) -> str:
    return ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""


def all_packages() -> list[str]:
    found = []
    for top in SOURCE_PACKAGES:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            found.append(init.parent.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize("package", all_packages())
def test_package_module_table_matches_the_package(package: str) -> None:
    tables = module_tables(package_docstring(package))
    if package in PACKAGE_TABLES:
        assert len(tables) == 1, f"{package}/__init__.py: its docstring needs one `| module | ... |` table"
    if not tables:
        return
    named = {n for cell in tables[0] for n in re.findall(r"``([A-Za-z_][\w]*/?)``", cell)}
    members = package_members(package)
    assert named - members == set(), f"{package}/__init__.py names modules that do not exist"
    assert required(members) - named == set(), f"{package}/__init__.py: its module table misses these"


def test_docs_module_tables_name_existing_paths() -> None:
    checked = 0
    for doc in ALL_DOCS:
        for first_cells in module_tables(doc.read_text()):
            for cell in first_cells:
                for name in re.findall(r"`([^`]+)`", cell):
                    checked += 1
                    found = (ROOT / name).exists() if "/" in name or name.endswith(".py") else resolves(name)
                    assert found, f"{doc.name}: its module table names {name}, which does not exist"
    assert checked > 10


def test_indexer_doc_names_every_indexer_module() -> None:
    text = (DOCS / "indexer.md").read_text()
    section = text.split("## Where the code lives", 1)[1].split("\n## ", 1)[0]
    named = {Path(p).stem for cells in module_tables(section) for c in cells for p in re.findall(r"`([^`]+)`", c)
             if p.startswith("indexer/")}
    assert required(package_members("indexer")) - named == set()


def architecture_tree() -> list[tuple[str, str]]:
    """``(path, description)`` for each entry of docs/architecture.md's tree, continuation lines joined."""
    text = (DOCS / "architecture.md").read_text()
    block = text.split("```\n", 2)[1]
    entries: list[tuple[str, str]] = []
    parents: list[tuple[int, str]] = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        match = re.match(r"([\w.-]+(?:/[\w.-]+)*(?:\.py|/))(?:\s+(.*))?$", line.strip())
        if match is None or indent > 2 * len(parents):  # a continuation line of the entry above
            path, description = entries[-1]
            entries[-1] = (path, f"{description} {line.strip()}")
            continue
        parents = [(i, p) for i, p in parents if i < indent]
        base = parents[-1][1] if parents else ""
        path = base + match.group(1)
        entries.append((path, match.group(2) or ""))
        if path.endswith("/"):
            parents.append((indent, path))
    return entries


def test_architecture_tree_names_existing_modules() -> None:
    entries = architecture_tree()
    assert len(entries) > 20
    missing = [path for path, _ in entries if not (ROOT / path).exists()]
    assert missing == [], f"docs/architecture.md's tree names what does not exist: {missing}"


@pytest.mark.parametrize("package", TREE_COMPLETE)
def test_architecture_tree_lists_every_module(package: str) -> None:
    entries = dict(architecture_tree())
    assert f"{package}/" in entries, f"docs/architecture.md's tree has no entry {package}/"
    description = entries[f"{package}/"]
    unnamed = [
        m for m in sorted(required(package_members(package)))
        if f"{package}/{m}" not in entries and f"{package}/{m}.py" not in entries
        and not re.search(rf"(?<![\w./]){re.escape(m.rstrip('/'))}(?![\w])", description)
    ]
    assert unnamed == [], f"docs/architecture.md: the tree's {package}/ does not name {unnamed}"


# -- paths and dotted names ----------------------------------------------------------------------

PATH_ROOTS = {"hub", "web", "indexer", "client", "tests", "migrations", "bench", "examples", "scripts"}
CLIENT_ROOTS = {"runner", "install", "runtime", "commands", "manifest"}  # written relative to client/cvflow
NOT_MODULES = {"cvflow.toml", "cvflow.lock"}
GENERATED = ("bench/results/",)  # written by the benchmarks when they run; ignored by git


def test_backticked_paths_exist() -> None:
    checked = 0
    for doc in ALL_DOCS:
        for path in re.findall(r"`([\w.-]+/[\w./-]*)`", doc.read_text()):
            head = path.split("/", 1)[0]
            if path.startswith(GENERATED):
                continue
            if head in PATH_ROOTS:
                target = ROOT / path
            elif head in CLIENT_ROOTS:
                target = ROOT / "client" / "cvflow" / path
            else:
                continue
            checked += 1
            assert target.exists(), f"{doc.relative_to(ROOT)} names `{path}`, which does not exist"
    assert checked > 20


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def dotted_names(text: str) -> set[str]:
    found = re.findall(r"`{1,2}((?:hub|web|indexer|cvflow)(?:\.[A-Za-z_]\w*)+)(?:\(\))?`{1,2}", text)
    return set(found) - NOT_MODULES


def docstrings() -> Iterator[tuple[str, str]]:
    for top in SOURCE_PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            tree = ast.parse(path.read_text())
            yield path.relative_to(ROOT).as_posix(), ast.get_docstring(tree) or ""


def test_dotted_names_in_docs_and_docstrings_exist() -> None:
    sources = [(d.relative_to(ROOT).as_posix(), d.read_text()) for d in ALL_DOCS] + list(docstrings())
    names = {(where, name) for where, text in sources for name in dotted_names(text)}
    assert len(names) > 20
    unknown = sorted((where, name) for where, name in names if not resolves(name))
    assert unknown == [], f"these name no module or attribute: {unknown}"


# -- error codes ---------------------------------------------------------------------------------


def code_table(text: str) -> dict[str, set[int]]:
    """code -> statuses, from every table whose header is ``| status | code | ... |``."""
    codes: dict[str, set[int]] = {}
    for table in markdown_tables(text):
        if table[0][:2] != ["status", "code"]:
            continue
        for row in table[1:]:
            statuses = {int(s) for s in re.findall(r"\d{3}", row[0])}
            for code in re.findall(r"`([a-z0-9_]+)`", row[1]):
                codes.setdefault(code, set()).update(statuses)
    return codes


@pytest.mark.parametrize(("doc", "module"), [("api.md", "hub.errors"), ("runner.md", "cvflow.runner.errors")])
def test_error_tables_list_every_code(doc: str, module: str) -> None:
    real: dict[str, tuple[int, str]] = importlib.import_module(module).CODES
    documented = code_table((DOCS / doc).read_text())
    assert sorted(set(real) - set(documented)) == [], f"docs/{doc}: add these codes to its table"
    assert sorted(set(documented) - set(real)) == [], f"docs/{doc}: its table names codes {module} lacks"
    wrong = {c: (s, real[c][0]) for c, s in documented.items() if real[c][0] not in s}
    assert wrong == {}, f"docs/{doc}: documented status vs the code's: {wrong}"


def test_the_error_docstring_lists_the_statuses_the_codes_use() -> None:
    import hub.errors

    drawn = {int(s) for s in re.findall(r"^    (\d{3})  ", hub.errors.__doc__ or "", re.M)}
    assert drawn == {status for status, _ in hub.errors.CODES.values()}


def test_status_and_code_in_prose_agree_with_the_code() -> None:
    from cvflow.runner.errors import CODES as RUNNER
    from hub.errors import CODES as HUB

    checked = 0
    for doc in ALL_DOCS:
        real = RUNNER if doc.name == "runner.md" else HUB
        for status, code in re.findall(r"`(\d{3}) ([a-z][a-z0-9_]*)`", doc.read_text()):
            checked += 1
            assert code in real, f"{doc.relative_to(ROOT)}: `{status} {code}` is no error code"
            assert real[code][0] == int(status), f"{doc.relative_to(ROOT)}: `{code}` is {real[code][0]}"
    assert checked > 10


# -- commands ------------------------------------------------------------------------------------


def command_paths(prog: str, table_module: str) -> set[str]:
    """``prog name`` for every command of the lazy table, and ``prog group sub`` for each group's."""
    paths = set()
    for entry in importlib.import_module(table_module).COMMANDS:
        paths.add(f"{prog} {entry.name}")
        command = entry.load()
        if isinstance(command, click.Group):
            paths |= {f"{prog} {entry.name} {sub}" for sub in command.commands}
    return paths


def documented_commands(prog: str) -> set[str]:
    """``prog word [word]`` as written in code spans and code blocks of the docs."""
    found = set()
    pattern = rf"(?<![\w.-]){re.escape(prog)} ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?"
    for doc in ALL_DOCS:
        text = doc.read_text()
        code = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
        for chunk in code:
            for first, second in re.findall(pattern, chunk):
                found.add(f"{prog} {first}")
                if second:
                    found.add(f"{prog} {first} {second}")
    return found


@pytest.mark.parametrize(("prog", "table"), [("cvflow-hub", "hub.cli"), ("cvflow", "cvflow.commands")])
def test_every_command_is_documented(prog: str, table: str) -> None:
    real = command_paths(prog, table)
    documented = documented_commands(prog)
    assert sorted(real - documented) == [], "document these commands (README.md, client/README.md, docs/)"
    tops = {p for p in real if p.count(" ") == 1}
    unknown = sorted(p for p in documented if p.count(" ") == 1 and p not in tops)
    groups = {p.split(" ")[1] for p in real if p.count(" ") == 2}
    unknown += sorted(p for p in documented if p.count(" ") == 2 and p.split(" ")[1] in groups and p not in real)
    assert unknown == [], "the docs name commands that do not exist"
