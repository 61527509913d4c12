"""Indexing one repository: fetch it, choose its new release tags, publish each as a version.

A run fetches into the repository's bare cache, lists its tags, and hands each new SemVer tag
(matching the tag and branch patterns) to :class:`~indexer.release.ReleaseReader`. A problem
with one tag (a bad manifest, one nested too deep, even an unexpected error) is reported for
that tag and the others go on; a problem with the repository
(its URL, the fetch, its size) ends the run. The result is recorded on the repository.

A published tag is never indexed again; if it later points at another commit, the run
reports it as moved and the version stays as it was.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa
from sqlmodel import col, select

from cvflow.versions import Version
from hub.db import session_scope
from hub.errors import HubError
from hub.models import Namespace, Package, Repository, RepositoryTag, utcnow
from hub.models import Version as VersionRow
from hub.services.urls import UrlRefused, check_repository_url, redact
from hub.settings import Settings
from indexer import fetch as fetching
from indexer import scan
from indexer.git import GitError, GitOptions
from indexer.release import ReleaseReader, RepoFacts, git_problem
from indexer.scan import Tag, TagProblem
from indexer.weights import http_client

if TYPE_CHECKING:
    from hub.context import HubContext

log = logging.getLogger("cvflow.indexer")

_MAX_LISTED = 500


@dataclass
class IndexResult:
    """What one run did: versions (published now or before), skipped and moved tags, errors."""

    repository_id: int
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    versions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    moved: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "error" if self.errors else "ok"

    @property
    def published(self) -> list[dict[str, Any]]:
        return [v for v in self.versions if v.get("new")]

    def summary(self) -> str:
        return (f"{len(self.published)} published, {len(self.skipped)} skipped, {len(self.moved)} moved, "
                f"{len(self.errors)} errors")

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "versions": self.versions[-_MAX_LISTED:],
            "skipped": self.skipped[:_MAX_LISTED],
            "moved": self.moved[:_MAX_LISTED],
            "errors": self.errors[:_MAX_LISTED],
            "notes": self.notes[:_MAX_LISTED],
        }


class Indexer:
    """Indexes repositories against one hub: its database, blob store and settings."""

    def __init__(self, context: HubContext, *, settings: Settings | None = None,
                 http: httpx.Client | None = None) -> None:
        self.context = context
        self.settings = settings or context.settings
        self.engine = context.engine
        self.uploads = context.uploads
        self._http = http
        self.git = GitOptions(timeout=float(self.settings.indexer_git_timeout),
                              allow_file=self.settings.indexer_allow_file_urls)

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = http_client()
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    # --- one run

    def index(self, repository_id: int) -> IndexResult:
        """Index a repository once and record the result on it. Raises HubError
        ``repository_not_found``; every other problem is recorded in the result."""
        repo = self._load(repository_id)
        result = IndexResult(repository_id)
        try:
            self._run(repo, result)
        except TagProblem as exc:
            result.errors.append(exc.as_dict(None))
        except GitError as exc:
            result.errors.append(git_problem(exc).as_dict(None))
        except Exception as exc:
            log.exception("indexing repository %s (%s) failed", repo.id, repo.display_url)
            result.errors.append({"tag": None, "code": "internal_error",
                                  "message": redact(f"the indexer failed unexpectedly: {type(exc).__name__}")})
        result.finished_at = utcnow()
        self._record(repo, result)
        log.info("indexed %s: %s", repo.display_url, result.summary())
        return result

    def _load(self, repository_id: int) -> RepoFacts:
        with session_scope(self.engine) as session:
            row = session.get(Repository, repository_id)
            if row is None:
                raise HubError("repository_not_found", f"no repository {repository_id}")
            ns = session.get(Namespace, row.namespace_id)
            assert ns is not None and row.id is not None
            package = session.get(Package, row.package_id) if row.package_id is not None else None
            return RepoFacts(row.id, row.url, row.display_url, row.subdir, row.branch_pattern, row.tag_pattern,
                         row.private, ns.name, ns.kind, row.registered_by, package.full_name if package else None)

    def _record(self, repo: RepoFacts, result: IndexResult) -> None:
        with session_scope(self.engine, write=True) as session:
            session.exec(sa.update(Repository).where(col(Repository.id) == repo.id).values(
                last_indexed_at=result.finished_at, last_status=result.status,
                last_result=json.dumps(result.as_dict(), separators=(",", ":"))))

    def _run(self, repo: RepoFacts, result: IndexResult) -> None:
        try:
            checked = check_repository_url(repo.url, allow_file=self.settings.indexer_allow_file_urls,
                                           allow_private=self.settings.indexer_allow_private_addresses)
        except UrlRefused as exc:
            raise TagProblem("invalid_repository_url", exc.message) from exc
        cache = fetching.cache_path(self.settings.data_dir, repo.id, repo.display_url)
        with fetching.cache_lock(cache):
            try:
                fetching.fetch(checked.url, cache, options=self.git, max_size=self.settings.indexer_max_repo_size)
            except GitError as exc:
                raise git_problem(exc, fetching=True) from exc
            self._index_tags(repo, cache, result)

    def _index_tags(self, repo: RepoFacts, cache: Path, result: IndexResult) -> None:
        reader = ReleaseReader(self, repo, cache)
        try:
            for version, tag in self._new_tags(repo, cache, result):
                if self._published_otherwise(repo, version):
                    result.skipped.append({"tag": tag.name, "reason": f"version {version} of {repo.package} is "
                                           "already published, but not from this tag; versions are immutable"})
                    continue
                try:
                    entry = reader.index_tag(tag, version)
                except (TagProblem, GitError) as exc:
                    problem = exc if isinstance(exc, TagProblem) else git_problem(exc)
                    result.errors.append(problem.as_dict(tag.name))
                    reader.reset()
                    continue
                except Exception as exc:
                    # Whatever one tag's content does to us, it fails alone: the other tags go on.
                    log.exception("indexing tag %s of %s failed", tag.name, repo.display_url)
                    result.errors.append({"tag": tag.name, "code": "internal_error",
                                          "message": redact(f"indexing this tag failed unexpectedly: "
                                                            f"{type(exc).__name__}")})
                    reader.reset()
                    continue
                if entry.get("skipped"):
                    result.skipped.append({"tag": tag.name, "reason": entry["skipped"]})
                else:
                    result.versions.append(entry)
                result.notes.extend({"tag": tag.name, "message": note} for note in reader.notes)
                reader.notes = []
                if entry.get("package"):
                    repo.package = entry["package"]
        finally:
            reader.close()

    def _new_tags(self, repo: RepoFacts, cache: Path, result: IndexResult) -> list[tuple[Version, Tag]]:
        """The tags to index now, in SemVer order; what was published before (and moved since)
        and what is skipped go into ``result``."""
        with session_scope(self.engine) as session:
            done = {t.tag: t for t in session.exec(select(RepositoryTag).where(RepositoryTag.repository_id == repo.id))}
        candidates: list[tuple[Version, Tag]] = []
        for tag in scan.list_tags(cache, self.git):
            if not scan.matches(repo.tag_pattern, tag.name):
                continue
            record = done.get(tag.name)
            version = scan.tag_version(tag.name)
            if record is not None:
                result.versions.append({"tag": tag.name, "version": record.version, "commit": record.commit,
                                        "new": False})
                if tag.commit != record.commit:
                    result.moved.append({
                        "tag": tag.name, "version": record.version, "published_commit": record.commit,
                        "commit": tag.commit,
                        "message": f"tag {tag.name} now points at {tag.commit}, but version {record.version} was "
                                   f"published from {record.commit}; versions are immutable, so it was not "
                                   "changed. Tag a new version instead."})
            elif tag.commit is None:
                result.skipped.append({"tag": tag.name, "reason": "the tag does not point at a commit"})
            elif version is None:
                result.skipped.append({"tag": tag.name, "reason": "not a SemVer version (such as v1.2.0 or 1.2.0)"})
            else:
                candidates.append((version, tag))
        candidates.sort(key=lambda c: (c[0].key, c[1].name))
        chosen: list[tuple[Version, Tag]] = []
        for version, tag in candidates:
            assert tag.commit is not None
            if repo.branch_pattern is not None:
                branches = scan.branches_containing(cache, tag.commit, self.git)
                if not any(scan.matches(repo.branch_pattern, b) for b in branches):
                    result.skipped.append({"tag": tag.name,
                                           "reason": f"not on a branch matching {repo.branch_pattern!r}"})
                    continue
            chosen.append((version, tag))
        limit = self.settings.indexer_max_new_tags
        for _version, tag in chosen[limit:]:
            result.skipped.append({"tag": tag.name, "reason": f"deferred: at most {limit} new tags are indexed "
                                                              "per run; the next run takes it"})
        return chosen[:limit]

    def _published_otherwise(self, repo: RepoFacts, version: Version) -> bool:
        """Whether the repository's package has this version already (published another way)."""
        if repo.package is None:
            return False
        with session_scope(self.engine) as session:
            package_id = session.exec(select(Package.id).where(Package.full_name == repo.package)).first()
            found = session.exec(select(VersionRow.id).where(VersionRow.package_id == package_id,
                                                             VersionRow.precedence == version.precedence_str)).first()
        return found is not None
