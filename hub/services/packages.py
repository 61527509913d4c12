"""Packages and versions: publishing, yanking and roles (who may do what: :mod:`hub.services.access`).

Publishing is one transaction: the package row (created on first publish), the version, its
files and dependencies, and its change-feed event (``hub.mirror.feed``). The unique index on
``(package_id, precedence)`` decides races: of many clients publishing the same version at once
exactly one commits, the others get 409.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import get_args
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col, select

from cvflow.errors import CVFlowError, ValidationError
from cvflow.manifest import MANIFEST_FILENAME, Manifest, check_files_against_manifest, parse_manifest
from cvflow.names import PackageName, normalize_name
from cvflow.paths import FileEntry, validate_file_list
from cvflow.versions import Version as SemVer
from hub.errors import HubError, from_validation
from hub.mirror import feed
from hub.models import (
    Dependency,
    DownloadCount,
    File,
    Namespace,
    Package,
    PackageOrigin,
    PackageRole,
    PackageRoleName,
    PackageTag,
    User,
    Version,
    YankEvent,
    row_id,
    utcnow,
)
from hub.services import lineage
from hub.services.access import (
    can_read,
    may_create_in,
    project_reader,
    reader,
    require_maintainer,
    require_owner,
    visible_filter,
)
from hub.services.accounts import Principal
from hub.services.blobs import referable, user_holder
from hub.settings import Settings

PACKAGE_ROLES: tuple[PackageRoleName, ...] = get_args(PackageRoleName)


def parse_name(namespace: str, name: str) -> PackageName:
    try:
        return PackageName.parse(f"{namespace}/{name}")
    except ValidationError as exc:
        raise from_validation(exc, "invalid_package_name") from exc


def find_package(session: Session, namespace: str, name: str) -> Package | None:
    """The package ``namespace/name`` is a spelling of, whoever may see it.

    The exact spelling first (it also reaches a look-alike that predates migration 0006),
    then the one package whose normalised name (``cvflow.names.normalize_name``) matches.
    """
    package = session.exec(select(Package).where(Package.full_name == f"{namespace}/{name}")).first()
    if package is None:
        package = session.exec(
            select(Package).join(Namespace, col(Namespace.id) == Package.namespace_id)
            .where(Namespace.name == namespace.lower(), Package.normalized_name == normalize_name(name))
        ).first()
    return package


def find_packages(session: Session, names: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Many lookups as :func:`find_package` makes one, in two queries: each name of ``names``
    that is a spelling of a package, mapped to that package's id and canonical name."""
    names = sorted({n for n in names if n.count("/") == 1})
    found: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(names, 500):
        for id_, full_name in session.exec(
            select(Package.id, Package.full_name).where(col(Package.full_name).in_(chunk))
        ):
            assert id_ is not None  # a primary key
            found[full_name] = (id_, full_name)
        rest = {n: n.split("/") for n in chunk if n not in found}
        if not rest:
            continue
        by_key: dict[tuple[str, str], tuple[int, str]] = {}
        for id_, full_name, ns, norm in session.exec(
            select(Package.id, Package.full_name, Namespace.name, Package.normalized_name)
            .join(Namespace, col(Namespace.id) == Package.namespace_id)
            .where(col(Package.normalized_name).in_({normalize_name(n) for _, n in rest.values()}))
        ):
            assert id_ is not None  # a primary key
            by_key[(ns, norm)] = (id_, full_name)
        for wanted, (ns, n) in rest.items():
            hit = by_key.get((ns.lower(), normalize_name(n)))
            if hit is not None:
                found[wanted] = hit
    return found


def get_package(session: Session, principal: Principal, namespace: str, name: str, *,
                suggest: bool = True) -> Package:
    """The package, if the caller may see it; a private one is "not found" to others.

    Any look-alike spelling of its name finds it (:func:`find_package`); the row says the
    canonical name. The "not found" error carries close names (:func:`suggest_names`) unless
    ``suggest`` is false: a caller that answers a miss otherwise (from an upstream) skips the query."""
    package = find_package(session, namespace, name)
    if package is None or not can_read(session, principal, package):
        close = suggest_names(session, principal, namespace, name) if suggest else []
        raise HubError("package_not_found", f"no package {namespace}/{name}",
                       details={"suggestions": close} if close else None)
    return package


#: At most this many names are compared with a mistyped one (a bounded, indexed query).
_SUGGESTION_POOL = 2000


