"""Fixtures for the mirror tests: extra hubs on loopback, and the ``cvflow-hub`` CLI against one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hub.cli import main
from tests.conftest import start_hub
from tests.helpers import LiveHub


@pytest.fixture
def spawn_hub(make_settings) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """``spawn_hub(backend="sqlite-file", **settings)``: a fresh hub on a loopback port, stopped after the test."""
    started: list[tuple[LiveHub, Any]] = []

    def spawn(backend: str = "sqlite-file", **overrides: object) -> LiveHub:
        live, server = start_hub(make_settings(backend, **overrides))
        live.backend = backend
        live.server = server  # type: ignore[attr-defined]
        started.append((live, server))
        return live

    yield spawn
    for live, server in reversed(started):
        live.close_clients()
        server.__exit__()
        live.context.engine.dispose()


def stop_hub(live: LiveHub) -> None:
    """Stop ``live``'s server now (it stays stopped; the fixture's teardown is then a no-op)."""
    server = getattr(live, "server", None)
    if server is not None:
        server.__exit__()


def hub_cli(live: LiveHub, *args: str) -> Result:
    """``cvflow-hub ARGS`` run against ``live``'s database and store, in this process."""
    s = live.context.settings
    base = ["--data-dir", str(s.data_dir), "--database-url", s.database_url, "--storage-url", s.storage_url]
    return CliRunner().invoke(main, [*base, *args], catch_exceptions=False)
