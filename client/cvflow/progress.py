"""Progress bars for transfers (uploads and downloads), silent when nobody is watching.

One small API for every command that moves bytes::

    with transfer_bar(quiet=quiet) as bar:
        total = bar.add("3 files", total=sum(sizes))
        one = bar.add("weights/model.safetensors", total=size)
        bar.advance(one, n)
        bar.advance(total, n)
        bar.log("resuming weights/model.safetensors at 5.0 MiB")

Bars are drawn on stderr (stdout stays clean for ``--json``) only when stderr is a
terminal; otherwise, and with ``quiet``, ``add`` and ``advance`` do nothing. ``log``
lines still reach stderr when stderr is not a terminal (a CI log wants them), but not
with ``quiet``. Every method may be called from several threads at once.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["SILENT", "Transfer", "format_size", "step_printer", "transfer_bar"]


class Transfer(Protocol):
    """What ``transfer_bar`` yields; also what library functions accept as ``progress``."""

    def add(self, description: str, total: int | None) -> int:
        """Start a bar of ``total`` bytes (None: unknown); returns its id."""
        ...

    def advance(self, task_id: int, n: int) -> None:
        """Move bar ``task_id`` on by ``n`` bytes."""
        ...

    def log(self, message: str) -> None:
        """Print a line for the person at the terminal, above the bars."""
        ...


class _Bars:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def add(self, description: str, total: int | None) -> int:
        return int(self._progress.add_task(description, total=total))

    def advance(self, task_id: int, n: int) -> None:
        self._progress.advance(TaskID(task_id), n)

    def log(self, message: str) -> None:
        self._progress.console.print(message, markup=False, highlight=False)


class _NoBars:
    """Counts task ids so callers can treat it like the real thing; draws nothing."""

    def __init__(self, *, echo: bool) -> None:
        self._echo = echo
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def add(self, description: str, total: int | None) -> int:
        with self._lock:
            return next(self._ids)

    def advance(self, task_id: int, n: int) -> None:
        pass

    def log(self, message: str) -> None:
        if self._echo:
            click.echo(message, err=True)


#: A ``Transfer`` that does nothing at all: the default for library calls.
SILENT: Transfer = _NoBars(echo=False)


@contextmanager
def transfer_bar(*, quiet: bool = False, console: Console | None = None) -> Iterator[Transfer]:
    """Bars on stderr while the block runs; see the module docstring for when they show."""
    console = console or Console(stderr=True)
    if quiet or not console.is_terminal or console.is_dumb_terminal:
        yield _NoBars(echo=not quiet)
        return
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        yield _Bars(progress)


def step_printer(bar: Transfer, *, verbose: bool = False, quiet: bool = False) -> Callable[[str], None]:
    """A printer for the steps of a longer job (``cvflow install``: resolve, pull, create a venv...).

    Above ``bar``'s bars (dimmed, with the time since the job began) when they are drawn, that
    is on a terminal; elsewhere only with ``verbose``, as plain lines on stderr, so a failing
    command's stderr stays its one error line; never with ``quiet``.
    """
    import time

    started = time.monotonic()
    if quiet:
        return lambda message: None
    if isinstance(bar, _Bars):
        console = bar._progress.console

        def draw(message: str) -> None:
            console.print(f"[dim]{time.monotonic() - started:5.1f}s[/dim] {escape(message)}", highlight=False)

        return draw
    if verbose:
        return lambda message: click.echo(message, err=True)
    return lambda message: None


def format_size(n: float) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ``6.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
