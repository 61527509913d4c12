"""Helpers for the publishing and account CLI tests: run ``cvflow`` against a live hub.

Plain functions rather than fixtures, so that the pull/install tests in this folder can
define their own fixtures without clashing names.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner, Result
from sqlmodel import select

from cvflow.cli import main
from hub.db import session_scope
from hub.models import Upload
from tests.helpers import LiveHub

CVFLOW = Path(sys.executable).parent / "cvflow"
#: Variables of this machine that must not reach the command under test.
_SCRUBBED = ("CVFLOW_HOME", "CVFLOW_HUB", "CVFLOW_TOKEN", "XDG_DATA_HOME")


def cli_env(home: Path, hub_url: str | None, token: str | None = None) -> dict[str, str | None]:
    """Environment for ``cvflow``: its own home, and hub/token unless None (then unset)."""
    return {"CVFLOW_HOME": str(home), "CVFLOW_HUB": hub_url, "CVFLOW_TOKEN": token, "XDG_DATA_HOME": None}


def run_cli(env: Mapping[str, str | None], *args: str, input: str | None = None) -> Result:
    """``cvflow ARGS`` in this process (CliRunner); stdout and stderr kept apart."""
    return CliRunner().invoke(main, list(args), env=dict(env), input=input, catch_exceptions=False)


def run_script(env: Mapping[str, str | None], *args: str, cwd: Path | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed ``cvflow`` console script in a child process."""
    child = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    child.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([str(CVFLOW), *args], capture_output=True, text=True, timeout=timeout, env=child, cwd=cwd)


def blob_digests(hub: LiveHub) -> set[str]:
    """Every blob in the hub's store."""
    return {b.digest for b in hub.context.store.iter_blobs()}


def upload_ids(hub: LiveHub) -> set[str]:
    """The hub's open upload sessions."""
    with session_scope(hub.context.engine) as session:
        return set(session.exec(select(Upload.id)).all())


def write_package(root: Path, name: str, version: str = "1.0.0", *, files: Mapping[str, bytes] | None = None,
                  weights: tuple[str, ...] = (), extra: str = "", dependencies: Mapping[str, str] | None = None) -> Path:
    """A valid package directory with a ``predict`` solver; ``files`` are added as given,
    ``extra`` lines go into ``[package]``."""
    lines = ["[package]", f'name = "{name}"', f'version = "{version}"', 'description = "A test package"',
             'task = "detection"', 'tags = ["test"]', extra, "", "[[solvers]]", 'name = "predict"',
             'class = "solver:Solver"']
    for path in weights:
        lines += ["", "[[weights]]", f'path = "{path}"']
    if dependencies:
        lines += ["", "[dependencies]", *(f'"{k}" = "{v}"' for k, v in dependencies.items())]
    contents = {"cvflow.toml": ("\n".join(lines) + "\n").encode(), "solver.py": b"class Solver: ...\n",
                **(files or {})}
    for rel, data in contents.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root
