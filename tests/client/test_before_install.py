"""A CVPM package's before_install script runs only with consent, once per venv, with real bash
(cvflow.install.before). The whole path through the indexer and the CLI is in
tests/indexer/test_cvpm_2019.py."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from cvflow.install.before import MARKER_NAME, BeforeInstall, handle, script_of
from cvflow.install.errors import InstallError
from cvflow.install.records import InstalledPackage

SCRIPT = """\
echo "setting up in $(pwd)"
echo "python is $(command -v python)"
echo "ran with $VIRTUAL_ENV" > "$MARKER"
"""


def installed(tmp_path: Path, script: str = SCRIPT, *, tool: str = '[tool.cvpm]\nbefore_install = "setup.sh"\n'
              ) -> InstalledPackage:
    snapshot, venv = tmp_path / "snapshot", tmp_path / "venv"
    snapshot.mkdir(parents=True)
    (snapshot / "cvflow.toml").write_text('[package]\nname = "alice/x"\nversion = "1.0.0"\n\n' + tool)
    (snapshot / "setup.sh").write_text(script)
    (snapshot / "setup.sh").chmod(0o444)  # as in the cache: read-only, not executable
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return InstalledPackage(name="alice/x", version="1.0.0", venv=str(venv), snapshot=str(snapshot))


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(path))
    return path


def test_without_consent_it_is_not_run_and_the_user_is_told_how_to_run_it(tmp_path, marker):
    record = installed(tmp_path)
    said: list[str] = []
    asked: list[tuple[str, str]] = []

    def no(package: str, script: str) -> bool:
        asked.append((package, script))
        return False

    assert handle(BeforeInstall(say=said.append), record) is False  # nobody to ask: not run
    assert handle(BeforeInstall(ask=no, say=said.append), record) is False  # asked, and said no
    assert asked == [("alice/x@1.0.0", "setup.sh")]
    assert not marker.exists() and not (Path(record.venv) / MARKER_NAME).exists()
    assert said == [f"alice/x@1.0.0 asks to run setup.sh before install; it was not run. To run it: cvflow install"
                    f" alice/x@1.0.0 --run-before-install (read {record.snapshot}/setup.sh first)"] * 2


@pytest.mark.parametrize("policy", [BeforeInstall(run=True), BeforeInstall(ask=lambda package, script: True)])
def test_with_consent_it_runs_once_in_the_snapshot_with_the_venv_first_on_path(tmp_path, marker, policy):
    record = installed(tmp_path)
    said: list[str] = []
    policy = BeforeInstall(run=policy.run, ask=policy.ask, say=said.append)
    assert handle(policy, record) is True
    assert marker.read_text() == f"ran with {record.venv}\n"
    assert said == [f"alice/x@1.0.0: running setup.sh (before_install, as you agreed) in {record.snapshot}",
                    f"  | setting up in {record.snapshot}", f"  | python is {record.venv}/bin/python"]
    assert json.loads((Path(record.venv) / MARKER_NAME).read_text())["script"] == "setup.sh"
    marker.unlink()
    assert handle(policy, record) is False and not marker.exists()  # it ran in this venv already


def test_a_failing_script_is_an_install_error_with_its_last_lines(tmp_path, marker):
    record = installed(tmp_path, "for i in $(seq 1 40); do echo line $i; done\necho broken >&2\nexit 3\n")
    with pytest.raises(InstallError) as info:
        handle(BeforeInstall(run=True, say=lambda line: None), record)
    message = str(info.value)
    assert message.startswith("alice/x@1.0.0: its before_install script setup.sh exited with status 3; its last lines:")
    assert message.endswith("line 40\nbroken") and "line 11\n" not in message and "line 12\n" in message
    assert not (Path(record.venv) / MARKER_NAME).exists()  # it did not succeed: asked again next time


def test_packages_without_a_script_or_with_a_path_outside_are_left_alone(tmp_path, marker):
    assert handle(BeforeInstall(run=True), installed(tmp_path / "a", tool="")) is False
    for bad in ("../setup.sh", "/bin/true"):
        record = installed(tmp_path / bad.replace("/", "_"), tool=f'[tool.cvpm]\nbefore_install = "{bad}"\n')
        assert script_of(Path(record.snapshot)) is None
        assert handle(BeforeInstall(run=True), record) is False
    assert not marker.exists()


CONSENT = """\
from cvflow.commands.install import before_install_consent

policy = before_install_consent(False)
print("asks" if policy.ask is not None else "does not ask", policy.run)
if policy.ask is not None:
    print("answer", policy.ask("alice/x@1.0.0", "setup.sh"))
"""


@pytest.mark.parametrize(("typed", "answer"), [("y\n", "True"), ("n\n", "False"), ("\n", "False")])
def test_at_a_terminal_the_cli_asks_and_no_is_the_default(typed, answer):
    main, child = pty.openpty()  # stdin a real terminal; stdout and stderr pipes
    try:
        os.write(main, typed.encode())
        done = subprocess.run([sys.executable, "-c", CONSENT], stdin=child, capture_output=True, text=True, timeout=60)
    finally:
        os.close(main)
        os.close(child)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["asks False", f"answer {answer}"]
    assert done.stderr.startswith("alice/x@1.0.0 asks to run setup.sh, a shell script from the package, before"
                                  " install. Run it? [y/N]")
    piped = subprocess.run([sys.executable, "-c", CONSENT], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
    assert piped.stdout.splitlines() == ["does not ask False"]  # no terminal: nobody to ask


BARS = """\
import os
from rich.console import Console
from cvflow.commands.install import before_install_consent
from cvflow.progress import transfer_bar

with transfer_bar(console=Console(stderr=True, force_terminal=True)) as bar:
    assert getattr(bar, "_progress", None) is not None  # bars are drawn
    answer = before_install_consent(False, bar).ask("alice/x@1.0.0", "setup.sh")
    os.write(1, f"answer {answer}\\n".encode())  # past rich, which holds sys.stdout while bars are drawn
"""


def test_the_question_is_asked_with_the_progress_bars_paused():
    main, child = pty.openpty()
    try:
        os.write(main, b"y\n")
        done = subprocess.run([sys.executable, "-c", BARS], stdin=child, capture_output=True, text=True, timeout=60)
    finally:
        os.close(main)
        os.close(child)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["answer True"]
    assert "asks to run setup.sh, a shell script from the package, before install. Run it? [y/N]" in done.stderr
