"""A legacy CVPM package's ``before_install`` script, run only when the user agrees.

CVPM let a package name a shell script to run when it is installed. The indexer records it in
the generated ``cvflow.toml`` as ``[tool.cvpm] before_install = "PATH"``; neither the hub nor
the indexer ever runs it. ``install`` hands each installed package to :func:`handle`, which runs
the script only with the user's consent (``--run-before-install``, or yes to the question asked
when stdin is a terminal), and otherwise says that it was not run and how to run it.

The script runs once the package's venv is built and before the install is recorded: with
``bash``, in the package's snapshot directory (whose files are read-only), with the venv's
``bin`` first on ``PATH`` and ``VIRTUAL_ENV`` set, its output shown as it comes. A non-zero exit
is an :class:`InstallError` carrying the end of its output. A script that ran is recorded in the
venv (``cvflow-before-install.json``, with its sha256), so it runs again only for a new venv or a
changed script.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cvflow.errors import ValidationError
from cvflow.install.errors import InstallError
from cvflow.install.records import InstalledPackage
from cvflow.install.venv import venv_python
from cvflow.paths import validate_path
from cvflow.safeparse import loads_toml

__all__ = ["MARKER_NAME", "BeforeInstall", "handle", "script_of"]

#: In the venv: the script that ran there, and its sha256.
MARKER_NAME = "cvflow-before-install.json"
#: Lines of the script's output an InstallError carries.
TAIL_LINES = 30


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BeforeInstall:
    """What ``install`` does with a package's ``before_install`` script.

    ``run``: the user agreed beforehand (``--run-before-install``). ``ask``: when not, asked
    ``ask(package, script)`` for each package that has one (None: nobody to ask, so it is not
    run). ``say``: where the messages and the script's output go (stderr by default).
    """

    run: bool = False
    ask: Callable[[str, str], bool] | None = None
    say: Callable[[str], None] = field(default=_stderr)


def script_of(snapshot: Path) -> str | None:
    """The ``before_install`` script an installed package's ``cvflow.toml`` names, or None."""
    try:
        data = loads_toml((snapshot / "cvflow.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    tool = data.get("tool")
    cvpm = tool.get("cvpm") if isinstance(tool, dict) else None
    script = cvpm.get("before_install") if isinstance(cvpm, dict) else None
    if not isinstance(script, str):
        return None
    try:
        return validate_path(script)
    except ValidationError:
        return None  # the hub and the indexer refuse such paths; nothing outside the package runs


def handle(policy: BeforeInstall, record: InstalledPackage) -> bool:
    """Run ``record``'s ``before_install`` script if it has one that has not run in its venv,
    and the user agrees; True when it ran.

    Raises:
        InstallError: the script is missing from the package, bash is not found, or the script
            exited with a non-zero status (the message ends with its last lines of output).
    """
    snapshot, venv = Path(record.snapshot), Path(record.venv)
    script = script_of(snapshot)
    if script is None:
        return False
    label = f"{record.name}@{record.version}"
    path = snapshot / script
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InstallError(f"{label}: its before_install script {script} cannot be read: {exc}") from exc
    marker = venv / MARKER_NAME
    try:
        if json.loads(marker.read_text(encoding="utf-8")).get("sha256") == digest:
            return False  # it ran in this venv already
    except (OSError, ValueError, AttributeError):
        pass
    if not (policy.run or (policy.ask is not None and policy.ask(label, script))):
        policy.say(f"{label} asks to run {script} before install; it was not run. To run it: "
                   f"cvflow install {label} --run-before-install (read {path} first)")
        return False
    policy.say(f"{label}: running {script} (before_install, as you agreed) in {snapshot}")
    _run(label, script, path, snapshot, venv, policy.say)
    marker.write_text(json.dumps({"script": script, "sha256": digest}), encoding="utf-8")
    return True


def _run(label: str, script: str, path: Path, cwd: Path, venv: Path, say: Callable[[str], None]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        raise InstallError(f"{label}: its before_install script {script} needs bash, which is not on PATH")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(venv_python(venv).parent), env.get("PATH", os.defpath)])
    env["VIRTUAL_ENV"] = str(venv)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen([bash, str(path)], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as child:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            say(f"  | {line}")
    if child.returncode != 0:
        shown = "\n".join(tail)
        raise InstallError(f"{label}: its before_install script {script} exited with status {child.returncode}"
                           + (f"; its last lines:\n{shown}" if shown else ""))
