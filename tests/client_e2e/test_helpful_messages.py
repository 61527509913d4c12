"""Messages that say what to do: the installed ``cvflow`` against a real hub over a socket.

A mistyped name gets the hub's close names (never a private package the caller cannot
read); a hub that cannot be reached is named by its URL, with ``--offline`` offered when the
cache has the package; a refused token says where it came from; a hub URL without a scheme,
or with the API root, still reaches the hub.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cvflow.config import save_login
from tests.client_e2e._pull_helpers import CVFLOW, cvflow, publish_ok
from tests.helpers import LiveHub, publish

FILES = {"solver.py": b"class Detector: pass\n"}
BAD_TOKEN = "cvf_" + "x" * 40


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "cvflow-home"


@pytest.fixture
def published(alice: httpx.Client) -> httpx.Client:
    """alice/detector (public) and alice/detectron (private) on the hub."""
    publish_ok(alice, "alice/detector", "1.0.0", FILES)
    response = publish(alice, "alice/detectron", "1.0.0", files=FILES, private=True)
    assert response.status_code == 201, response.text
    return alice


@pytest.fixture
def dead_hub() -> Iterator[str]:
    """The URL of a loopback port where nothing listens (held bound, never listening: connection refused)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def stderr_of(result: object) -> str:
    """A failed command's stderr: exit 1, an ``error:`` line, no traceback."""
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 1, (result.returncode, stderr)  # type: ignore[attr-defined]
    assert stderr.startswith("error: ") and "Traceback" not in stderr, stderr
    return stderr


# --- did you mean -------------------------------------------------------------------------------


def test_not_found_suggests_only_names_the_caller_may_read(published: httpx.Client, hub: LiveHub) -> None:
    anonymous = httpx.get(f"{hub.url}/api/v1/packages/alice/detectr")
    assert anonymous.status_code == 404
    assert anonymous.json()["error"] == {"code": "package_not_found", "message": "no package alice/detectr",
                                         "details": {"suggestions": ["alice/detector"]}}
    bob = hub.user_client("bob")
    assert bob.get("/api/v1/packages/alice/detectr").json()["error"]["details"] == {"suggestions": ["alice/detector"]}
    # Asking for the private package by its exact name suggests nothing that reveals it.
    hidden = bob.get("/api/v1/packages/alice/detectron").json()["error"]
    assert hidden["code"] == "package_not_found" and "alice/detectron" not in str(hidden.get("details"))
    # Its owner is offered both.
    mine = published.get("/api/v1/packages/alice/detectr").json()["error"]["details"]["suggestions"]
    assert sorted(mine) == ["alice/detector", "alice/detectron"]
    # Another namespace's spelling, and a version read, suggest too; a name like nothing has no field.
    assert bob.get("/api/v1/packages/alcie/detector").json()["error"]["details"] == {"suggestions": ["alice/detector"]}
    version = bob.get("/api/v1/packages/alice/detectr/versions/1.0.0").json()["error"]
    assert version["details"] == {"suggestions": ["alice/detector"]}
    assert "details" not in bob.get("/api/v1/packages/zed/qqqqqqqq").json()["error"]


@pytest.mark.parametrize("command", [["pull"], ["info"], ["install"], ["run"]])
def test_every_command_that_names_a_package_prints_did_you_mean(published: httpx.Client, hub: LiveHub,
                                                                home: Path, command: list[str]) -> None:
    stderr = stderr_of(cvflow(home, hub.url, *command, "alice/detectr"))

    assert "did you mean alice/detector?" in stderr, stderr
    assert "detectron" not in stderr  # private: not for an anonymous caller


# --- the hub cannot be reached -------------------------------------------------------------------


def test_hub_down_offers_offline_when_the_package_is_cached(published: httpx.Client, hub: LiveHub, home: Path,
                                                           dead_hub: str) -> None:
    assert cvflow(home, hub.url, "pull", "alice/detector").returncode == 0

    stderr = stderr_of(cvflow(home, dead_hub, "pull", "alice/detector@^1", "-q"))

    assert f"cannot reach the hub at {dead_hub}" in stderr, stderr
    assert "is it running? (that URL came from CVFLOW_HUB)" in stderr, stderr
    assert "is in the cache; to use it without the hub, run: cvflow pull 'alice/detector@^1' -q --offline" in stderr
    again = cvflow(home, dead_hub, "pull", "alice/detector@^1", "-q", "--offline")
    assert again.returncode == 0, again.stderr


def test_hub_down_without_the_package_cached_names_the_url_only(home: Path, dead_hub: str) -> None:
    stderr = stderr_of(cvflow(home, dead_hub, "--hub", dead_hub, "install", "alice/detector"))

    assert f"cannot reach the hub at {dead_hub}" in stderr, stderr
    assert "(that URL came from --hub)" in stderr
    assert "--offline" not in stderr


# --- a refused token -----------------------------------------------------------------------------


def test_refused_token_says_where_it_came_from(published: httpx.Client, hub: LiveHub, home: Path) -> None:
    login = f"`cvflow login --hub {hub.url}`"
    flag = stderr_of(cvflow(home, hub.url, "--token", BAD_TOKEN, "info", "alice/detector"))
    assert "the token given with --token" in flag and login in flag, flag

    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_")}
    env.update(CVFLOW_HOME=str(home), CVFLOW_HUB=hub.url, CVFLOW_TOKEN=BAD_TOKEN)
    from_env = subprocess.run([str(CVFLOW), "info", "alice/detector"], capture_output=True, text=True, env=env,
                              timeout=60)
    assert "the CVFLOW_TOKEN environment variable" in stderr_of(from_env), from_env.stderr

    saved = save_login(home, hub.url, BAD_TOKEN)
    from_file = stderr_of(cvflow(home, hub.url, "info", "alice/detector"))
    assert f"the token saved for {hub.url} in {saved}" in from_file and login in from_file, from_file


# --- hub URLs as people type them ----------------------------------------------------------------


def test_hub_url_without_scheme_or_with_the_api_root_reaches_the_hub(published: httpx.Client, hub: LiveHub,
                                                                    home: Path) -> None:
    bare = hub.url.removeprefix("http://")
    ok = cvflow(home, bare, "info", "alice/detector", "--json")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""

    api_root = cvflow(home, hub.url, "--hub", f"{hub.url}/api/v1/", "info", "alice/detector", "--json")
    assert api_root.returncode == 0, api_root.stderr
    assert api_root.stderr.count("\n") == 1, api_root.stderr
    assert f"is the hub's API root; using the hub's own URL {hub.url}" in api_root.stderr
