"""Dependencies point one way: ``client`` <- ``hub`` <- ``indexer``, and ``hub`` <- ``web``.

* nothing under ``hub/`` imports ``web`` or ``indexer``, except the composition roots
  ``hub/app.py`` and ``hub/cli`` (a module or a package), which assemble the whole;
* ``web`` never imports ``indexer`` (it reaches repositories through ``hub.services``);
* the client (``client/cvflow``) imports none of ``hub``, ``web`` and ``indexer``: edge machines
  install it alone;
* the access rules live in ``hub/services/access.py`` alone: no other module defines them.

Imports are read with ``ast`` from every module, including those inside functions and
``if TYPE_CHECKING:`` blocks, so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def modules(package: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[0] == "client":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from hub import web``-style imports of submodules
                yield node.lineno, f"{target}.{alias.name}"


def reaches(name: str, top: str) -> bool:
    return name == top or name.startswith(top + ".")


def offences(package: str, forbidden: tuple[str, ...], *, allowed: tuple[str, ...] = (),
             root: Path = ROOT) -> list[str]:
    found = []
    for path in modules(package, root):
        rel = path.relative_to(root).as_posix()
        if any(rel == a or rel.startswith(a + "/") for a in allowed):
            continue
        for line, name in imported(path, root):
            if any(reaches(name, top) for top in forbidden):
                found.append(f"{rel}:{line} imports {name}")
    return sorted(set(found))


#: Where ``hub`` is put together with the website and the indexer.
COMPOSITION_ROOTS = ("hub/app.py", "hub/cli.py", "hub/cli")


def test_hub_imports_neither_web_nor_indexer_outside_its_composition_roots() -> None:
    assert offences("hub", ("web", "indexer"), allowed=COMPOSITION_ROOTS) == []


def test_web_does_not_import_the_indexer() -> None:
    assert offences("web", ("indexer",)) == []


def test_the_client_imports_nothing_of_the_server() -> None:
    assert modules("client/cvflow"), "the client's sources moved; update this test"
    assert offences("client/cvflow", ("hub", "web", "indexer")) == []


def test_the_import_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The rule is only as good as the reader: imports in functions, relative, aliased and TYPE_CHECKING ones."""
    (tmp_path / "hub" / "probe").mkdir(parents=True)
    (tmp_path / "hub" / "cli").mkdir()
    (tmp_path / "hub" / "__init__.py").write_text("")
    (tmp_path / "hub" / "probe" / "__init__.py").write_text("")
    (tmp_path / "hub" / "probe" / "mod.py").write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from web.session import web_principal\n"
        "def f():\n    import indexer.worker as w\n    return w\n"
        "from .. import services\n"
        "from hub import db as indexer\n"
    )
    (tmp_path / "hub" / "app.py").write_text("import web\n")
    (tmp_path / "hub" / "cli" / "indexer.py").write_text("def run():\n    from indexer.worker import Worker\n")
    names = {name for _, name in imported(tmp_path / "hub" / "probe" / "mod.py", tmp_path)}
    assert {"web.session", "indexer.worker", "hub.services", "hub.db"} <= names
    assert "indexer" not in names  # an alias is not an import of the package it is named after
    assert offences("hub", ("web", "indexer"), allowed=COMPOSITION_ROOTS, root=tmp_path) == [
        "hub/probe/mod.py:4 imports web.session",
        "hub/probe/mod.py:4 imports web.session.web_principal",
        "hub/probe/mod.py:6 imports indexer.worker",
    ]


ACCESS_RULES = ("package_role", "can_read", "reader", "visible_filter", "may_publish", "require_maintainer",
                "require_owner", "may_create_in", "repository_scope_covers", "may_manage_repository",
                "may_view_repository")


@pytest.mark.parametrize("package", ["hub", "web", "indexer"])
def test_access_rules_are_defined_in_one_module(package: str) -> None:
    import hub.services.access as access

    for name in ACCESS_RULES:
        assert callable(getattr(access, name)), name
    home = ROOT / "hub" / "services" / "access.py"
    # Old names of the same rules too, so that none grows back elsewhere.
    names = {*ACCESS_RULES, "_require_maintainer", "_require_owner", "_may_create_in", "scope_covers",
             "can_manage", "can_view", "_scope_filter"}
    defined = [  # module-level functions: methods such as Scopes.can_read check a token, not a role
        f"{path.relative_to(ROOT)}:{node.lineno} defines {node.name}"
        for path in modules(package) if path != home
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names
    ]
    assert defined == []
