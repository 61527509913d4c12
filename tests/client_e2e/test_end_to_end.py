"""The whole life of a package, driven through the installed ``cvflow`` command in child processes
against a live hub over its socket: login, init, publish, search, pull, install, an offline
install with the hub gone, yank, and a refused republish."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client_e2e._install_helpers import python_in
from tests.client_e2e._publish_helpers import cli_env, run_script
from tests.conftest import free_port
from tests.helpers import LiveHub
from tests.runner._images import grey_png

NAME = "alice/brightness"
# Runs in the package's venv: the scaffold's solver, built with its context, on a PNG.
INFER = ("import json, solver; from pathlib import Path; from cvflow.solver import Context, Image; "
         "w = Path(solver.__file__).parent / 'weights' / 'threshold.json'; "
         "c = Context(package='alice/brightness', version='0.1.0', solver='predict', package_dir=w.parent.parent, "
         "weights={{'weights/threshold.json': w}}); "
         "print(json.dumps(solver.Solver(c).infer(Image.from_bytes(bytes.fromhex('{png}')))))")
#: The venv reaches the client's cvflow package and nothing else of the client's environment.
ISOLATED = "import cvflow.solver, importlib.util; print(importlib.util.find_spec('httpx') is None)"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pillow's wheel (the scaffold's one requirement) in a folder, as an offline edge machine keeps them."""
    folder = tmp_path_factory.mktemp("wheels")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest",
                           str(folder), "pillow>=10"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder


def ok(env: Mapping[str, str | None], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cvflow ARGS``, which must succeed without a traceback."""
    done = run_script(env, *args, cwd=cwd)
    assert done.returncode == 0, (args, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def as_json(env: Mapping[str, str | None], *args: str, cwd: Path) -> Any:
    return json.loads(ok(env, *args, "--json", cwd=cwd).stdout)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_publish_search_pull_install_offline_yank_and_refused_republish(hub: LiveHub, tmp_path: Path,
                                                                       wheels: Path) -> None:
    token = hub.create_user("alice")
    home = tmp_path / "home"
    env = cli_env(home, hub.url)  # no CVFLOW_TOKEN: every command uses what `login` saved

    # login --token checks the token with the hub, then keeps it in a file only the user can read.
    assert "logged in as alice" in ok(env, "login", "--token", token, cwd=tmp_path).stdout
    config = home / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert tomllib.loads(config.read_text()) == {"hub": hub.url, "tokens": {hub.url: token}}  # one token per hub
    assert as_json(env, "whoami", cwd=tmp_path)["name"] == "alice"

    pkg = tmp_path / "brightness"
    ok(env, "init", str(pkg), "--name", NAME, "--task", "classification", "--description", "Bright or dark",
       cwd=tmp_path)
    local = digests(pkg)
    assert sorted(local) == ["README.md", "cvflow.toml", "solver.py", "weights/threshold.json"]

    published = as_json(env, "publish", str(pkg), cwd=tmp_path)
    url = f"{hub.url}/api/v1/packages/{NAME}/versions/0.1.0"
    assert (published["package"], published["version"], published["url"]) == (NAME, "0.1.0", url)
    assert {u["path"]: u["sha256"] for u in published["uploaded"]} == local
    on_hub = httpx.get(url).json()
    assert {f["path"]: f["sha256"] for f in on_hub["files"]} == local and on_hub["yanked"] is False

    found = as_json(env, "search", "bright", cwd=tmp_path)
    assert [(r["name"], r["latest_version"]) for r in found["results"]] == [(NAME, "0.1.0")]

    pulled = as_json(env, "pull", f"{NAME}@^0.1", cwd=tmp_path)
    snapshot = home / "cache" / "snapshots" / "alice" / "brightness" / "0.1.0"
    assert Path(pulled["path"]) == snapshot and pulled["version"] == "0.1.0"
    assert {p: d for p, d in digests(snapshot).items() if not p.startswith(".cvflow-")} == local

    lock = tmp_path / "cvflow.lock"
    report = as_json(env, "install", NAME, "--lock-file", str(lock), cwd=tmp_path)
    venv = home / "venvs" / "alice" / "brightness" / "0.1.0"
    assert report["built"] == [f"{NAME}@0.1.0"] and Path(report["packages"][0]["venv"]) == venv
    locked = tomllib.loads(lock.read_text())
    assert [(p["name"], p["version"]) for p in locked["package"]] == [(NAME, "0.1.0")]
    assert {f["path"]: f["sha256"] for f in locked["package"][0]["files"]} == local
    answer = json.loads(python_in(venv, INFER.format(png=grey_png([[250, 240], [230, 255]]).hex())))
    assert answer == {"label": "bright", "mean": 243.75, "threshold": 128}
    assert python_in(venv, ISOLATED) == "True"

    # The hub goes away: online commands fail clearly, an offline install rebuilds from the cache alone.
    dead = cli_env(home, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    dead["PIP_FIND_LINKS"] = str(wheels)  # offline, Python requirements come from a local wheel folder
    down = run_script(dead, "search", "bright", cwd=tmp_path)
    assert down.returncode == 1 and "cannot reach the hub" in down.stderr, down.stderr
    ok(dead, "uninstall", NAME, cwd=tmp_path)
    assert not venv.exists()
    offline = as_json(dead, "install", NAME, "--offline", "--lock-file", str(lock), cwd=tmp_path)
    assert offline["built"] == [f"{NAME}@0.1.0"] and venv.is_dir()
    assert json.loads(python_in(venv, INFER.format(png=grey_png([[3, 9], [0, 12]]).hex())))["label"] == "dark"

    # The hub is back: yank the version, then publishing it again is refused with the hub's reason.
    yanked = as_json(env, "yank", f"{NAME}@0.1.0", "--reason", "threshold too low", cwd=tmp_path)
    assert (yanked["package"], yanked["version"], yanked["yanked"]) == (NAME, "0.1.0", True)
    assert httpx.get(url).json()["yank_reason"] == "threshold too low"

    again = run_script(env, "publish", str(pkg), cwd=tmp_path)
    assert again.returncode == 1, again.stdout
    *progress, error = again.stderr.strip().splitlines()
    assert error == (f"error: {NAME}@0.1.0 is already published; versions are immutable"
                     " — publish a new version [version_exists]")
    assert "0 to upload" in progress[0]  # every blob was already there: nothing was sent before the refusal
    assert httpx.get(f"{hub.url}/api/v1/packages/{NAME}").json()["versions"][0]["version"] == "0.1.0"