def suggest_names(session: Session, principal: Principal, namespace: str, name: str,
                  *, limit: int = 3) -> list[str]:
    """Up to ``limit`` names of packages the caller may read that are close to ``namespace/name``.

    Candidates are the readable packages in the same namespace, and those elsewhere whose
    normalised name is the same or shares its first three characters; they are ranked by
    ``difflib``'s similarity. A package the caller may not read is never a candidate, so the
    answer says nothing about private packages.
    """
    wanted = f"{namespace}/{name}".lower()
    norm = normalize_name(name)
    near: list[sa.ColumnElement[bool]] = [col(Namespace.name) == namespace.lower(),
                                          col(Package.normalized_name) == norm]
    if len(norm) >= 3:
        near.append(col(Package.normalized_name).startswith(norm[:3], autoescape=True))
    rows = session.exec(
        select(Package.full_name).join(Namespace, col(Namespace.id) == Package.namespace_id)
        .where(sa.or_(*near), visible_filter(session, principal))
        .order_by(col(Package.downloads).desc()).limit(_SUGGESTION_POOL)
    ).all()
    by_lower = {full.lower(): full for full in rows if full.lower() != wanted}
    return [by_lower[n] for n in difflib.get_close_matches(wanted, list(by_lower), n=limit, cutoff=0.6)]


def get_version(session: Session, package: Package, version: str) -> Version:
    row = session.exec(
        select(Version).where(Version.package_id == package.id, Version.version == version)
    ).first()
    if row is None:
        row = session.exec(
            select(Version).where(Version.package_id == package.id, Version.precedence == version)
        ).first()
    if row is None:
        raise HubError("version_not_found", f"{package.full_name} has no version {version}")
    return row


# --- publishing -----------------------------------------------------------------------------


def publish(
    session: Session,
    settings: Settings,
    principal: Principal,
    namespace: str,
    name: str,
    *,
    manifest_toml: str,
    files: Sequence[dict[str, object]],
    private: bool | None = None,
    source_repository: str | None = None,
    source_commit: str | None = None,
) -> Version:
    """Publish a version whose blobs are already stored.

    Raises ``invalid_*`` (422) for bad names, manifests and file lists, ``missing_blobs``,
    ``unauthenticated``/``insufficient_scope``/``forbidden``, ``namespace_not_found`` and
    ``version_exists`` (409). On any error nothing is written.

    Every blob must be one the publisher may reference (:func:`hub.services.blobs.referable`):
    uploaded by them, or in a version they may read. Any other is ``missing_blobs``, exactly
    as if the hub did not have it.
    """
    pkg_name = parse_name(namespace, name)
    _check_source(source_repository, source_commit)
    user = principal.require_user()
    assert principal.scopes is not None
    if not principal.scopes.can_publish(namespace, name):
        raise HubError("insufficient_scope", f"the token may not publish to {pkg_name}")
    manifest, entries = validate_release(settings, pkg_name, manifest_toml, files)

    ns = session.exec(select(Namespace).where(Namespace.name == namespace)).first()
    if ns is None:
        raise HubError("namespace_not_found", f"no user or organisation is named {namespace!r}")

    package = find_package(session, pkg_name.namespace, pkg_name.name)
    visibility_changed = False
    if package is None or package.full_name != str(pkg_name):  # new, or a look-alike (refused there)
        package = _create_package(session, principal, ns, pkg_name, bool(private))
    else:
        require_maintainer(session, principal, package)
        if private is not None and private != package.private:
            require_owner(session, principal, package)
            package.private = private
            visibility_changed = True
    # After the role checks: a digest is input, never a reason to answer differently to a stranger.
    check_blobs(session, entries, holder=user_holder(user.id), readable=reader(session, principal),
                projects=project_reader(session, principal))

    if not settings.allow_shadowing and session.get(PackageOrigin, package.id) is not None:
        raise HubError("name_shadows_upstream", f"{pkg_name} is a copy of an upstream package; publish there",
                       details={"package": str(pkg_name)})
    lineage.check(session, principal, manifest)  # [lineage]: input, never permission (invalid_lineage)
    version = add_version(session, package, manifest, manifest_toml, entries, published_by=user.id,
                          source_repository=source_repository, source_commit=source_commit)
    feed.emit(session, "publish", package.full_name, version.version)
    if visibility_changed:
        feed.emit(session, "private" if package.private else "public", package.full_name)
    return version


