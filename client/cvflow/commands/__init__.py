"""The CLI's commands, one module per group of concerns."""

from __future__ import annotations

import importlib

import click

#: module -> the click commands it defines, in the order ``cvflow --help`` lists them.
COMMANDS: dict[str, tuple[str, ...]] = {
    "account": ("login", "logout", "whoami"),
    "packages": ("init", "validate", "publish", "yank", "search", "info"),
    "pull": ("pull", "cache"),
    "install": ("install", "list_installed", "uninstall"),
    "bundle": ("bundle",),
    "run": ("run", "ps", "stop", "logs", "restart"),
}


def register(group: click.Group) -> None:
    for module_name, names in COMMANDS.items():
        module = importlib.import_module(f"cvflow.commands.{module_name}")
        for name in names:
            group.add_command(getattr(module, name))
