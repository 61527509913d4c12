"""A package directory on disk: its files, with sizes and sha256 digests."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cvflow.errors import Problem
from cvflow.paths import FileEntry

# Never part of a package: hidden entries (VCS metadata, .env files with secrets, editor and
# tool caches, local venvs), Python caches and node_modules.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS


def scan_package_files(root: Path) -> tuple[list[FileEntry], list[Problem]]:
    """List the files under ``root`` with their sizes and digests, and problems for symlinks.

    Symlinks are reported rather than followed: a package is published as plain files,
    and a link could point outside the package directory.
    """
    found: list[tuple[str, Path]] = []
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames.sort()
        for d in list(dirnames):
            if _skipped(d):
                dirnames.remove(d)
            elif (here / d).is_symlink():
                dirnames.remove(d)
                filenames.append(d)  # reported as a symlink below
        for name in sorted(filenames):
            full = here / name
            rel = full.relative_to(root).as_posix()
            if name.endswith(SKIPPED_SUFFIXES) or name.startswith("."):
                continue
            if full.is_symlink():
                problems.append(Problem("invalid_path", rel, "symlinks cannot be packaged"))
                continue
            found.append((rel, full))
    # hashlib releases the GIL: files hash side by side, one per CPU.
    with ThreadPoolExecutor(max_workers=max(1, min(len(found), os.cpu_count() or 1, 8))) as pool:
        entries = list(pool.map(_entry, found))
    return entries, problems


def _entry(found: tuple[str, Path]) -> FileEntry:
    rel, full = found
    with full.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return FileEntry(rel, full.stat().st_size, digest)
