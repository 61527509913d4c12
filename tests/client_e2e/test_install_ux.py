"""`cvflow install` as a person sees it: where the lock goes, the line that runs the package next,
and ``-v`` streaming uv's own output. The installed console script in a child process, against a
live hub; Python requirements come from a local wheel folder made here (no index)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client_e2e._install_helpers import build_wheel, publish_ok
from tests.client_e2e._publish_helpers import cli_env, run_script

SOLVER = b"import cvflowtest_ux\n\nclass Detector:\n    pass\n"


@pytest.fixture
def env(hub, alice, tmp_path):  # type: ignore[no-untyped-def]
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "cvflowtest-ux", "1.0", {"cvflowtest_ux/__init__.py": b"OK = True\n"})
    publish_ok(alice, "alice/ux", "1.0.0", files={"solver.py": SOLVER},
               extra='requirements = ["cvflowtest-ux==1.0"]')
    return {**cli_env(tmp_path / "home", hub.url), "UV_FIND_LINKS": str(wheels), "UV_NO_INDEX": "1",
            "UV_CACHE_DIR": str(tmp_path / "uv-cache")}


def _ok(env, *args, cwd):  # type: ignore[no-untyped-def]
    done = run_script(env, *args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done


def test_the_lock_is_written_only_in_a_package_folder_or_where_asked(env, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    done = _ok(env, "install", "alice/ux", cwd=plain)
    assert list(plain.iterdir()) == []  # no cvflow.lock left in a folder that is not a package's
    lines = done.stdout.splitlines()
    assert lines[0].startswith("installed alice/ux@1.0.0  ->  ")
    assert not any(line.startswith("wrote ") for line in lines)
    assert lines[-1] == "run it with: cvflow run alice/ux@1.0.0"
    assert json.loads(_ok(env, "install", "alice/ux", "--json", cwd=plain).stdout)["lock"] is None

    package = tmp_path / "package"
    package.mkdir()
    (package / "cvflow.toml").write_text('[package]\nname = "alice/mine"\nversion = "0.1.0"\n')
    done = _ok(env, "install", "alice/ux", cwd=package)
    assert (package / "cvflow.lock").is_file()
    assert "wrote cvflow.lock" in done.stdout.splitlines()
    assert done.stdout.splitlines()[-1] == "run it with: cvflow run alice/ux@1.0.0"

    asked = tmp_path / "locks" / "ux.lock"
    asked.parent.mkdir()
    _ok(env, "install", "alice/ux", "--lock", str(asked), cwd=plain)
    assert asked.is_file() and list(plain.iterdir()) == []
    # ... and --locked reads it back from there.
    assert json.loads(_ok(env, "install", "--locked", "--lock", str(asked), "--json", cwd=plain).stdout)["locked"]


def test_verbose_streams_the_installers_output_and_quiet_does_not(env, tmp_path):
    done = _ok(env, "install", "alice/ux", cwd=tmp_path)
    assert "cvflowtest-ux" not in done.stderr  # stderr is not a terminal: no steps without -v
    Path(tmp_path / "home" / "venvs").rename(tmp_path / "old-venvs")  # build it again
    (tmp_path / "home" / "state" / "installed.json").unlink()
    done = _ok(env, "install", "-v", "alice/ux", cwd=tmp_path)
    err = done.stderr.splitlines()
    assert err[0] == "resolving alice/ux"
    assert "alice/ux@1.0.0: creating the venv" in err
    assert "alice/ux@1.0.0: installing 1 requirement with uv: cvflowtest-ux==1.0" in err
    assert "   + cvflowtest-ux==1.0" in err  # uv's own line, indented under the step
    assert err[-1].startswith("alice/ux@1.0.0: installed in ")
