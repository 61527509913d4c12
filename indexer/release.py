"""One release tag into one version: read its tree and manifest, store its files, publish.

The package tree at ``<commit>:<subdir>`` is read straight from git objects; its manifest
(``cvflow.toml``, or the legacy ``cvpm.toml`` + ``pretrained.toml``) is parsed and checked
against the tag; the files are stored as blobs, URL weights downloaded and verified, and the
version is published with its source commit in one transaction together with the tag's
record. Anything wrong raises :class:`~indexer.scan.TagProblem` and nothing of the tag is
published; blobs already stored for it are unreferenced and left to ``cvflow-hub gc``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import select

from cvflow.errors import ManifestError, Problem, ValidationError
from cvflow.manifest import (
    LEGACY_MANIFEST_FILENAME,
    LEGACY_WEIGHTS_FILENAME,
    MANIFEST_FILENAME,
    Manifest,
    parse_cvpm,
    parse_manifest,
)
from cvflow.manifest.cvpm import REQUIREMENTS_FILENAME, legacy_tool_table, read_requirements, tool_toml
from cvflow.paths import validate_file_list
from cvflow.safeparse import loads_toml
from cvflow.versions import Version
from hub.db import session_scope
from hub.errors import HubError
from hub.models import Package, PackageRole, Repository, RepositoryTag, User
from hub.security import Scopes
from hub.services import packages
from hub.services.accounts import Principal
from hub.services.blobs import user_holder
from hub.services.urls import UrlRefused, check_repository_url
from indexer import fetch as fetching
from indexer import scan
from indexer.git import CatFile, GitError, run_git
from indexer.scan import LFS_SIGNATURE, MAX_LINK_SIZE, PackageTree, Tag, TagProblem
from indexer.weights import fetch_weight

if TYPE_CHECKING:
    from indexer.service import Indexer

#: Files up to this size are read whole (and checked for Git LFS pointers); larger ones stream.
_SMALL = 1 << 20


@dataclass
class RepoFacts:
    """The repository row's facts a run needs, read once."""

    id: int
    url: str
    display_url: str
    subdir: str
    branch_pattern: str | None
    tag_pattern: str | None
    private: bool
    namespace: str
    namespace_kind: str
    registered_by: int
    package: str | None


