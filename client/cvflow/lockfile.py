"""``cvflow.lock``: the exact versions and file digests an install used.

A TOML file, written in a fixed order so that the same resolution gives the same bytes::

    version = 1                       # the lock format; an unknown one is refused
    hub = "https://hub.example.org"

    [[package]]                       # sorted by name
    name = "alice/app"
    version = "1.2.0"
    requested = "^1.0"                # only on the packages that were asked for

    [package.dependencies]            # as published (ranges); left out when there are none
    "alice/base" = "^1.0"

    [[package.files]]                 # sorted by path
    path = "solver.py"
    size = 812
    sha256 = "…"

``cvflow install --locked`` installs exactly these versions and refuses files whose
digests differ from the lock's.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from cvflow.errors import InvalidVersionError, ValidationError
from cvflow.paths import FileEntry
from cvflow.safeparse import TooDeepError, loads_toml
from cvflow.versions import Version

__all__ = ["LOCK_FORMAT", "Lock", "LockedPackage", "LockfileError", "read_lock", "write_lock"]

LOCK_FORMAT = 1


class LockfileError(ValidationError):
    """A lock file is missing, unreadable, of an unknown format, or malformed."""

    code = "invalid_lockfile"


@dataclass(frozen=True)
class LockedPackage:
    """One package version in a lock."""

    name: str
    version: Version
    files: tuple[FileEntry, ...] = ()
    dependencies: Mapping[str, str] = field(default_factory=dict)
    requested: str | None = None  # the range the user asked for; None for a dependency

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": str(self.version)}
        if self.requested is not None:
            out["requested"] = self.requested
        if self.dependencies:
            out["dependencies"] = dict(sorted(self.dependencies.items()))
        out["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256}
                        for f in sorted(self.files, key=lambda f: f.path)]
        return out


@dataclass(frozen=True)
class Lock:
    """A whole lock: the hub it came from and its packages, sorted by name."""

    hub: str
    packages: tuple[LockedPackage, ...]
    version: int = LOCK_FORMAT

    @property
    def roots(self) -> dict[str, str]:
        """What the user asked for: ``{name: range}``."""
        return {p.name: p.requested for p in self.packages if p.requested is not None}

    def get(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "hub": self.hub,
                "package": [p.to_dict() for p in sorted(self.packages, key=lambda p: p.name)]}


def make_lock(hub: str, packages: Iterable[LockedPackage]) -> Lock:
    return Lock(hub=hub.rstrip("/"), packages=tuple(sorted(packages, key=lambda p: p.name)))


def write_lock(path: Path, lock: Lock) -> Path:
    """Write ``lock`` to ``path`` atomically (a reader sees the old or the new file, never half)."""
    data = tomli_w.dumps(lock.to_dict())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_lock(path: Path) -> Lock:
    """Read a lock file.

    Raises:
        LockfileError: the file is missing or unreadable, its format version is not one this
            cvflow knows, or an entry is malformed (every problem is listed).
    """
    path = Path(path)
    try:
        data = loads_toml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockfileError(f"no lock file at {path}; run `cvflow install` without --locked to create one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockfileError(f"cannot read {path}: {exc}") from exc
    except TooDeepError as exc:
        raise LockfileError(f"{path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise LockfileError(f"{path} is not valid TOML: {exc}") from exc
    fmt = data.get("version")
    if fmt != LOCK_FORMAT:
        shown = "has no format version" if fmt is None else f"has format version {fmt!r}"
        raise LockfileError(f"{path} {shown}; this cvflow reads lock format {LOCK_FORMAT} only"
                            " (upgrade cvflow, or delete the lock and install again)")
    problems: list[str] = []
    hub = data.get("hub")
    if not isinstance(hub, str) or not hub:
        problems.append("'hub' must be the hub's URL")
    entries = data.get("package", [])
    if not isinstance(entries, list):
        problems.append("'package' must be an array of tables ([[package]])")
        entries = []
    packages = []
    for i, entry in enumerate(entries):
        try:
            packages.append(_package(entry))
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"package[{i}]: {exc}")
    if problems:
        raise LockfileError(f"{path} is malformed: {'; '.join(problems)}")
    return make_lock(str(hub), packages)


def _package(entry: Any) -> LockedPackage:
    if not isinstance(entry, dict):
        raise TypeError("must be a table")
    name = entry.get("name")
    if not isinstance(name, str) or "/" not in name:
        raise ValueError(f"name {name!r} is not 'namespace/name'")
    try:
        version = Version.parse(str(entry.get("version")))
    except InvalidVersionError as exc:
        raise ValueError(f"{name}: {exc.message}") from None
    deps = entry.get("dependencies", {})
    if not isinstance(deps, dict) or not all(isinstance(v, str) for v in deps.values()):
        raise ValueError(f"{name}: dependencies must map names to ranges")
    requested = entry.get("requested")
    if requested is not None and not isinstance(requested, str):
        raise ValueError(f"{name}: requested must be a range")
    files = []
    for f in entry.get("files", []):
        if not (isinstance(f, dict) and isinstance(f.get("path"), str) and type(f.get("size")) is int
                and isinstance(f.get("sha256"), str) and len(f["sha256"]) == 64):
            raise ValueError(f"{name}: each file needs path, size and a sha256 of 64 hex digits")
        files.append(FileEntry(f["path"], f["size"], f["sha256"]))
    return LockedPackage(name, version, tuple(sorted(files, key=lambda f: f.path)), dict(sorted(deps.items())),
                         requested)
