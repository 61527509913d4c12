"""A repository shaped as the original CVPM (2019) wrote them is indexed over git, installed and run.

Its cvpm.toml has an upper-case name with ``_``, a ``vendor``, no version (the tag gives it),
slash class paths (one through a hyphenated directory) and a ``before_install`` script; its
Python requirement is in requirements.txt (a wheel built here, so nothing is downloaded); it has
no pretrained.toml. The script must not run without consent, and runs with
``--run-before-install``; then ``cvflow run`` serves both solvers and answers over HTTP.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx

from tests.client_e2e._install_helpers import build_wheel, install_json
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.indexer._helpers import published, register, repository, run_jobs

CVPM = """\
[package]
name = "Text_Tools"
vendor = "cvmodel"
before_install = "scripts/fetch_models.sh"

[[solvers]]
name = "Shout"
class = "text_tools/solver/ShoutSolver"

[[solvers]]
name = "Count_Letters"
class = "letter-count/solver/LetterCounter"
"""

REQUIREMENTS = """\
# the 2019 runtime pinned its helpers here
cvpm-test-wordlib==1.0  # built by this test
-r requirements-dev.txt
"""

SHOUT = b'''\
from wordlib import shout


class ShoutSolver:
    def infer(self, text: str) -> dict:
        return {"text": shout(text)}
'''

# letter-count/ is not a Python identifier: the runner loads solver.py by its path, and the
# file imports counting.py beside it.
COUNTER = b'''\
from counting import letters


class LetterCounter:
    def infer(self, text: str) -> dict:
        return {"letters": letters(text)}
'''

SCRIPT = """\
#!/bin/bash
set -e
echo "fetching models for $(basename "$PWD")"
python -c "import wordlib; print('wordlib', wordlib.__version__)"
echo "prepared by $VIRTUAL_ENV" > "$CVPM_MARKER"
"""


def test_a_2019_cvpm_repository_is_indexed_installed_with_consent_and_run(one_hub, make_repo, git_daemon, tmp_path):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    repo.write({
        "cvpm.toml": CVPM, "requirements.txt": REQUIREMENTS, "README.md": "# Text tools\n\nCVPM-Available\n",
        "text_tools/__init__.py": b"", "text_tools/solver.py": SHOUT,
        "letter-count/solver.py": COUNTER,
        "letter-count/counting.py": b"def letters(text):\n    return sum(c.isalpha() for c in text)\n",
        "scripts/fetch_models.sh": SCRIPT,
    }).commit("a CVPM package, as in 2019")
    commit = repo.tag("v0.3.0", annotated=True)
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)

    doc = repository(alice, doc["id"])
    result = doc["last_result"]
    assert result["errors"] == [], result
    assert doc["package"] == "alice/text-tools"  # Text_Tools by the documented rule; vendor is not a namespace
    assert {"tag": "v0.3.0", "message": "requirements.txt line 3: '-r requirements-dev.txt' left out: pip options"
            " and included files are not read"} in result["notes"]
    assert published(one_hub, "alice/text-tools")["0.3.0"].source_commit == commit  # the tag gave the version
    shown = alice.get("/api/v1/packages/alice/text-tools/versions/0.3.0").json()
    manifest = shown["manifest"]
    assert manifest["description"].startswith("Text_Tools, a CVPM package indexed from git://")
    assert manifest["requirements"] == ["cvpm-test-wordlib==1.0"]
    assert [(s["name"], s["class"]) for s in manifest["solvers"]] == [
        ("shout", "text_tools.solver:ShoutSolver"), ("count_letters", "letter-count/solver.py:LetterCounter")]
    generated = tomllib.loads(
        alice.get("/api/v1/packages/alice/text-tools/versions/0.3.0/files/cvflow.toml").text)
    assert generated["tool"]["cvpm"] == {"name": "Text_Tools", "vendor": "cvmodel",
                                         "before_install": "scripts/fetch_models.sh"}

    # The requirement comes from a local wheel folder, and only from there.
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "cvpm-test-wordlib", "1.0",
                {"wordlib/__init__.py": b"__version__ = '1.0'\n\ndef shout(s):\n    return s.upper() + '!'\n"})
    marker = tmp_path / "prepared"
    env = {**cli_env(tmp_path / "home", one_hub.url), "PIP_FIND_LINKS": str(wheels), "UV_FIND_LINKS": str(wheels),
           "PIP_NO_INDEX": "1", "UV_NO_INDEX": "1", "CVPM_MARKER": str(marker)}
    lock = str(tmp_path / "cvflow.lock")

    # No consent (stdin is not a terminal, no option): installed, the script not run, and the user told.
    result = run_cli(env, "install", "alice/text-tools", "--lock-file", lock, "--json")
    assert result.exit_code == 0, result.output
    [installed] = json.loads(result.stdout)["packages"]
    assert installed["requirements"] == ["cvpm-test-wordlib==1.0"]
    assert ("alice/text-tools@0.3.0 asks to run scripts/fetch_models.sh before install; it was not run."
            " To run it: cvflow install alice/text-tools@0.3.0 --run-before-install") in result.stderr
    assert not marker.exists()

    # With consent it runs, in the snapshot, with the venv's python first on PATH; its output is shown.
    result = run_cli(env, "install", "alice/text-tools", "--lock-file", lock, "--run-before-install")
    assert result.exit_code == 0, result.output
    assert "  | fetching models for 0.3.0" in result.stderr and "  | wordlib 1.0" in result.stderr
    assert marker.read_text() == f"prepared by {installed['venv']}\n"
    again = install_json(env, "alice/text-tools", "--lock-file", lock, "--run-before-install")
    assert again["built"] == []  # installed already, and the script ran in this venv: nothing runs again

    # cvflow run serves both solvers from the installed venv; a real HTTP request each.
    result = run_cli(env, "run", "alice/text-tools", "--name", "text-tools", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert "before install" not in result.stderr  # it ran in this venv: nothing to ask or say
    try:
        assert sorted(record["solvers"]) == ["count_letters", "shout"]
        url = record["url"]
        assert httpx.post(f"{url}/solvers/shout/infer", json={"text": "hello"}, timeout=30).json() == {
            "text": "HELLO!"}
        assert httpx.post(f"{url}/solvers/count_letters/infer", json={"text": "a-b c1"}, timeout=30).json() == {
            "letters": 3}
    finally:
        stopped = run_cli(env, "stop", "text-tools")
    assert stopped.exit_code == 0, stopped.output
    assert Path(installed["venv"]).is_dir()
