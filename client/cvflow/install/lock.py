"""Installing against ``cvflow.lock``: which roots it asks for, whether it is whole, and whether
the cached files are the bytes it names."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvflow.errors import IntegrityError, InvalidRangeError
from cvflow.install.records import parse_spec
from cvflow.lockfile import Lock, LockfileError, read_lock
from cvflow.paths import FileEntry
from cvflow.versions import VersionRange

if TYPE_CHECKING:
    from cvflow.cache import Cache
    from cvflow.install.plan import Planned


def locked_roots(lock: Lock, spec: str | None, lock_path: Path) -> dict[str, str]:
    roots = lock.roots
    if spec is None:
        return roots
    name, text = parse_spec(spec)
    if name not in roots or (text is not None and VersionRange.parse(text) != VersionRange.parse(roots[name])):
        asked = ", ".join(f"{n}@{r}" for n, r in roots.items()) or "nothing"
        raise LockfileError(f"{lock_path} was written for {asked}, not {spec}; run without --locked to update it")
    return {name: roots[name]}


def check_lock_is_whole(lock: Lock, lock_path: Path) -> None:
    """Every dependency of a locked package must be locked too, at a version its range accepts."""
    for p in lock.packages:
        for dep, text in sorted(p.dependencies.items()):
            got = lock.get(dep)
            try:
                ok = got is not None and VersionRange.parse(text).contains(got.version, prereleases=True)
            except InvalidRangeError:
                ok = False
            if not ok:
                has = f"has {dep}@{got.version}" if got is not None else f"has no {dep}"
                raise LockfileError(f"{lock_path} is inconsistent: {p.name}@{p.version} needs {dep} {text},"
                                    f" the lock {has}; run without --locked to update it")


def previous_hub(lock_path: Path) -> str:
    try:
        return read_lock(lock_path).hub
    except LockfileError:
        return ""


def file_entries(doc: Mapping[str, Any]) -> list[FileEntry]:
    return sorted((FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in doc.get("files") or []),
                  key=lambda f: f.path)


def check_against_lock(cache: Cache, planned: Mapping[str, Planned], lock: Lock) -> None:
    """Every file of every locked version must be the lock's bytes, in the listing and on disk."""
    for p in planned.values():
        entry = lock.get(p.name)
        assert entry is not None
        if file_entries(p.doc) != sorted(entry.files, key=lambda f: f.path):
            raise IntegrityError(f"{p.name}@{p.version}: its files differ from those in the lock "
                                 "(was the lock written against another hub?)")
        for f in entry.files:
            path = p.snapshot / f.path
            try:
                if verified_link(cache, path, f.sha256):
                    continue
                digest = sha256_of(path)
            except OSError as exc:
                raise IntegrityError(f"{p.name}@{p.version}: {f.path} is missing from the cache ({exc})") from exc
            if digest != f.sha256:
                raise IntegrityError(f"{p.name}@{p.version}: {f.path} has sha256 {digest[:12]}…, the lock says"
                                     f" {f.sha256[:12]}…; the cached copy is corrupt or the lock was edited")


def verified_link(cache: Cache, path: Path, digest: str) -> bool:
    """True if ``path`` is a hard link to blob ``digest`` that this process hashed and nothing changed since."""
    if not cache.was_verified(digest):
        return False
    try:
        return path.stat().st_ino == cache.blob_path(digest).stat().st_ino
    except OSError:
        return False


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
