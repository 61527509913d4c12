"""A click group that imports a command's module only when that command runs.

The group holds a table of :class:`Entry` rows (name, module, attribute, short help), as pip's
command table does. ``--help`` on the group lists the table without importing anything;
``cvflow ps`` imports ``cvflow.commands.run`` and nothing else. Both ``cvflow`` and
``cvflow-hub`` use it. ``tests/client/test_cli_startup.py`` checks that every row's short help
is the command's own first help line, so the table cannot drift from the code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class Entry:
    """One command of a lazy group."""

    name: str  #: as typed on the command line
    module: str  #: dotted path of the module that defines it
    attr: str  #: the click command (or group) in that module
    help: str  #: the short help ``--help`` lists: the command's own first help line

    def load(self) -> click.Command:
        command = getattr(importlib.import_module(self.module), self.attr)
        if not isinstance(command, click.Command):  # a wrong table row is a bug, said plainly
            raise TypeError(f"{self.module}.{self.attr} is not a click command")
        return command


class LazyGroup(click.Group):
    """A group whose commands come from a table of :class:`Entry` rows, imported on first use."""

    def __init__(self, *args: Any, lazy_commands: Iterable[Entry] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, Entry] = {entry.name: entry for entry in lazy_commands}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            command = self.lazy_commands[cmd_name].load()
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The group's own --help: list the table's short help, import no command module.
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                command = click.Command(name, help=self.lazy_commands[name].help)
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])
