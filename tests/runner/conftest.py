"""Fixtures for the runner tests: one hub for the session with the example packages (and the
test package ``qa/probe``) published the way ``cvflow-hub serve --demo`` publishes them, and one
CVFLOW_HOME, so that every package venv (torch's included) is built once per session.

Every runner a test starts is stopped at the end of the session, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.demo import load_examples
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.conftest import start_hub
from tests.helpers import LiveHub

PACKAGES = Path(__file__).resolve().parent / "packages"


@pytest.fixture(scope="session")
def demo_hub(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    hub, server = start_hub(make_settings("sqlite-file"))
    lines = [*load_examples(hub.context), *load_examples(hub.context, PACKAGES)]
    assert all("published" in line for line in lines), lines
    yield hub
    server.__exit__()
    hub.context.engine.dispose()


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cvflow-home")


@pytest.fixture(scope="session")
def env(demo_hub: LiveHub, home: Path) -> Iterator[dict[str, str | None]]:
    environment = cli_env(home, demo_hub.url)
    yield environment
    run_cli(environment, "stop", "--all", "--timeout", "5")