def add_version(
    session: Session,
    package: Package,
    manifest: Manifest,
    manifest_toml: str,
    entries: Sequence[FileEntry],
    *,
    published_by: int | None,
    source_repository: str | None = None,
    source_commit: str | None = None,
    created_at: datetime | None = None,
) -> Version:
    """Write a validated version with its files, dependencies and lineage row (:func:`hub.services.lineage.record`);
    the caller emits the change.

    Raises ``version_exists`` when the package has this release already.
    """
    pkg_name = PackageName.parse(package.full_name)
    semver = manifest.version
    existing = session.exec(
        select(Version).where(
            Version.package_id == package.id, Version.precedence == semver.precedence_str
        )
    ).first()
    if existing is not None:
        raise _version_exists(pkg_name, existing.version)
    for gone in feed.deleted_versions(session, package.full_name):
        if SemVer.parse(gone).precedence_str == semver.precedence_str:
            raise HubError("version_deleted", f"{pkg_name}@{gone} was taken down by an administrator; its number "
                           "is never used again — publish a new version", details={"package": str(pkg_name),
                                                                                   "version": gone})
    version = Version(
        package_id=row_id(package),
        version=str(semver),
        precedence=semver.precedence_str,
        sort_key=semver.sort_key_text,
        is_prerelease=semver.is_prerelease,
        manifest=json.dumps(manifest.to_dict(), sort_keys=True),
        manifest_toml=manifest_toml,
        published_by=published_by,
        total_size=sum(e.size for e in entries),
        file_count=len(entries),
        source_repository=source_repository,
        source_commit=source_commit,
    )
    if created_at is not None:
        version.created_at = created_at
    session.add(version)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        raise _version_exists(pkg_name, str(semver)) from exc
    session.add_all(
        File(version_id=row_id(version), path=e.path, size=e.size, sha256=e.sha256)
        for e in entries
    )
    session.add_all(
        Dependency(version_id=row_id(version), package=dep, range=str(rng))
        for dep, rng in manifest.dependencies.items()
    )
    lineage.record(session, package, version, manifest)
    apply_latest(session, package)
    session.flush()
    return version


_COMMIT_RE = re.compile(r"\A[0-9a-f]{40}(?:[0-9a-f]{24})?\Z")


def _check_source(repository: str | None, commit: str | None) -> None:
    """Indexed versions name their source; only web URLs and full git object ids are kept."""
    if repository is not None and urlsplit(repository).scheme not in {"https", "http", "git"}:
        raise HubError("invalid_field", "the source repository must be an https, http or git URL")
    if commit is not None and not _COMMIT_RE.match(commit):
        raise HubError("invalid_field", "the source commit must be a full hexadecimal git object id")


def validate_release(
    settings: Settings, pkg_name: PackageName, manifest_toml: str, files: Sequence[object]
) -> tuple[Manifest, list[FileEntry]]:
    """Check a manifest and file list the way publishing does, without touching the database."""
    if len(manifest_toml.encode()) > settings.max_manifest_size:
        raise HubError("body_too_large", "the manifest is over the size limit")
    try:
        manifest = parse_manifest(manifest_toml)
    except CVFlowError as exc:
        raise from_validation(exc, "invalid_manifest") from exc
    if str(manifest.name) != str(pkg_name):
        raise HubError(
            "invalid_manifest",
            f"the manifest names {manifest.name}, but it is published to {pkg_name}",
        )
    if not isinstance(files, (list, tuple)) or not files:
        raise HubError("invalid_files", "a version needs a non-empty list of files")
    if len(files) > settings.max_files_per_version:
        raise HubError("invalid_files", f"a version may hold at most {settings.max_files_per_version} files")
    try:
        entries = validate_file_list(list(files))
    except ValidationError as exc:
        codes = {p.code for p in exc.problems}
        raise from_validation(exc, "invalid_path" if codes <= {"invalid_path"} else "invalid_files") from exc
    problems = check_files_against_manifest(manifest, entries)
    if problems:
        raise from_validation(ValidationError("the file list disagrees with the manifest", problems=problems), "invalid_files")
    check_shipped_manifest(manifest_toml, entries)
    return manifest, entries


def check_shipped_manifest(manifest_toml: str, entries: Sequence[FileEntry]) -> None:
    """What is shown is what is shipped: the manifest text a version is published with must be
    its ``cvflow.toml`` file byte for byte, so the metadata stored and shown (parsed from the
    text) is that of the file clients install. Comparing digests compares the bytes: the
    file's blob is verified against its sha256 when stored, and :func:`check_blobs` proves it
    is stored. Raises ``manifest_mismatch``.
    """
    shipped = next((e for e in entries if e.path == MANIFEST_FILENAME), None)
    sent = hashlib.sha256(manifest_toml.encode()).hexdigest()
    if shipped is None or shipped.sha256 != sent:
        raise HubError("manifest_mismatch", f"the manifest differs from the {MANIFEST_FILENAME} file the version "
                       f"ships; send that file's text as the manifest",
                       details={"path": MANIFEST_FILENAME, "manifest_sha256": sent,
                                "file_sha256": shipped.sha256 if shipped else None})