class ReleaseReader:
    """Reads and publishes the tags of one fetched repository; keeps ``git cat-file`` open per repository."""

    def __init__(self, indexer: Indexer, repo: RepoFacts, cache: Path) -> None:
        self.indexer = indexer
        self.settings = indexer.settings
        self.repo = repo
        self.cache = cache
        #: The publisher is the repository's registrant: the files the indexer reads from git
        #: (and weights it downloads) are stored as uploaded by them, and only blobs they may
        #: reference go into a version (docs/indexer.md).
        self.holder = user_holder(repo.registered_by)
        self._cats: dict[Path, CatFile] = {}
        #: git blob id -> (sha256, size) of blobs stored in this run: shared files are read once.
        self.stored: dict[str, tuple[str, int]] = {}
        #: Submodule caches fetched in this run.
        self.fetched: set[Path] = set()
        self.notes: list[str] = []
        #: The version the tag being read gives (``index_tag``).
        self.tag_version: Version | None = None

    def cat_for(self, source: Path | None) -> CatFile:
        repo = source or self.cache
        if repo not in self._cats:
            self._cats[repo] = CatFile(repo, self.indexer.git)
        return self._cats[repo]

    @property
    def cat(self) -> CatFile:
        return self.cat_for(None)

    def reset(self) -> None:
        """After a failure mid-object the cat-file stream is out of step: start a new one."""
        self.close()
        self.notes = []

    def close(self) -> None:
        for cat in self._cats.values():
            cat.close()
        self._cats.clear()

    def index_tag(self, tag: Tag, version: Version) -> dict[str, Any]:
        assert tag.commit is not None
        s = self.settings
        entries = scan.read_tree(self.cache, tag.commit, self.repo.subdir, self.indexer.git)
        tree = scan.plan_tree(entries, scan.Limits(s.indexer_max_files, s.indexer_max_file_size),
                              lambda oid: self.cat.read(oid, limit=MAX_LINK_SIZE))
        self.notes.extend(tree.notes)
        self._submodules(tree, tag.commit)
        self.tag_version = version  # a legacy CVPM manifest has no version of its own: the tag gives it
        manifest, manifest_text, legacy = self._manifest(tree, tag)
        if str(manifest.version) != str(version):
            raise TagProblem("version_mismatch", f"the manifest says version {manifest.version}, but the tag "
                             f"{tag.name} says {version}; they must agree")
        name = manifest.name
        if name.namespace != self.repo.namespace:
            raise TagProblem("name_mismatch", f"the manifest names {name}, but this repository publishes to the "
                             f"namespace {self.repo.namespace!r}")
        if self.repo.package is not None and str(name) != self.repo.package:
            raise TagProblem("name_mismatch", f"the manifest names {name}, but this repository publishes "
                             f"{self.repo.package}")
        placeholder = "0" * 64
        paths = [*tree.files, *([MANIFEST_FILENAME] if legacy else [])]
        try:
            validate_file_list([{"path": p, "size": 0, "sha256": placeholder} for p in paths])
        except ValidationError as exc:
            raise TagProblem("invalid_path", exc.message, exc.problems) from exc

        files: dict[str, tuple[str, int]] = {}
        for weight in manifest.weights:
            if weight.url is not None and weight.path not in tree.files:
                files[weight.path] = fetch_weight(self.indexer.uploads, s, self.indexer.http, weight,
                                                  holder=self.holder)
        weight_paths = {w.path for w in manifest.weights}
        for path, f in sorted(tree.files.items(), key=lambda item: item[1].size):
            stored = self._store(f)
            if stored is None:
                if path in weight_paths:
                    raise TagProblem("lfs_pointer", f"weight {path} is a Git LFS pointer; LFS files are not fetched. "
                                     "Give the weight a url, sha256 and size in the manifest instead")
                self.notes.append(f"{path} left out: it is a Git LFS pointer, and LFS files are not fetched")
                continue
            files[path] = stored
        if legacy:
            manifest_text = self._legacy_manifest(manifest, files, legacy_tool_table(loads_toml(manifest_text)), tree)
            data = manifest_text.encode()
            files[MANIFEST_FILENAME] = (self.indexer.uploads.put_small(data, grant_to=self.holder), len(data))
        listing = [{"path": p, "size": size, "sha256": digest} for p, (digest, size) in sorted(files.items())]
        return self._publish(tag, manifest, manifest_text, listing)

    # --- submodules

    def _submodules(self, tree: PackageTree, commit: str) -> None:
        """Leave submodules out, or (where allowed) fetch each and add its files under its path."""
        s = self.settings
        if not tree.submodules:
            return
        if not s.indexer_allow_submodules:
            self.notes.extend(f"submodule {path} left out: submodules are not fetched" for path in tree.submodules)
            return
        urls = scan.submodule_urls(self.cache, commit, self.indexer.git)
        prefix = f"{self.repo.subdir}/" if self.repo.subdir else ""
        limits = scan.Limits(s.indexer_max_files, s.indexer_max_file_size)
        for path, pinned in sorted(tree.submodules.items()):
            declared = urls.get(prefix + path)
            url = scan.resolve_submodule_url(self.repo.url, declared) if declared else None
            if url is None:
                raise TagProblem("submodule_failed", f"submodule {path} has no usable URL in .gitmodules")
            try:
                checked = check_repository_url(url, allow_file=s.indexer_allow_file_urls,
                                               allow_private=s.indexer_allow_private_addresses)
            except UrlRefused as exc:
                raise TagProblem("submodule_refused", f"submodule {path}: {exc.message}") from exc
            cache = fetching.cache_path(s.data_dir, self.repo.id, f"submodule {checked.display}")
            with fetching.cache_lock(cache):
                if cache not in self.fetched:
                    try:
                        fetching.fetch(checked.url, cache, options=self.indexer.git, max_size=s.indexer_max_repo_size)
                    except GitError as exc:
                        raise TagProblem("submodule_failed", f"submodule {path}: {git_problem(exc, fetching=True)}"
                                         ) from exc
                    self.fetched.add(cache)
                try:
                    kind = run_git(["cat-file", "-t", pinned], cwd=cache, options=self.indexer.git).strip()
                except GitError:
                    kind = b""
                if kind != b"commit":
                    raise TagProblem("submodule_failed", f"submodule {path}: its commit {pinned} is not in "
                                     f"{checked.display}")
                entries = scan.read_tree(cache, pinned, "", self.indexer.git)
            def read_link(oid: str, c: Path = cache) -> bytes:
                return self.cat_for(c).read(oid, limit=MAX_LINK_SIZE)

            sub = scan.plan_tree(entries, limits, read_link, source=cache)
            self.notes.extend(f"submodule {path}: {note}" for note in sub.notes)
            self.notes.extend(f"submodule {path}/{p} left out: nested submodules are not fetched"
                              for p in sub.submodules)
            for rel, f in sub.files.items():
                tree.files[f"{path}/{rel}"] = dataclasses.replace(f, path=f"{path}/{rel}")
            self.notes.append(f"submodule {path} included from {checked.display} at {pinned[:12]}")
        scan.check_limits(tree, limits)

    # --- manifest

    def _text(self, tree: PackageTree, path: str) -> str:
        f = tree.files[path]
        if f.size > self.settings.max_manifest_size:
            raise TagProblem("invalid_manifest", f"{path} is {f.size} bytes; manifests may be at most "
                             f"{self.settings.max_manifest_size}")
        try:
            return self.cat.read(f.oid, limit=self.settings.max_manifest_size).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TagProblem("invalid_manifest", f"{path} is not UTF-8 text") from exc

    def _manifest(self, tree: PackageTree, tag: Tag) -> tuple[Manifest, str, bool]:
        where = f"{self.repo.subdir}/" if self.repo.subdir else "the repository root"
        try:
            if MANIFEST_FILENAME in tree.files:
                text = self._text(tree, MANIFEST_FILENAME)
                return parse_manifest(text), text, False
            if LEGACY_MANIFEST_FILENAME in tree.files:
                cvpm = self._text(tree, LEGACY_MANIFEST_FILENAME)
                pretrained = (self._text(tree, LEGACY_WEIGHTS_FILENAME)
                              if LEGACY_WEIGHTS_FILENAME in tree.files else None)
                requirements: list[str] = []
                if REQUIREMENTS_FILENAME in tree.files:
                    requirements, notes = read_requirements(self._text(tree, REQUIREMENTS_FILENAME))
                    self.notes.extend(notes)
                version = None if self.tag_version is None else str(self.tag_version)
                manifest = parse_cvpm(cvpm, pretrained, namespace=self.repo.namespace, version=version,
                                      requirements=requirements, source=self.repo.display_url)
                return manifest, cvpm, True
        except ManifestError as exc:
            raise TagProblem("invalid_manifest", f"{exc.message} at tag {tag.name}", exc.problems) from exc
        raise TagProblem("missing_manifest", f"no {MANIFEST_FILENAME} (or legacy {LEGACY_MANIFEST_FILENAME}) in "
                         f"{where} at tag {tag.name}")

    def _legacy_manifest(self, manifest: Manifest, files: dict[str, tuple[str, int]], tool: dict[str, str],
                         tree: PackageTree) -> str:
        """The ``cvflow.toml`` the hub takes for a CVPM package: its URL weights pinned to the
        digest and size downloaded now, a description if it had none, and ``[tool.cvpm]`` with
        what ``cvpm.toml`` says that has no field here (original name, vendor, before_install)."""
        script = tool.get("before_install")
        if script is not None and script not in tree.files:
            raise TagProblem("invalid_manifest", f"before_install names {script}, which is not in the package")
        weights = [dataclasses.replace(w, sha256=files[w.path][0], size=files[w.path][1])
                   if w.path in files and w.url is not None else w for w in manifest.weights]
        description = manifest.description or f"Indexed from {self.repo.display_url}"[:512]
        text = tool_toml(dataclasses.replace(manifest, weights=weights, description=description).to_toml(), tool)
        try:
            parse_manifest(text)
        except ManifestError as exc:
            raise TagProblem("invalid_manifest", f"the legacy manifest cannot be expressed as {MANIFEST_FILENAME}: "
                             f"{exc.message}", exc.problems) from exc
        return text

    # --- blobs

    def _store(self, f: scan.TreeFile) -> tuple[str, int] | None:
        """Store a tree file as a blob; its (sha256, size), or None for a Git LFS pointer."""
        if f.oid in self.stored:
            return self.stored[f.oid]
        uploads = self.indexer.uploads
        if f.size <= _SMALL:
            data = self.cat_for(f.source).read(f.oid, limit=_SMALL)
            if data.startswith(LFS_SIGNATURE):
                return None
            stored = (uploads.put_small(data, grant_to=self.holder), len(data))
        else:
            size, body = self.cat_for(f.source).open(f.oid)
            try:
                stored = uploads.put_stream(body, size, max_size=self.settings.indexer_max_file_size,
                                            grant_to=self.holder)
            except HubError as exc:
                raise TagProblem("file_too_large" if exc.code == "upload_too_large" else "storage_failed",
                                 f"{f.path}: {exc.message}") from exc
        self.stored[f.oid] = stored
        return stored

    # --- publishing

    def _publish(self, tag: Tag, manifest: Manifest, manifest_text: str,
                 listing: list[dict[str, Any]]) -> dict[str, Any]:
        repo = self.repo
        name = manifest.name
        try:
            with session_scope(self.indexer.engine, write=True) as session:
                user = session.get(User, repo.registered_by)
                if user is None or not user.is_active:
                    raise TagProblem("forbidden", "the user who registered this repository is no longer active")
                scopes = {f"publish:{repo.namespace}"} | ({"admin"} if user.is_admin else set())
                principal = Principal(user=user, scopes=Scopes(frozenset(scopes)))
                existed = session.exec(select(Package.id).where(Package.full_name == str(name))).first()
                version = packages.publish(
                    session, self.settings, principal, name.namespace, name.name, manifest_toml=manifest_text,
                    files=listing, private=None if existed is not None else repo.private,
                    source_repository=repo.display_url, source_commit=tag.commit)
                row = session.get(Repository, repo.id)
                assert row is not None
                if row.package_id is None:
                    row.package_id = version.package_id
                    session.add(row)
                if existed is None and repo.namespace_kind == "org":
                    # The registrant owns what the repository creates, as a publisher does in a user namespace.
                    role = session.get(PackageRole, (version.package_id, user.id))
                    if role is not None:
                        role.role = "owner"
                        session.add(role)
                session.add(RepositoryTag(repository_id=repo.id, tag=tag.name, commit=tag.commit or "",
                                          version=version.version))
                session.flush()
                published = version.version
        except HubError as exc:
            if exc.code == "version_exists":
                return self._already_published(tag, str(manifest.version))
            raise TagProblem(exc.code, exc.message, problems(exc)) from exc
        except sa.exc.IntegrityError:
            # Another worker recorded this tag at the same moment.
            return self._already_published(tag, str(manifest.version))
        self.indexer.context.cache.invalidate(f"pkg:{name}")  # the API's cached package document
        return {"tag": tag.name, "version": published, "commit": tag.commit, "new": True, "package": str(name)}

    def _already_published(self, tag: Tag, version: str) -> dict[str, Any]:
        with session_scope(self.indexer.engine) as session:
            record = session.get(RepositoryTag, (self.repo.id, tag.name))
        if record is not None:
            return {"tag": tag.name, "version": record.version, "commit": record.commit, "new": False}
        return {"skipped": f"version {version} is already published, but not from this tag; versions are immutable"}


def problems(exc: HubError) -> list[Problem]:
    return [Problem(p.get("code", ""), p.get("field", ""), p.get("message", ""))
            for p in exc.details.get("problems", []) if isinstance(p, dict)]


def git_problem(exc: GitError, *, fetching: bool = False) -> TagProblem:
    if exc.kind == "too_large":
        return TagProblem("repository_too_large", exc.message)
    if exc.kind == "timeout":
        return TagProblem("git_timeout", exc.message)
    if exc.kind == "missing":
        return TagProblem("git_missing", exc.message)
    if not fetching:
        return TagProblem("git_failed", exc.message)
    text = exc.stderr.lower()
    hints = ("not found", "does not appear to be a git repository", "authentication failed", "could not read",
             "terminal prompts disabled", "access denied", "not exported", "no such repository", "401", "403")
    if any(h in text for h in hints):
        return TagProblem("fetch_failed", f"cannot fetch the repository: it does not exist, or it needs credentials "
                          f"({exc.message})")
    return TagProblem("fetch_failed", f"cannot fetch the repository: {exc.message}")

