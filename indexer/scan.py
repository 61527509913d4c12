"""Reading a fetched repository without checking anything out: tags, trees, manifests.

A tag's package is the tree at ``<commit>:<subdir>``. Its files are chosen by the client's
rules (hidden entries, ``__pycache__``, ``node_modules`` and ``*.pyc`` never go into a package),
symlinks are resolved inside the tree and refused when they point out of it, submodules are
listed for the caller to leave out (or, where allowed, to fetch and add), and the count and
size bounds are checked before a byte of content is read.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cvflow.errors import InvalidVersionError, Problem
from cvflow.package import SKIPPED_DIRS, SKIPPED_SUFFIXES
from cvflow.versions import Version
from indexer.git import GitError, GitOptions, run_git

_MODE_FILE = ("100644", "100755", "100664")
_MODE_LINK = "120000"
_MODE_SUBMODULE = "160000"
_MAX_LINK_HOPS = 8
MAX_LINK_SIZE = 4096
LFS_SIGNATURE = b"version https://git-lfs.github.com/spec/"


class TagProblem(Exception):
    """Why one tag cannot become a version: a stable ``code``, a message, maybe problems."""

    def __init__(self, code: str, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = problems or []

    def as_dict(self, tag: str | None) -> dict[str, object]:
        item: dict[str, object] = {"tag": tag, "code": self.code, "message": self.message}
        if self.problems:
            item["problems"] = [{"code": p.code, "field": p.field, "message": p.message} for p in self.problems]
        return item


@dataclass(frozen=True)
class Tag:
    name: str
    #: The commit the tag points at (peeled through an annotated tag); None if it is no commit.
    commit: str | None


@dataclass(frozen=True)
class TreeFile:
    path: str
    oid: str
    size: int
    #: The repository (bare cache) holding the object: None for the one being indexed,
    #: a submodule's cache for the files of a submodule.
    source: Path | None = None


@dataclass
class PackageTree:
    """The files a tag's package is made of, by path; ``notes`` say what was left out and why."""

    files: dict[str, TreeFile] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Submodules in the package directory: path -> the commit it pins.
    submodules: dict[str, str] = field(default_factory=dict)


def list_tags(cache: Path, options: GitOptions) -> list[Tag]:
    fmt = "%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)"
    out = run_git(["for-each-ref", f"--format={fmt}", "refs/tags/"], cwd=cache, options=options)
    tags = []
    for line in out.decode("utf-8", "replace").splitlines():
        ref, kind, oid, peeled_kind, peeled = (line.split("\0") + [""] * 5)[:5]
        name = ref.removeprefix("refs/tags/")
        if kind == "commit":
            tags.append(Tag(name, oid))
        elif kind == "tag" and peeled_kind == "commit":
            tags.append(Tag(name, peeled))
        else:
            tags.append(Tag(name, None))
    return tags


def tag_version(name: str) -> Version | None:
    """The version a tag names: ``v1.2.0`` or ``1.2.0``, also after a ``prefix/`` (monorepos)."""
    for candidate in (name, name.rsplit("/", 1)[-1]):
        try:
            return Version.parse_tag(candidate)
        except InvalidVersionError:
            continue
    return None


def matches(pattern: str | None, name: str) -> bool:
    return pattern is None or fnmatch.fnmatchcase(name, pattern)


def branches_containing(cache: Path, commit: str, options: GitOptions) -> list[str]:
    out = run_git(["for-each-ref", "--format=%(refname:strip=2)", "--contains", commit, "refs/heads/"],
                  cwd=cache, options=options)
    return out.decode("utf-8", "replace").split()


def submodule_urls(cache: Path, commit: str, options: GitOptions) -> dict[str, str]:
    """``path -> url`` of the submodules that ``.gitmodules`` at ``commit`` declares (paths from the root)."""
    try:
        out = run_git(["config", "--blob", f"{commit}:.gitmodules", "-z", "--get-regexp",
                       r"^submodule\..*\.(path|url)$"], cwd=cache, options=options)
    except GitError as exc:
        if exc.kind != "failed":
            raise
        return {}  # no .gitmodules, or nothing in it
    found: dict[str, dict[str, str]] = {}
    for record in out.decode("utf-8", "replace").split("\0"):
        key, _, value = record.partition("\n")
        if key.count(".") >= 2:
            name, _, attribute = key[len("submodule."):].rpartition(".")
            found.setdefault(name, {})[attribute] = value
    return {v["path"].strip("/"): v["url"] for v in found.values() if "path" in v and "url" in v}


def resolve_submodule_url(base: str, url: str) -> str | None:
    """A submodule URL; a relative one (``../lib.git``) is taken from the superproject's URL,
    as git does. None when it climbs above the host."""
    if not url.startswith(("./", "../")):
        return url
    base, rest = base.rstrip("/"), url
    while rest.startswith(("./", "../")):
        if rest.startswith("./"):
            rest = rest[2:]
            continue
        rest = rest[3:]
        head, _, tail = base.rpartition("/")
        if not tail or head.endswith(":/") or head.endswith(":"):
            return None
        base = head
    return f"{base}/{rest}"


