"""Rules for file paths inside a package, and for a package's file list.

A package path is a relative POSIX path that is safe to create on Linux, macOS and
Windows and cannot escape the package directory: no absolute paths or drive letters,
no backslashes, no control characters, no ``.``/``..``/empty segments, at most 255
bytes (UTF-8) per segment and 1024 bytes in all. No segment may be a name Windows
reserves for a device (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM1``-``COM9``,
``LPT1``-``LPT9``, ``CONIN$``, ``CONOUT$``; in any case, with or without an extension,
so ``nul.txt`` and ``Aux.tar.gz`` too) or end in a dot or a space, which Windows
silently strips. A file list must also be free of
paths that collide on case-insensitive or Unicode-normalising filesystems (macOS,
Windows), and of a path that is both a file and a directory (``a`` and ``a/b``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from cvflow.errors import InvalidPathError, Problem

__all__ = [
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "SHA256_RE",
    "WINDOWS_RESERVED_NAMES",
    "FileEntry",
    "validate_file_list",
    "validate_path",
    "windows_reserved",
]

SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")
MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 1024
_DRIVE_RE = re.compile(r"\A[A-Za-z]:")
#: Device names Windows reserves in every directory, whatever follows them after a dot.
#: The superscript digits count too: Windows treats COM\u00b9 like COM1.
WINDOWS_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{digit}" for port in ("COM", "LPT") for digit in "123456789\u00b9\u00b2\u00b3"}
)


@dataclass(frozen=True)
class FileEntry:
    """One file of a package: where it sits, how big it is and its sha256 (hex)."""

    path: str
    size: int
    sha256: str


def _path_problem(path: object, *, portable: bool = True) -> str | None:
    """Return why ``path`` is unacceptable, or None if it is fine (``portable``: the Windows rule too)."""
    if not isinstance(path, str):
        return f"path must be a string, not {type(path).__name__}"
    if not path:
        return "path is empty"
    bad = next((c for c in path if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        return f"path {path!r} contains control character {bad!r}"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return f"path {path!r} is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"path is {len(encoded)} bytes long; the limit is {MAX_PATH_BYTES}"
    if path.startswith("/"):
        return f"path {path!r} is absolute; give it relative to the package root"
    if _DRIVE_RE.match(path):
        return f"path {path!r} starts with a Windows drive letter"
    if "\\" in path:
        return f"path {path!r} contains a backslash; use '/' to separate directories"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            shown = "an empty" if not segment else f"a {segment!r}"
            return f"path {path!r} has {shown} segment"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"path {path!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes"
        if not portable:
            continue
        if segment[-1] in ". ":
            what = "a dot" if segment[-1] == "." else "a space"
            return f"path {path!r} has a segment ending in {what} ({segment!r}), which Windows strips"
        if windows_reserved(segment):
            return f"path {path!r} uses {segment!r}, a device name Windows reserves"
    return None


def windows_reserved(segment: str) -> bool:
    """True if Windows reads ``segment`` (one path component) as a device, e.g. ``nul.txt``."""
    stem = re.split(r"[.:]", segment, maxsplit=1)[0].rstrip(" ")  # "NUL:" names the device too
    return stem.upper() in WINDOWS_RESERVED_NAMES


def validate_path(path: str) -> str:
    """Return ``path`` unchanged if it is an acceptable file path inside a package.

    Raises:
        InvalidPathError: saying which rule the path breaks.
    """
    problem = _path_problem(path)
    if problem is not None:
        raise InvalidPathError(problem)
    return path


def _fold(path: str) -> str:
    # What macOS/Windows filesystems treat as the same name: case and NFC/NFD.
    return unicodedata.normalize("NFC", path).lower()


def validate_file_list(files: list[dict[str, Any]], *, portable: bool = True) -> list[FileEntry]:
    """Validate a package's file list: ``[{"path": ..., "size": ..., "sha256": ...}]``.

    ``portable=False`` skips the Windows rule (device names, trailing dots and spaces), for
    reading versions published before the rule existed; every path that creates a version
    keeps the default, so no new version breaks it. The other rules always apply.

    Every problem is collected (``field`` like ``"files[3].path"``, codes
    ``invalid_path``, ``invalid_size``, ``invalid_digest``, ``duplicate_path``) so the
    caller can report them all at once.

    Raises:
        InvalidPathError: with every problem found, if there is any.
    """
    if not isinstance(files, list):
        raise InvalidPathError(f"file list must be a list, not {type(files).__name__}")
    problems: list[Problem] = []
    entries: list[FileEntry] = []
    seen: dict[str, tuple[int, str]] = {}  # folded path -> (index, path as given)
    for index, item in enumerate(files):
        where = f"files[{index}]"
        if not isinstance(item, dict):
            problems.append(Problem("invalid_path", where, "entry must be a table/object"))
            continue
        path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
        path_problem = "path is missing" if path is None else _path_problem(path, portable=portable)
        if path_problem:
            problems.append(Problem("invalid_path", f"{where}.path", path_problem))
        if type(size) is not int or size < 0:
            shown = (
                "size is missing" if size is None else f"size must be an integer >= 0, not {size!r}"
            )
            problems.append(Problem("invalid_size", f"{where}.size", shown))
        if not isinstance(digest, str) or not SHA256_RE.match(digest):
            shown = (
                "sha256 is missing"
                if digest is None
                else f"sha256 must be 64 lowercase hex digits, not {digest!r}"
            )
            problems.append(Problem("invalid_digest", f"{where}.sha256", shown))
        if path_problem:
            continue
        assert isinstance(path, str)
        folded = _fold(path)
        if folded in seen:
            first_index, first = seen[folded]
            how = "is listed twice" if first == path else f"collides with {first!r}"
            problems.append(
                Problem(
                    "duplicate_path",
                    f"{where}.path",
                    f"path {path!r} {how} (files[{first_index}]); names must differ"
                    " on case-insensitive filesystems",
                )
            )
            continue
        seen[folded] = (index, path)
        if type(size) is int and size >= 0 and isinstance(digest, str) and SHA256_RE.match(digest):
            entries.append(FileEntry(path, size, digest))
    problems.extend(_file_directory_clashes(seen))
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise InvalidPathError(f"file list has {len(problems)} {noun}", problems)
    return entries


def _file_directory_clashes(seen: dict[str, tuple[int, str]]) -> list[Problem]:
    """Find paths used as a file by one entry and as a directory by another."""
    problems = []
    for folded, (index, path) in seen.items():
        parts = folded.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in seen:
                file_index, file_path = seen[prefix]
                problems.append(
                    Problem(
                        "duplicate_path",
                        f"files[{index}].path",
                        f"path {path!r} puts a directory where files[{file_index}]"
                        f" {file_path!r} is a file",
                    )
                )
                break
    return problems
