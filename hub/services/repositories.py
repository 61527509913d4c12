"""Registered repositories: registering one, who may see and manage it, its document.

Registering needs what creating a package needs: a token that may publish to the namespace,
and the namespace being the user's own or one of their organisations'. The registrant
becomes the owner of the package the repository creates. A repository is managed (re-index,
unregister, see the webhook secret) by its registrant, the namespace's owners, the package's
owners and admins; its document is visible to them, to the package's maintainers and, once
it feeds a package, to everyone who may read that package. The rules themselves are in
:mod:`hub.services.access`.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from cvflow.errors import ValidationError
from cvflow.paths import validate_path
from hub.errors import HubError
from hub.models import IndexJob, Namespace, Organisation, OrgMember, Package, Repository, User, row_id, utcnow
from hub.services.access import may_create_in, may_manage_repository, may_view_repository, repository_scope_covers
from hub.services.accounts import Principal
from hub.services.catalog import iso
from hub.services.jobs import enqueue
from hub.services.urls import UrlRefused, check_repository_url
from hub.settings import Settings

MAX_PATTERN = 200


def _pattern(value: object, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_PATTERN or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise HubError("invalid_field", f"'{key}' must be a glob pattern of at most {MAX_PATTERN} characters, "
                                        "such as 'v*' or 'release/*'")
    return value


def _subdir(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HubError("invalid_field", "'subdir' must be a string")
    cleaned = value.strip().strip("/")
    if not cleaned:
        return ""
    try:
        return validate_path(cleaned)
    except ValidationError as exc:
        raise HubError("invalid_field", f"'subdir': {exc.message}") from exc


def register(session: Session, settings: Settings, principal: Principal, *, url: object, namespace: str | None = None,
             subdir: object = None, branch_pattern: object = None, tag_pattern: object = None,
             private: bool = False, queue: bool = True) -> Repository:
    """Register a repository and (with ``queue``) queue its first index.

    Raises ``unauthenticated``, ``insufficient_scope``, ``forbidden``, ``namespace_not_found``,
    ``invalid_repository_url``, ``invalid_field`` and ``repository_exists`` (409).
    """
    user = principal.require_user()
    assert principal.scopes is not None
    if namespace is None:
        own = session.get(Namespace, user.namespace_id)
        assert own is not None
        namespace = own.name
    if not principal.scopes.can_publish(namespace, ""):
        raise HubError("insufficient_scope", f"the token may not publish to the namespace {namespace!r}")
    ns = session.exec(select(Namespace).where(Namespace.name == namespace)).first()
    if ns is None:
        raise HubError("namespace_not_found", f"no user or organisation is named {namespace!r}")
    if not principal.is_admin and not may_create_in(session, user, ns):
        raise HubError("forbidden", f"you may not create packages in {namespace!r}")
    try:
        checked = check_repository_url(url, allow_file=settings.indexer_allow_file_urls,
                                       allow_private=settings.indexer_allow_private_addresses)
    except UrlRefused as exc:
        raise HubError("invalid_repository_url", exc.message) from exc
    sub = _subdir(subdir)
    existing = session.exec(
        select(Repository).where(Repository.display_url == checked.display, Repository.subdir == sub)
    ).first()
    if existing is not None:
        raise _exists(existing)
    repo = Repository(namespace_id=row_id(ns), registered_by=row_id(user), url=checked.url, display_url=checked.display,
                      subdir=sub, branch_pattern=_pattern(branch_pattern, "branch_pattern"),
                      tag_pattern=_pattern(tag_pattern, "tag_pattern"), private=bool(private),
                      webhook_secret=secrets.token_hex(32), last_polled_at=utcnow())
    try:
        with session.begin_nested():
            session.add(repo)
            session.flush()
    except sa.exc.IntegrityError as exc:
        raced = session.exec(
            select(Repository).where(Repository.display_url == checked.display, Repository.subdir == sub)
        ).one()
        raise _exists(raced) from exc
    assert repo.id is not None
    if queue:
        enqueue(session, repo.id, "register")
    return repo


def _exists(repo: Repository) -> HubError:
    where = f" (subdirectory {repo.subdir})" if repo.subdir else ""
    return HubError("repository_exists", f"{repo.display_url}{where} is already registered as repository {repo.id}",
                    details={"id": repo.id})


# --- access (the rules: hub.services.access)


def get_repository(session: Session, principal: Principal, repository_id: int, *, manage: bool = False) -> Repository:
    """The repository, if the caller may see (or with ``manage``, manage) it.

    Raises ``repository_not_found`` when it may not be seen, ``forbidden`` when it may be
    seen but not managed.
    """
    repo = session.get(Repository, repository_id)
    if repo is None or not may_view_repository(session, principal, repo):
        raise HubError("repository_not_found", f"no repository {repository_id}")
    if manage and not repository_scope_covers(session, principal, repo):
        raise HubError("insufficient_scope", "this token's publish scopes do not cover the repository's namespace or package")
    if manage and not may_manage_repository(session, principal, repo):
        raise HubError("forbidden", "only the repository's registrant and the package's owners may do this")
    return repo


def find(session: Session, display_url: str, subdir: str = "") -> Repository | None:
    return session.exec(
        select(Repository).where(Repository.display_url == display_url, Repository.subdir == _subdir(subdir))
    ).first()


def for_package(session: Session, package: Package) -> Repository | None:
    return session.exec(select(Repository).where(Repository.package_id == package.id).order_by(col(Repository.id))).first()


def list_managed(session: Session, principal: Principal) -> list[Repository]:
    """The repositories the caller manages: registered by them, or in their namespaces."""
    user = principal.require_user()
    query = select(Repository).order_by(col(Repository.id))
    if not principal.is_admin:
        org_namespaces = select(Organisation.namespace_id).join(
            OrgMember, col(OrgMember.org_id) == Organisation.id).where(OrgMember.user_id == user.id)
        query = query.where(sa.or_(col(Repository.registered_by) == user.id, col(Repository.namespace_id) == user.namespace_id,
                                   col(Repository.namespace_id).in_(org_namespaces)))
    return [r for r in session.exec(query) if may_manage_repository(session, principal, r)]


def reindex(session: Session, repo: Repository) -> int:
    assert repo.id is not None
    return enqueue(session, repo.id, "manual")


def unregister(session: Session, repo: Repository) -> None:
    """Forget the repository and its jobs; the versions it published stay."""
    session.exec(sa.delete(IndexJob).where(col(IndexJob.repository_id) == repo.id))
    session.delete(repo)


# --- documents


def document(session: Session, principal: Principal, repo: Repository) -> dict[str, Any]:
    ns = session.get(Namespace, repo.namespace_id)
    package = session.get(Package, repo.package_id) if repo.package_id is not None else None
    registrant = session.get(User, repo.registered_by)
    jobs = session.exec(
        select(IndexJob.state).where(IndexJob.repository_id == repo.id, col(IndexJob.state).in_(("queued", "running")))
    ).all()
    status = "indexing" if "running" in jobs else "queued" if "queued" in jobs else repo.last_status or "new"
    doc: dict[str, Any] = {
        "id": repo.id,
        "url": repo.display_url,
        "namespace": ns.name if ns else None,
        "package": package.full_name if package else None,
        "subdir": repo.subdir,
        "branch_pattern": repo.branch_pattern,
        "tag_pattern": repo.tag_pattern,
        "private": repo.private,
        "registered_by": registrant.name if registrant else None,
        "created_at": iso(repo.created_at),
        "status": status,
        "last_indexed_at": iso(repo.last_indexed_at),
        "last_polled_at": iso(repo.last_polled_at),
        "last_result": json.loads(repo.last_result) if repo.last_result else None,
        "webhook_url": f"/api/v1/repositories/{repo.id}/webhook",
    }
    if may_manage_repository(session, principal, repo):
        doc["webhook_secret"] = repo.webhook_secret
    return doc
