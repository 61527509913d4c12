"""``cvflow pull`` and ``cvflow cache``: the installed command against a real hub over a socket."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cvflow.api import HubClient
from cvflow.cache import Cache
from cvflow.cli import main
from cvflow.pull import pull
from tests.client_e2e._pull_helpers import FaultyProxy, cvflow, publish_ok, yank
from tests.conftest import free_port
from tests.helpers import LiveHub

NAME = "alice/detector"
WEIGHTS = bytes(range(256)) * 800
FILES = {"solver.py": b"class Detector: pass\n", "weights/model.bin": WEIGHTS}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "cvflow-home"


@pytest.fixture
def proxy(hub: LiveHub) -> Iterator[FaultyProxy]:
    p = FaultyProxy(hub.url)
    yield p
    p.close()


def snapshot(home: Path, version: str) -> Path:
    return home / "cache" / "snapshots" / "alice" / "detector" / version


def error_line(result: object) -> str:
    """The single line a failing command prints."""
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 1, (result.returncode, stderr)  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_pull_prints_the_snapshot_path_and_json(alice: httpx.Client, hub: LiveHub, home: Path) -> None:
    v1 = publish_ok(alice, NAME, "1.0.0", FILES)

    result = cvflow(home, hub.url, "pull", NAME)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{snapshot(home, '1.0.0')}\n"
    assert (snapshot(home, "1.0.0") / "weights" / "model.bin").read_bytes() == WEIGHTS
    as_json = cvflow(home, hub.url, "pull", f"{NAME}@^1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "name": NAME, "version": "1.0.0", "path": str(snapshot(home, "1.0.0")),
        "files": [{k: f[k] for k in ("path", "size", "sha256")} for f in v1["files"]],
    }


def test_help_teaches_with_examples() -> None:
    runner = CliRunner()
    for args, example in ((["pull"], "cvflow pull alice/detector@^1.2"), (["cache"], "cvflow cache ls"),
                          (["cache", "ls"], "cvflow cache ls --json"),
                          (["cache", "prune"], "cvflow cache prune --dry-run"),
                          (["cache", "verify"], "cvflow cache verify")):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example" in result.output and example in result.output, result.output


def test_yanked_versions_are_skipped_unless_pinned(alice: httpx.Client, hub: LiveHub, home: Path) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    publish_ok(alice, NAME, "1.1.0", FILES)
    yank(alice, NAME, "1.1.0")

    assert cvflow(home, hub.url, "pull", NAME).stdout.strip() == str(snapshot(home, "1.0.0"))
    pinned = cvflow(home, hub.url, "pull", f"{NAME}@1.1.0")

    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == str(snapshot(home, "1.1.0"))
    assert "warning: alice/detector@1.1.0 is yanked: broken weights" in pinned.stderr
    line = error_line(cvflow(home, hub.url, "pull", f"{NAME}@^2"))
    assert "no version of alice/detector on the hub matches ^2" in line
    assert "no package alice/missing" in error_line(cvflow(home, hub.url, "pull", "alice/missing"))


def test_wrong_bytes_exit_1_and_store_nothing(alice: httpx.Client, proxy: FaultyProxy, home: Path) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    proxy.flip_byte_at = 5000

    line = error_line(cvflow(home, proxy.url, "pull", NAME))

    assert "sha256" in line and "nothing was stored" in line
    assert not (home / "cache" / "blobs" / "sha256" / hashlib.sha256(WEIGHTS).hexdigest()).exists()
    assert list((home / "cache" / "tmp").glob("*.incomplete")) == []
    assert not snapshot(home, "1.0.0").exists()


def test_bad_input_without_a_hub_is_one_clear_line(home: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # no hub listens here
    assert "cannot reach the hub" in error_line(cvflow(home, nowhere, "pull", NAME))
    assert "nothing after '@'" in error_line(cvflow(home, nowhere, "pull", f"{NAME}@"))
    line = error_line(cvflow(home, nowhere, "pull", NAME, "--offline"))
    assert "alice/detector is not in the cache" in line and "online" in line


def test_offline_after_a_pull_needs_no_hub(alice: httpx.Client, hub: LiveHub, home: Path) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    with HubClient(hub.url) as client:
        pull(client, Cache(home / "cache"), NAME)
    nowhere = f"http://127.0.0.1:{free_port()}"  # the hub is out of reach from here on

    offline = cvflow(home, nowhere, "pull", f"{NAME}@^1", "--offline", "--json")

    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["path"] == str(snapshot(home, "1.0.0"))
    assert "in the cache matches ^2" in error_line(cvflow(home, nowhere, "pull", f"{NAME}@^2", "--offline"))


def test_cache_ls_prune_and_verify(alice: httpx.Client, hub: LiveHub, home: Path) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    new_weights = WEIGHTS[::-1]
    publish_ok(alice, NAME, "2.0.0", {**FILES, "weights/model.bin": new_weights})
    cache = Cache(home / "cache")
    with HubClient(hub.url) as client:
        for version in ("1.0.0", "2.0.0"):
            pull(client, cache, f"{NAME}@{version}")

    listed = cvflow(home, hub.url, "cache", "ls")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()[:2]] == [[NAME, "1.0.0"], [NAME, "2.0.0"]]
    rows = json.loads(cvflow(home, hub.url, "cache", "ls", "--json").stdout)
    assert [(r["name"], r["version"], r["path"]) for r in rows] == [
        (NAME, "1.0.0", str(snapshot(home, "1.0.0"))), (NAME, "2.0.0", str(snapshot(home, "2.0.0")))]

    dry = cvflow(home, hub.url, "cache", "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove alice/detector@1.0.0" in dry.stdout and "2.0.0" not in dry.stdout
    assert snapshot(home, "1.0.0").exists()
    pruned = cvflow(home, hub.url, "cache", "prune")
    assert "removed alice/detector@1.0.0" in pruned.stdout
    assert re.search(r"^freed 20\d\.\d KiB$", pruned.stdout, re.M), pruned.stdout  # the old weights, and a bit
    assert [v.version for v in cache.ls()] == ["2.0.0"]

    stored = home / "cache" / "blobs" / "sha256" / hashlib.sha256(new_weights).hexdigest()
    stored.chmod(0o644)
    with stored.open("r+b") as f:
        f.write(b"\0")
    verify = cvflow(home, hub.url, "cache", "verify")
    assert "1 cached file was damaged" in verify.stderr and verify.returncode == 1
    assert not stored.exists()
    again = cvflow(home, hub.url, "pull", f"{NAME}@2.0.0")
    assert again.returncode == 0, again.stderr
    assert (snapshot(home, "2.0.0") / "weights" / "model.bin").read_bytes() == new_weights
    assert cache.verify_all() == []