def _skipped(path: str) -> bool:
    parts = path.split("/")
    return any(p.startswith(".") or p in SKIPPED_DIRS for p in parts) or path.endswith(SKIPPED_SUFFIXES)


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_file_size: int


def read_tree(cache: Path, commit: str, subdir: str, options: GitOptions) -> list[tuple[str, str, str, int]]:
    """``(mode, oid, path, size)`` of every entry under ``subdir`` at ``commit``, paths relative to it.

    Raises TagProblem ``missing_subdir`` when the subdirectory is not there.
    """
    treeish = f"{commit}:{subdir}" if subdir else f"{commit}^{{tree}}"
    try:
        kind = run_git(["cat-file", "-t", treeish], cwd=cache, options=options).strip()
    except GitError as exc:
        if exc.kind != "failed":
            raise
        kind = b""
    if kind != b"tree":
        raise TagProblem("missing_subdir", f"the directory {subdir!r} is not in the repository at this tag")
    out = run_git(["ls-tree", "-r", "-l", "-z", treeish], cwd=cache, options=options)
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, _kind, oid, size = meta.decode("ascii").split(maxsplit=3)
        try:
            path = raw_path.decode("utf-8")
        except UnicodeDecodeError:
            raise TagProblem("invalid_path", f"the file name {raw_path!r} is not UTF-8") from None
        entries.append((mode, oid, path, int(size) if size.strip().isdigit() else 0))
    return entries


def plan_tree(entries: list[tuple[str, str, str, int]], limits: Limits,
              read_link: Callable[[str], bytes], *, source: Path | None = None) -> PackageTree:
    """Choose a package's files from a tree listing; resolve symlinks; check the bounds.

    Raises TagProblem ``symlink_out_of_tree``, ``invalid_symlink``, ``too_many_files``,
    ``file_too_large``.
    """
    regular: dict[str, TreeFile] = {}
    links: dict[str, str] = {}
    directories: set[str] = set()
    tree = PackageTree()
    for mode, oid, path, size in entries:
        parent = posixpath.dirname(path)
        while parent:
            directories.add(parent)
            parent = posixpath.dirname(parent)
        if mode == _MODE_LINK:
            links[path] = oid
        elif mode == _MODE_SUBMODULE:
            if not _skipped(path):
                tree.submodules[path] = oid
        elif mode in _MODE_FILE:
            regular[path] = TreeFile(path, oid, size, source)
    resolved: dict[str, TreeFile] = {}
    for path in sorted(p for p in links if not _skipped(p)):
        target = _resolve_link(path, links, regular, directories, read_link)
        if target is None:
            tree.notes.append(f"symlink {path} left out: its target is not in the package")
        elif _skipped(target):
            # A link must not publish what the rules keep out, such as a .env file.
            tree.notes.append(f"symlink {path} left out: it points at the hidden file {target}")
        else:
            resolved[path] = TreeFile(path, regular[target].oid, regular[target].size, source)
    regular.update(resolved)
    for path in sorted(regular):
        if not _skipped(path):
            tree.files[path] = regular[path]
    check_limits(tree, limits)
    return tree


def check_limits(tree: PackageTree, limits: Limits) -> None:
    """Raises TagProblem ``too_many_files`` or ``file_too_large``."""
    if len(tree.files) > limits.max_files:
        raise TagProblem("too_many_files", f"the package has {len(tree.files)} files; the limit is {limits.max_files}")
    for f in tree.files.values():
        if f.size > limits.max_file_size:
            raise TagProblem("file_too_large", f"{f.path} is {f.size} bytes; files may be at most "
                             f"{limits.max_file_size} bytes (reference big weights by URL in the manifest)")


def _resolve_link(path: str, links: dict[str, str], regular: dict[str, TreeFile], directories: set[str],
                  read_link: Callable[[str], bytes]) -> str | None:
    """The regular file a link ends at, or None if it ends nowhere. Raises TagProblem."""
    current = path
    for _ in range(_MAX_LINK_HOPS):
        raw = read_link(links[current])
        try:
            target = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TagProblem("invalid_symlink", f"symlink {path} has a target that is not UTF-8") from None
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            raise TagProblem("symlink_out_of_tree", f"symlink {path} points out of the package, to {target!r}; "
                             "a package is published as the files inside its directory")
        if joined in regular:
            return joined
        if joined in directories or joined == ".":
            raise TagProblem("invalid_symlink", f"symlink {path} points at the directory {joined!r}; "
                             "only links to files are followed")
        if joined not in links:
            return None
        current = joined
    raise TagProblem("invalid_symlink", f"symlink {path} is part of a chain of more than {_MAX_LINK_HOPS} links")