def check_blobs(session: Session, entries: Sequence[FileEntry], *, holder: str,
                readable: Callable[[int], bool] | None, projects: Callable[[int], bool] | None = None) -> None:
    """Every file's blob is stored, ``holder`` may reference it (see
    :func:`hub.services.blobs.referable`; ``readable`` says which private packages it may
    read, ``projects`` which annotation projects' images) and it has the declared size.
    Raises ``missing_blobs`` (for blobs the hub lacks and blobs it may not reference alike,
    so the answer tells nothing of other accounts' blobs), ``invalid_files``."""
    wanted = {e.sha256 for e in entries}
    found = referable(session, holder, wanted, readable=readable, projects=projects)
    missing = sorted(wanted - found.keys())
    if missing:
        raise HubError(
            "missing_blobs", f"{len(missing)} file(s) have not been uploaded", details={"missing": missing}
        )
    wrong = [e.path for e in entries if found[e.sha256] != e.size]
    if wrong:
        raise HubError("invalid_files", "declared sizes disagree with the stored blobs", details={"paths": wrong})


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _create_package(
    session: Session, principal: Principal, ns: Namespace, pkg_name: PackageName, private: bool
) -> Package:
    user = principal.require_user()
    if not principal.is_admin and not may_create_in(session, user, ns):
        if ns.kind == "user":
            raise HubError("forbidden", f"you may not create packages in {ns.name!r}")
        raise HubError("forbidden", f"only members of {ns.name!r} create packages in it")
    package, created = create_package(session, ns, pkg_name, private=private)
    if not created:
        # Another publisher created it a moment ago; carry on as a publish to it.
        require_maintainer(session, principal, package)
        return package
    if ns.kind == "org":
        session.add(PackageRole(package_id=row_id(package), user_id=row_id(user), role="maintainer"))
    return package


def create_package(session: Session, ns: Namespace, pkg_name: PackageName, *, private: bool) -> tuple[Package, bool]:
    """Make the package row: the one way every path (publish, the indexer, mirror sync,
    pull-through, bundle import) creates a package. Returns it and True, or — when a
    publisher made it a moment ago — the existing one and False. The caller checks who may.

    Raises ``similar_name_exists`` (409) when the namespace has a package whose name differs
    only in ``-``/``_``/``.`` or case; the unique index on ``(namespace_id, normalized_name)``
    decides races.
    """
    taken = find_package(session, ns.name, pkg_name.name)
    if taken is None:
        package = Package(namespace_id=row_id(ns), name=pkg_name.name, normalized_name=normalize_name(pkg_name.name),
                          full_name=str(pkg_name), private=private)
        try:
            # begin_nested() flushes pending objects first, so the add goes inside the savepoint.
            with session.begin_nested():
                session.add(package)
                session.flush()
            return package, True
        except sa.exc.IntegrityError:
            taken = find_package(session, ns.name, pkg_name.name)
            if taken is None:
                raise
    if taken.full_name != str(pkg_name):
        raise HubError("similar_name_exists",
                       f"{taken.full_name} exists, and {pkg_name} differs from it only in '-', '_', '.' or case; "
                       f"publish to {taken.full_name}",
                       details={"package": str(pkg_name), "existing": taken.full_name})
    return taken, False


def _version_exists(pkg_name: PackageName, version: str) -> HubError:
    return HubError(
        "version_exists",
        f"{pkg_name}@{version} is already published; versions are immutable — publish a new version",
        details={"package": str(pkg_name), "version": version},
    )


