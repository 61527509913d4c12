"""Who may read, publish to and own packages and repositories: the hub's access rules, in one place.

Every caller (the REST API, the website, the indexer, mirrors) asks these functions; none
repeats a rule. Not to be confused with :mod:`hub.api.access`, which declares the token scope
each REST endpoint needs before its handler runs; the rules here decide, once the resource is
loaded, whether the caller holds the role on it.

Packages
    A public package is readable by everyone. A private one is readable by an admin, and by a
    caller whose token may read it and who holds a role on it (:func:`package_role`: the
    namespace's user, an owner or member of the owning organisation, or an owner or
    maintainer named on the package). :func:`visible_filter` is the same rule as a WHERE
    clause, for listings. Publishing needs a token that may publish to the package and the
    owner or maintainer role (:func:`require_maintainer`); changing visibility and roles needs
    the owner role (:func:`require_owner`). A new package may be created in the caller's own
    namespace or in an organisation they belong to (:func:`may_create_in`).

Repositories
    A registered repository is managed (re-index, unregister, see the webhook secret) by its
    registrant, the owners of its namespace, the owners of the package it feeds and admins,
    with a token whose publish scopes cover its namespace or package
    (:func:`may_manage_repository`); it is seen by them, by its registrant, and by everyone who
    may read the package it feeds (:func:`may_view_repository`).

Annotation projects
    A project's roles (:func:`project_role`): ``owner`` for the namespace's user, the owners of
    the owning organisation and members named owner; ``annotator`` and ``reviewer`` for members
    named so. A public project is readable by everyone; a private one by admins and, with a
    token that may read (``read``, ``annotate`` or a publish scope), by its role holders
    (:func:`can_read_project`). Writing needs the ``annotate`` scope (or unscoped ``publish``)
    and a role (:func:`require_project_role`): annotators and owners label, reviewers and owners
    review, owners manage the project. A member removed during a session loses the next call.
    A snapshot is a publish: it needs the owner role (:func:`require_project_owner`) and a
    publish scope covering the dataset package, not ``annotate``. A project's images may be
    referenced in a version by its role holders who may read it (:func:`project_reader`).

Admins are users with the admin flag *and* a token with the ``admin`` scope
(:attr:`hub.services.accounts.Principal.is_admin`).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlmodel import Session, col, select

from hub.errors import HubError
from hub.models import (
    AnnotationProject,
    Namespace,
    Organisation,
    OrgMember,
    Package,
    PackageRole,
    ProjectMember,
    ProjectRole,
    Repository,
    User,
)
from hub.services.accounts import Principal

#: The package roles that may publish versions.
PUBLISHERS = frozenset({"owner", "maintainer"})


# --- packages -------------------------------------------------------------------------------


def package_role(session: Session, package: Package, user: User | None) -> str | None:
    """``owner``, ``maintainer``, ``member`` (of the owning organisation) or None."""
    if user is None:
        return None
    ns = session.get(Namespace, package.namespace_id)
    if ns is not None and ns.kind == "user" and ns.id == user.namespace_id:
        return "owner"
    role = session.get(PackageRole, (package.id, user.id))
    if ns is not None and ns.kind == "org":
        org = session.exec(select(Organisation).where(Organisation.namespace_id == ns.id)).one()
        member = session.get(OrgMember, (org.id, user.id))
        if member is not None and member.role == "owner":
            return "owner"
        if role is None and member is not None:
            return "member"
    return role.role if role else None


def can_read(session: Session, principal: Principal, package: Package) -> bool:
    """Whether the caller may see the package (its documents, versions and files)."""
    if not package.private:
        return True
    if principal.user is None or principal.scopes is None:
        return False
    if principal.is_admin:
        return True
    ns, name = package.full_name.split("/", 1)
    if not principal.scopes.can_read(ns, name):
        return False
    return package_role(session, package, principal.user) is not None


def reader(session: Session, principal: Principal) -> Callable[[int], bool]:
    """``readable(package_id)`` for :func:`hub.services.blobs.referable`: whether ``principal`` may read it."""
    def readable(package_id: int) -> bool:
        package = session.get(Package, package_id)
        return package is not None and can_read(session, principal, package)

    return readable


def visible_filter(session: Session, principal: Principal) -> sa.ColumnElement[bool]:
    """:func:`can_read` as a WHERE clause selecting the packages the caller may see."""
    if principal.is_admin:
        return sa.true()
    public = col(Package.private).is_(False)
    user = principal.user
    if user is None or principal.scopes is None:
        return public
    own_ns = col(Package.namespace_id) == user.namespace_id
    org_ns = col(Package.namespace_id).in_(
        select(Organisation.namespace_id).join(OrgMember, col(OrgMember.org_id) == Organisation.id).where(OrgMember.user_id == user.id)
    )
    roles = col(Package.id).in_(select(PackageRole.package_id).where(PackageRole.user_id == user.id))
    scoped_private = sa.and_(sa.or_(own_ns, org_ns, roles), _scope_filter(principal))
    return sa.or_(public, scoped_private)


def _scope_filter(principal: Principal) -> sa.ColumnElement[bool]:
    items = principal.scopes.items if principal.scopes else frozenset()
    if {"read", "publish", "admin"} & items:  # as Scopes.can_read: an admin scope covers every package
        return sa.true()
    clauses: list[sa.ColumnElement[bool]] = []
    for scope in items:
        target = scope.partition(":")[2]
        if "/" in target:
            clauses.append(col(Package.full_name) == target)
        elif target:
            clauses.append(col(Package.full_name).startswith(target + "/"))
    return sa.or_(*clauses) if clauses else sa.false()


def may_publish(session: Session, principal: Principal, package: Package) -> bool:
    """Whether the caller may publish to the package: :func:`require_maintainer` without the error."""
    if principal.user is None or principal.scopes is None:
        return False
    if not principal.scopes.can_publish(*package.full_name.split("/", 1)):
        return False
    return principal.is_admin or package_role(session, package, principal.user) in PUBLISHERS


def require_maintainer(session: Session, principal: Principal, package: Package) -> User:
    """The caller, if they may publish to the package (an owner, a maintainer or an admin).

    Raises ``unauthenticated``, ``insufficient_scope`` and ``forbidden``.
    """
    user = principal.require_user()
    ns, name = package.full_name.split("/", 1)
    assert principal.scopes is not None
    if not principal.scopes.can_publish(ns, name):
        raise HubError("insufficient_scope", f"the token may not publish to {package.full_name}")
    if principal.is_admin:
        return user
    if package_role(session, package, user) not in PUBLISHERS:
        raise HubError("forbidden", f"only owners and maintainers publish to {package.full_name}")
    return user


def require_owner(session: Session, principal: Principal, package: Package) -> User:
    """The caller, if they own the package (or are an admin). Raises as :func:`require_maintainer`."""
    user = require_maintainer(session, principal, package)
    if not principal.is_admin and package_role(session, package, user) != "owner":
        raise HubError("forbidden", f"only owners of {package.full_name} may do this")
    return user


def may_create_in(session: Session, user: User, ns: Namespace) -> bool:
    """Whether ``user`` may create packages in ``ns``: their own namespace, or an organisation they belong to.

    Admins may create anywhere; callers check :attr:`Principal.is_admin` first. A ``mirror``
    namespace (made by mirror sync for upstream copies; nobody here owns it) is not refused:
    that is what publishing has always done; see docs/architecture.md.
    """
    if ns.kind == "user":
        return ns.id == user.namespace_id
    if ns.kind == "org":
        org = session.exec(select(Organisation).where(Organisation.namespace_id == ns.id)).one()
        return session.get(OrgMember, (org.id, user.id)) is not None
    return True


# --- repositories ---------------------------------------------------------------------------


def repository_scope_covers(session: Session, principal: Principal, repo: Repository) -> bool:
    """Whether the token's scopes reach the repository: its namespace, or the package it publishes."""
    if principal.scopes is None:
        return False
    ns = session.get(Namespace, repo.namespace_id)
    assert ns is not None
    if principal.scopes.can_publish(ns.name, ""):
        return True
    package = session.get(Package, repo.package_id) if repo.package_id is not None else None
    return package is not None and principal.scopes.can_publish(*package.full_name.split("/", 1))


