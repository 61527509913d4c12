"""requirements/hub.lock, what the production image installs, is in step with the pyproject.toml files.

``scripts/lock`` writes the lock and, on its first line, the digest of what it was made from:
the hub's and the client's dependencies, Python range and build requirements, and
requirements/hub.in. A dependency changed without writing the lock again changes the digest.
Offline: nothing here asks an index. ``python tests/test_image_lock.py --inputs-digest`` prints
the digest (``scripts/lock`` calls it).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "hub.lock"
IN = ROOT / "requirements" / "hub.in"
PYPROJECTS = {"cvflow-hub": ROOT / "pyproject.toml", "cvflow": ROOT / "client" / "pyproject.toml"}
#: One pinned requirement of the lock: name, version, the rest of its line (markers), its hashes.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:[^\\\n]*))((?:\\\n\s+--hash=sha256:[0-9a-f]{64}\s*)*)", re.M)


def inputs() -> dict[str, object]:
    """What the lock is made from, without comments or formatting."""
    found: dict[str, object] = {}
    for name, path in PYPROJECTS.items():
        data = tomllib.loads(path.read_text())
        found[name] = {
            "dependencies": data["project"].get("dependencies", []),
            "requires-python": data["project"].get("requires-python"),
            "build-system": data.get("build-system", {}).get("requires", []),
        }
    found["hub.in"] = [line.strip() for line in IN.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return found


def inputs_digest() -> str:
    return hashlib.sha256(json.dumps(inputs(), sort_keys=True).encode()).hexdigest()


def pins() -> dict[str, tuple[str, str, list[str]]]:
    """Normalised name -> (version, markers, hashes) for every package the lock pins."""
    found = {}
    for name, version, rest, hashes in PIN.findall(LOCK.read_text()):
        found[normalise(name)] = (version, rest.strip(" ;"), re.findall(r"sha256:([0-9a-f]{64})", hashes))
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_was_made_from_the_current_pyproject_files() -> None:
    first = LOCK.read_text().splitlines()[0]
    recorded = first.removeprefix("# inputs-sha256: ")
    assert recorded == inputs_digest(), (
        "pyproject.toml, client/pyproject.toml or requirements/hub.in changed since requirements/hub.lock was"
        " written: run scripts/lock and commit the lock")


def test_every_pin_has_hashes() -> None:
    locked = pins()
    assert len(locked) > 30
    text = LOCK.read_text()
    # Every requirement line is a pin (==), so pip's --require-hashes accepts the file.
    requirement_lines = [line for line in text.splitlines() if line and not line[0].isspace() and not line.startswith("#")]
    assert len(requirement_lines) == len(locked), [line for line in requirement_lines if "==" not in line]
    assert not [name for name, (_, _, hashes) in locked.items() if not hashes]


def unmet(locked: dict[str, tuple[str, str, list[str]]], wanted: list[str]) -> list[str]:
    """The requirements in ``wanted`` that ``locked`` leaves out, or pins outside their range."""
    from packaging.requirements import Requirement

    ours = {normalise(name) for name in PYPROJECTS}
    found = []
    for line in wanted:
        requirement = Requirement(line)
        name = normalise(requirement.name)
        if name in ours:
            continue  # built from this checkout, not locked
        if name not in locked:
            found.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            found.append(f"{requirement}: locked at {locked[name][0]}")
    return found


def test_every_dependency_is_pinned_within_its_range() -> None:
    wanted = [line for line in IN.read_text().splitlines() if line and line[0].isalpha()]
    for path in PYPROJECTS.values():
        data = tomllib.loads(path.read_text())
        wanted += data["project"]["dependencies"] + data["build-system"]["requires"]
    assert len(wanted) > 20
    assert unmet(pins(), wanted) == [], "run scripts/lock"


def test_unmet_reports_a_missing_package_and_a_pin_outside_its_range() -> None:
    locked = {"starlette": ("0.9.0", "", ["0" * 64]), "click": ("8.1.7", "", ["1" * 64])}
    assert unmet(locked, ["starlette>=1.0", "click>=8.1", "cvflow>=0.1,<0.2", "boto3>=1.36"]) == [
        "starlette>=1.0: locked at 0.9.0", "boto3>=1.36: not in the lock"]


def test_the_dockerfile_installs_from_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/hub.lock" in dockerfile
    assert "--require-hashes" in dockerfile
    assert "--no-deps" in dockerfile  # the checkout's two packages add nothing the lock does not pin


if __name__ == "__main__":
    if sys.argv[1:] == ["--inputs-digest"]:
        print(inputs_digest())
    else:
        sys.exit("usage: python tests/test_image_lock.py --inputs-digest")
