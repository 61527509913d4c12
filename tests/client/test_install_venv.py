"""A package venv, built for real (``python -m venv``, or uv where it is on PATH): its ``sys.path``
holds the package's snapshots, and the import hook makes this client's ``cvflow`` importable there
and nothing else of the client (not its dependencies)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cvflow
from cvflow.install import build_venv, venv_python
from cvflow.install.hook import LINK_NAME
from cvflow.install.venv import PTH_NAME, read_pth, site_packages

PROBE = """
import importlib.util, json, sys
import cvflow, cvflow.solver
print(json.dumps({"cvflow": cvflow.__file__, "path": sys.path,
                  "missing": [m for m in ("httpx", "click", "rich", "resolvelib") if importlib.util.find_spec(m) is None]}))
"""


def test_a_package_venv_sees_its_snapshots_and_this_clients_cvflow_only(tmp_path: Path) -> None:
    snapshots = [tmp_path / "cache" / "alice" / "detector", tmp_path / "cache" / "alice" / "utils"]
    for s in snapshots:
        s.mkdir(parents=True)
    (snapshots[1] / "alice_utils.py").write_text("VALUE = 42\n")
    target = tmp_path / "venvs" / "alice" / "detector" / "1.0.0"
    build_venv(target, [str(s) for s in snapshots], [], offline=True, label="alice/detector@1.0.0")

    sp = site_packages(target)
    assert sorted(p.name for p in sp.glob("_cvflow*")) == sorted([PTH_NAME, f"{LINK_NAME}.pth", f"{LINK_NAME}.py"])
    assert read_pth(target) == [str(s) for s in snapshots]
    assert not list(target.parent.glob(".*.tmp"))  # built aside, then renamed into place

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # as a user runs it
    done = subprocess.run([str(venv_python(target)), "-c", PROBE], capture_output=True, text=True, env=env,
                          check=True)
    seen = json.loads(done.stdout)
    assert Path(seen["cvflow"]).resolve() == Path(cvflow.__file__).resolve()
    assert [p for p in seen["path"] if p in map(str, snapshots)] == [str(s) for s in snapshots]
    assert seen["missing"] == ["httpx", "click", "rich", "resolvelib"]
    value = subprocess.run([str(venv_python(target)), "-c", "import alice_utils; print(alice_utils.VALUE)"],
                           capture_output=True, text=True, env=env, check=True)
    assert value.stdout.strip() == "42"


def test_a_venv_with_the_same_requirements_shares_the_installed_files_by_hard_links(tmp_path: Path) -> None:
    """The second venv of the same pins is made from the first one's files (no second install): its
    installed modules are the same inodes, it imports them, and its own sys.path is its own."""
    venvs = tmp_path / "venvs"
    first, second = venvs / "alice" / "a" / "1.0.0", venvs / "bob" / "b" / "2.0.0"
    snap_a, snap_b = tmp_path / "snap-a", tmp_path / "snap-b"
    snap_a.mkdir()
    snap_b.mkdir()
    build_venv(first, [str(snap_a)], ["six==1.17.0"], offline=False, label="alice/a@1.0.0", share_from=venvs)
    build_venv(second, [str(snap_b)], ["six==1.17.0"], offline=True, label="bob/b@2.0.0", share_from=venvs)
    # offline=True with nothing in a wheel folder would fail a real install: the second one was shared
    a, b = site_packages(first) / "six.py", site_packages(second) / "six.py"
    assert a.stat().st_ino == b.stat().st_ino
    assert read_pth(second) == [str(snap_b)] and read_pth(first) == [str(snap_a)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(venv_python(second)), "-c", "import six, sys; print(six.__file__); print(sys.prefix)"],
                          capture_output=True, text=True, env=env, check=True)
    file, prefix = done.stdout.split()
    assert Path(file).resolve().is_relative_to(second.resolve()) and Path(prefix).resolve() == second.resolve()

    third = venvs / "carol" / "c" / "1.0.0"  # other pins: a fresh install, nothing shared
    build_venv(third, [], ["six==1.16.0"], offline=False, label="carol/c@1.0.0", share_from=venvs)
    assert (site_packages(third) / "six.py").stat().st_ino != a.stat().st_ino