def may_manage_repository(session: Session, principal: Principal, repo: Repository) -> bool:
    """Whether the caller may re-index, unregister and see the secret of the repository."""
    user = principal.user
    if user is None or not repository_scope_covers(session, principal, repo):
        return False
    ns = session.get(Namespace, repo.namespace_id)
    assert ns is not None
    if principal.is_admin or repo.registered_by == user.id:
        return True
    if ns.kind == "user" and ns.id == user.namespace_id:
        return True
    if ns.kind == "org":
        org = session.exec(select(Organisation).where(Organisation.namespace_id == ns.id)).one()
        member = session.get(OrgMember, (org.id, user.id))
        if member is not None and member.role == "owner":
            return True
    package = session.get(Package, repo.package_id) if repo.package_id is not None else None
    return package is not None and package_role(session, package, user) == "owner"


def may_view_repository(session: Session, principal: Principal, repo: Repository) -> bool:
    """Whether the caller may see the repository's document."""
    if may_manage_repository(session, principal, repo):
        return True
    package = session.get(Package, repo.package_id) if repo.package_id is not None else None
    if package is None:
        return principal.user is not None and principal.user.id == repo.registered_by
    return can_read(session, principal, package)


# --- annotation projects --------------------------------------------------------------------

#: What each project action needs: the roles that may do it.
PROJECT_ACTIONS: dict[str, frozenset[ProjectRole]] = {
    "label": frozenset({"owner", "annotator"}),
    "review": frozenset({"owner", "reviewer"}),
    "suggest": frozenset({"owner", "annotator"}),
    "manage": frozenset({"owner"}),
}


