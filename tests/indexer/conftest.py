"""Fixtures for the indexer tests: served git repositories, a weight server, hubs that index.

The hubs here allow loopback addresses (``indexer_allow_private_addresses``), since every
repository and weight in these tests is served on 127.0.0.1; everything else is the usual
live hub on SQLite + files and PostgreSQL + S3.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, reset, start_hub
from tests.helpers import LiveHub
from tests.indexer._servers import FileServer, GitDaemon, GitRepo, SmartHttp

_names = itertools.count(1)


@pytest.fixture(scope="session")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served-git")


@pytest.fixture(scope="session")
def git_daemon(served_root: Path) -> Iterator[GitDaemon]:
    daemon = GitDaemon(served_root)
    yield daemon
    daemon.close()


@pytest.fixture(scope="session")
def smart_http(served_root: Path) -> Iterator[SmartHttp]:
    server = SmartHttp(served_root)
    yield server
    server.close()


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    server = FileServer(tmp_path_factory.mktemp("weights"))
    yield server
    server.close()


@pytest.fixture
def make_repo(served_root: Path):  # type: ignore[no-untyped-def]
    """``make_repo()`` -> (GitRepo, name): a new repository served by the git servers as ``name``."""

    def make() -> tuple[GitRepo, str]:
        name = f"repo{next(_names)}"
        return GitRepo(served_root / name), name

    return make


@pytest.fixture(scope="session")
def _indexer_hubs(make_settings) -> Iterator[dict[str, LiveHub]]:  # type: ignore[no-untyped-def]
    hubs: dict[str, LiveHub] = {}
    servers = []

    def get(backend: str) -> LiveHub:
        if backend not in hubs:
            settings = make_settings(backend, indexer_allow_private_addresses=True, indexer_poll_interval=0,
                                     metadata_cache_ttl=0)
            hub, server = start_hub(settings)
            hub.backend = backend
            hubs[backend] = hub
            servers.append(server)
        return hubs[backend]

    yield get  # type: ignore[misc]
    for server in servers:
        server.__exit__()
    for hub in hubs.values():
        hub.context.engine.dispose()


def _fresh(hub: LiveHub) -> LiveHub:
    reset(hub)
    shutil.rmtree(hub.context.settings.data_dir / "git", ignore_errors=True)
    return hub


@pytest.fixture(params=BACKENDS)
def ihub(request: pytest.FixtureRequest, _indexer_hubs) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """A live hub that may index loopback repositories, once per backend."""
    hub = _fresh(_indexer_hubs(request.param))
    yield hub
    hub.close_clients()


@pytest.fixture
def one_hub(_indexer_hubs) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """Like ``ihub`` but on one backend only (SQLite + files when enabled), for the many edge cases."""
    backend = "sqlite-file" if "sqlite-file" in BACKENDS else BACKENDS[0]
    hub = _fresh(_indexer_hubs(backend))
    yield hub
    hub.close_clients()
