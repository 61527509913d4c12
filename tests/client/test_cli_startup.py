"""Both command lines load their commands lazily: the group's table names each command, its module
and its short help, and a command's module is imported only when it runs.

What is checked: the table agrees with the commands (so ``--help`` cannot drift), the table lists
every command the modules define, ``--help`` looks exactly as an eagerly loaded group's would, and
``cvflow --help`` / ``cvflow ps`` / ``cvflow-hub --help`` do not import the heavy parts (run in a
fresh interpreter, so nothing another test imported counts).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cvflow.commands import COMMANDS as CLIENT_COMMANDS
from cvflow.commands.lazy import Entry, LazyGroup
from hub.cli import COMMANDS as HUB_COMMANDS

TABLES = {"cvflow": ("cvflow.cli", CLIENT_COMMANDS), "cvflow-hub": ("hub.cli", HUB_COMMANDS)}
ROWS = [pytest.param(entry, id=f"{prog} {entry.name}") for prog, (_, table) in TABLES.items() for entry in table]


@pytest.mark.parametrize("entry", ROWS)
def test_each_row_is_its_commands_name_and_first_help_line(entry: Entry) -> None:
    command = entry.load()
    assert command.name == entry.name
    assert entry.help == command.get_short_help_str(limit=10**6)


@pytest.mark.parametrize("prog", sorted(TABLES))
def test_the_table_lists_every_command_its_modules_define(prog: str) -> None:
    _, table = TABLES[prog]
    listed = {(e.module, e.attr) for e in table}
    assert len({e.name for e in table}) == len(table)
    for module_name in {e.module for e in table}:
        module = importlib.import_module(module_name)
        found = {a: c for a, c in vars(module).items() if isinstance(c, click.Command)}
        nested = {id(sub) for c in found.values() if isinstance(c, click.Group) for sub in c.commands.values()}
        top = {(module_name, a) for a, c in found.items() if id(c) not in nested}
        assert top <= listed, f"{prog}: not in the table: {sorted(top - listed)}"


@pytest.mark.parametrize("prog", sorted(TABLES))
def test_help_lists_the_table_as_the_loaded_commands_would(prog: str) -> None:
    module_name, table = TABLES[prog]
    main = importlib.import_module(module_name).main
    assert isinstance(main, LazyGroup)
    fresh = LazyGroup(name=main.name, params=main.params, help=main.help, lazy_commands=table,
                      context_settings=main.context_settings)
    lazy = CliRunner().invoke(fresh, ["--help"], prog_name=prog)
    loaded = click.Group(name=main.name, params=main.params, help=main.help,
                         context_settings=main.context_settings, commands={e.name: e.load() for e in table})
    eager = CliRunner().invoke(loaded, ["--help"], prog_name=prog)
    assert lazy.exit_code == eager.exit_code == 0
    assert lazy.output == eager.output
    assert all(f"  {e.name} " in lazy.output for e in table)


def test_an_unknown_command_is_refused_as_before() -> None:
    from cvflow.cli import main

    r = CliRunner().invoke(main, ["instal"], prog_name="cvflow")
    assert r.exit_code == 2 and "No such command 'instal'" in r.output


_PROBE = """
import json, sys
from {module} import main
try:
    main({args!r}, prog_name={prog!r})
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}), file=sys.stderr)
"""

HEAVY = {"httpx", "rich", "resolvelib"}
HUB_HEAVY = {"sqlalchemy", "sqlmodel", "starlette", "uvicorn", "boto3", "web", "indexer", "hub.app", "httpx"}


def _loaded(prog: str, args: list[str], home: Path) -> set[str]:
    module = TABLES[prog][0]
    env = {**os.environ, "CVFLOW_HOME": str(home), "CVFLOW_HUB_DATA_DIR": str(home / "hub")}
    done = subprocess.run([sys.executable, "-c", _PROBE.format(module=module, args=args, prog=prog)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stdout + done.stderr
    return {m.split(".")[0] for m in report["modules"]} | set(report["modules"])


@pytest.mark.parametrize("args", [["--help"], ["ps"], ["ps", "--json"], ["list"]])
def test_cvflow_help_and_ps_import_neither_httpx_nor_rich_nor_the_resolver(args: list[str], tmp_path: Path) -> None:
    assert not HEAVY & _loaded("cvflow", args, tmp_path)


def test_the_probe_sees_what_a_command_imports(tmp_path: Path) -> None:
    # The same probe on a command that talks to a hub: httpx is there, so the checks above can fail.
    assert "httpx" in _loaded("cvflow", ["pull", "--help"], tmp_path)


def test_cvflow_hub_help_imports_neither_the_app_nor_the_database(tmp_path: Path) -> None:
    assert not HUB_HEAVY & _loaded("cvflow-hub", ["--help"], tmp_path)
    gc_help = _loaded("cvflow-hub", ["gc", "--help"], tmp_path)  # a command's own help loads its module alone
    assert "hub.cli.gc" in gc_help and "hub.cli.serve" not in gc_help