def apply_latest(session: Session, package: Package) -> None:
    """Recompute the latest version, and the package's summary fields from its manifest.

    Takes the package's row lock first (PostgreSQL): two replicas publishing or yanking in one
    package at once would otherwise both delete the tags and insert the same ones, and the later
    insert fails on ``package_tags_pkey`` (a 500). Pending writes (the version) flush first. The
    lock is ``FOR NO KEY UPDATE``, the one an UPDATE takes: a publish's new version row already
    holds a key-share lock on the package (its foreign key), which ``FOR UPDATE`` would wait for,
    so two publishes would deadlock.
    """
    session.exec(select(Package.id).where(Package.id == package.id).with_for_update(key_share=True))
    rows = session.exec(
        select(Version.version, Version.is_prerelease, Version.yanked, Version.manifest)
        .where(Version.package_id == package.id)
        .order_by(col(Version.sort_key).desc())
    ).all()
    live = [r for r in rows if not r[2]]
    releases = [r for r in live if not r[1]]
    best = releases[0] if releases else live[0] if live else None
    package.latest_version = best[0] if best else None
    if best is not None:
        meta = json.loads(best[3])  # Manifest.to_dict(): flat
        package.description = (meta.get("description") or "")[:512]
        package.task = meta.get("task")
        package.license = meta.get("license")
        package.framework = (meta.get("framework") or "")[:32] or None
        package.kind = meta.get("kind") or "model"
        tags = sorted(set(meta.get("tags") or []))
        session.exec(sa.delete(PackageTag).where(col(PackageTag.package_id) == package.id))
        session.add_all(PackageTag(package_id=row_id(package), tag=t) for t in tags)
    package.updated_at = utcnow()
    session.add(package)


# --- yanking and roles ----------------------------------------------------------------------


def _reason(reason: str | None) -> str:
    """A yank's, unyank's or deletion's reason: 1 to 500 characters after trimming."""
    reason = (reason or "").strip()
    if not reason or len(reason) > 500:
        raise HubError("invalid_field", "a reason of 1 to 500 characters is required")
    return reason


def set_yanked(
    session: Session, principal: Principal, namespace: str, name: str, version: str, *, yanked: bool, reason: str
) -> Version:
    """Yank or unyank a version; both need a reason and are recorded as events."""
    reason = _reason(reason)
    package = get_package(session, principal, namespace, name)
    user = require_maintainer(session, principal, package)
    row = get_version(session, package, version)
    if row.yanked != yanked or (yanked and row.yank_reason != reason):
        row.yanked = yanked
        row.yank_reason = reason if yanked else None
        row.yanked_at = utcnow() if yanked else None
        session.add(row)
        session.add(YankEvent(version_id=row_id(row), action="yank" if yanked else "unyank", reason=reason, user_id=user.id))
        session.flush()
        apply_latest(session, package)
        feed.emit(session, "yank" if yanked else "unyank", package.full_name, row.version,
                  {"reason": reason} if yanked else None)
    return row


def delete_version(session: Session, principal: Principal, namespace: str, name: str, version: str, *,
                   reason: str) -> Version:
    """Take a version down (administrators only, e.g. on a legal request; maintainers yank).

    Its rows go; the change feed records the deletion with its reason, which tells mirrors to drop
    their copies and keeps the number from ever being published again. Its blobs stay until
    ``cvflow-hub gc`` finds nothing else refers to them.
    """
    reason = _reason(reason)
    if not principal.is_admin:
        raise HubError("forbidden", "only a hub administrator (with an admin token) may delete a version; "
                       "maintainers yank it instead")
    package = get_package(session, principal, namespace, name)
    row = get_version(session, package, version)
    drop_version(session, package, row)
    feed.emit(session, "delete", package.full_name, row.version, {"reason": reason})
    return row


def drop_version(session: Session, package: Package, row: Version) -> None:
    """Remove a version and everything that hangs on it; the caller records the change."""
    for table, version_id in ((File, col(File.version_id)), (Dependency, col(Dependency.version_id)),
                              (YankEvent, col(YankEvent.version_id)), (DownloadCount, col(DownloadCount.version_id))):
        session.exec(sa.delete(table).where(version_id == row.id))
    session.delete(row)
    session.flush()
    apply_latest(session, package)


def update_package(session: Session, principal: Principal, namespace: str, name: str, *, private: bool) -> Package:
    package = get_package(session, principal, namespace, name)
    require_owner(session, principal, package)
    changed = package.private != private
    package.private = private
    package.updated_at = utcnow()
    session.add(package)
    if changed:
        feed.emit(session, "private" if private else "public", package.full_name)
    return package


def set_role(
    session: Session, principal: Principal, namespace: str, name: str, user: User, role: PackageRoleName | None
) -> None:
    package = get_package(session, principal, namespace, name)
    require_owner(session, principal, package)
    if role is not None and role not in PACKAGE_ROLES:
        raise HubError("invalid_field", f"role must be one of {', '.join(PACKAGE_ROLES)}")
    current = session.get(PackageRole, (package.id, user.id))
    if role is None:
        if current is not None:
            session.delete(current)
    elif current is None:
        session.add(PackageRole(package_id=row_id(package), user_id=row_id(user), role=role))
    else:
        current.role = role
        session.add(current)
