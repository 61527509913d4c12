"""``cvflow validate`` (the installed command): every problem in one run, and counts in the right number."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CVFLOW = Path(sys.executable).parent / "cvflow"


def cvflow(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_")}
    env["CVFLOW_HOME"] = str(home)
    return subprocess.run([str(CVFLOW), *args], capture_output=True, text=True, timeout=60, env=env)


def test_a_bad_manifest_and_bad_files_are_reported_in_one_run(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "cvflow.toml").write_text(
        '[package]\nname = "alice/pkg"\nversion = "1.0"\ndescription = "x"\ntask = "detection"\n'
        'license = "MIT"\n[[solvers]]\nname = "detect"\nclass = "solver:Detector"\n')
    (package / "solver.py").write_text("class Detector: pass\n")
    (package / "link.py").symlink_to(package / "solver.py")

    result = cvflow(tmp_path / "home", "validate", str(package))

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"error: the package in {package} has 2 problems", result.stderr
    assert "error: package.version: version '1.0' must have three parts MAJOR.MINOR.PATCH" in lines
    assert "error: link.py: symlinks cannot be packaged" in lines
    assert "Traceback" not in result.stderr


def test_one_problem_and_one_of_each_are_counted_in_the_singular(tmp_path: Path) -> None:
    made = cvflow(tmp_path / "home", "init", str(tmp_path / "one"), "--name", "alice/one")
    assert made.returncode == 0, made.stderr

    ok = cvflow(tmp_path / "home", "validate", str(tmp_path / "one"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok: alice/one 0.1.0: 4 files, 1 solver, 1 weight"

    (tmp_path / "one" / "link.py").symlink_to(tmp_path / "one" / "solver.py")
    one = cvflow(tmp_path / "home", "validate", str(tmp_path / "one"))
    assert one.returncode == 1
    assert one.stderr.splitlines()[0] == f"error: the package in {tmp_path / 'one'} has 1 problem", one.stderr