def project_role(session: Session, project: AnnotationProject, user: User | None) -> ProjectRole | None:
    """``owner``, ``annotator``, ``reviewer`` or None (see the module's text)."""
    if user is None:
        return None
    ns = session.get(Namespace, project.namespace_id)
    if ns is not None and ns.kind == "user" and ns.id == user.namespace_id:
        return "owner"
    if ns is not None and ns.kind == "org":
        org = session.exec(select(Organisation).where(Organisation.namespace_id == ns.id)).one()
        member = session.get(OrgMember, (org.id, user.id))
        if member is not None and member.role == "owner":
            return "owner"
    row = session.get(ProjectMember, (project.id, user.id))
    return row.role if row is not None else None


def can_read_project(session: Session, principal: Principal, project: AnnotationProject) -> bool:
    """Whether the caller may see the project, its items and their images."""
    if not project.private:
        return True
    if principal.user is None or principal.scopes is None:
        return False
    if principal.is_admin:
        return True
    items = principal.scopes.items
    may_read = "read" in items or principal.scopes.can_annotate or any(s.startswith("publish") for s in items)
    return may_read and project_role(session, project, principal.user) is not None


def require_project_role(session: Session, principal: Principal, project: AnnotationProject, action: str) -> User:
    """The caller, if their token may annotate and their role allows ``action`` (:data:`PROJECT_ACTIONS`).

    Raises ``unauthenticated``, ``insufficient_scope``, ``forbidden``; and ``project_not_found``
    when the caller may not even see the project, so a private project's name leaks nothing.
    """
    user = principal.require_user()
    assert principal.scopes is not None
    if not principal.scopes.can_annotate:
        raise HubError("insufficient_scope", "this needs a token with the annotate scope (or publish)")
    if principal.is_admin:
        return user
    role = project_role(session, project, user)
    if role is None:
        if not can_read_project(session, principal, project):
            raise HubError("project_not_found", f"no project {project.full_name}")
        raise HubError("forbidden", f"you hold no role in {project.full_name}")
    if role not in PROJECT_ACTIONS[action]:
        needed = " or ".join(sorted(PROJECT_ACTIONS[action]))
        raise HubError("forbidden", f"only a project {needed} may do this in {project.full_name}")
    return user


def require_project_owner(session: Session, principal: Principal, project: AnnotationProject) -> User:
    """The caller, if they own the project (or are an admin), whatever their token's scopes: the
    caller checks the scope its action needs.

    For a snapshot, which is a publish: the token needs a publish scope covering the package
    (checked by the publish rules), not the ``annotate`` scope that :func:`require_project_role`
    asks for. Raises ``unauthenticated``, ``project_not_found`` (the caller may not see the
    project) and ``forbidden``.
    """
    user = principal.require_user()
    if principal.is_admin:
        return user
    role = project_role(session, project, user)
    if role is None and not can_read_project(session, principal, project):
        raise HubError("project_not_found", f"no project {project.full_name}")
    if role != "owner":
        raise HubError("forbidden", f"only a project owner may do this in {project.full_name}")
    return user


def project_reader(session: Session, principal: Principal) -> Callable[[int], bool]:
    """``projects(project_id)`` for :func:`hub.services.blobs.referable`: whether ``principal``
    holds a role in the project (or is an admin) and may read its items. A public project's
    readers without a role do not count: naming its digest lets only its members reference it."""
    def readable(project_id: int) -> bool:
        project = session.get(AnnotationProject, project_id)
        if project is None or not can_read_project(session, principal, project):
            return False
        return principal.is_admin or project_role(session, project, principal.user) is not None

    return readable


def visible_projects_filter(principal: Principal) -> sa.ColumnElement[bool]:
    """:func:`can_read_project` as a WHERE clause over ``annotation_projects``."""
    if principal.is_admin:
        return sa.true()
    public = col(AnnotationProject.private).is_(False)
    user = principal.user
    if user is None or principal.scopes is None:
        return public
    own_ns = col(AnnotationProject.namespace_id) == user.namespace_id
    org_owner = col(AnnotationProject.namespace_id).in_(
        select(Organisation.namespace_id).join(OrgMember, col(OrgMember.org_id) == Organisation.id)
        .where(OrgMember.user_id == user.id, OrgMember.role == "owner"))
    member = col(AnnotationProject.id).in_(select(ProjectMember.project_id).where(ProjectMember.user_id == user.id))
    return sa.or_(public, own_ns, org_owner, member)
