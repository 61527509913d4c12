"""Read side of the registry: package and version documents, search, download counts.

Documents are built from indexed columns only; nothing here hashes or walks blobs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal, get_args
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from hub.errors import HubError
from hub.models import (
    Dependency,
    DownloadCount,
    File,
    Namespace,
    Package,
    PackageTag,
    Version,
    row_id,
)
from hub.services import lineage, packages
from hub.services.access import visible_filter
from hub.services.accounts import Principal

#: The orders search results come in.
Sort = Literal["downloads", "recent", "name"]
SORTS: tuple[Sort, ...] = get_args(Sort)
#: What a package holds (``package.kind`` in its manifest, cvflow.manifest.KINDS).
Kind = Literal["model", "dataset"]
KINDS: tuple[Kind, ...] = get_args(Kind)
MAX_PER_PAGE = 100


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def package_summary(package: Package, tags: list[str]) -> dict[str, Any]:
    namespace, name = package.full_name.split("/", 1)
    return {
        "name": package.full_name,
        "namespace": namespace,
        "package": name,
        "private": package.private,
        "description": package.description,
        "kind": package.kind,
        "task": package.task,
        "tags": tags,
        "license": package.license,
        "framework": package.framework,
        "latest_version": package.latest_version,
        "downloads": package.downloads,
        "created_at": iso(package.created_at),
        "updated_at": iso(package.updated_at),
    }


def version_summary(v: Version) -> dict[str, Any]:
    return {
        "version": v.version,
        "prerelease": v.is_prerelease,
        "yanked": v.yanked,
        "yank_reason": v.yank_reason,
        "created_at": iso(v.created_at),
        "size": v.total_size,
        "file_count": v.file_count,
        "downloads": v.downloads,
    }


def package_document(session: Session, package: Package) -> dict[str, Any]:
    """The package with all its versions, newest first."""
    tags = list(session.exec(select(PackageTag.tag).where(PackageTag.package_id == package.id).order_by(PackageTag.tag)))
    versions = session.exec(
        select(Version).where(Version.package_id == package.id).order_by(col(Version.sort_key).desc())
    ).all()
    doc = package_summary(package, tags)
    doc["versions"] = [version_summary(v) for v in versions]
    # Versions of public packages fine-tuned from one of these (the same for every reader).
    doc["fine_tunes"] = lineage.public_fine_tune_count(session, package)
    return doc


def version_document(session: Session, package: Package, version: Version) -> dict[str, Any]:
    files = session.exec(select(File).where(File.version_id == version.id).order_by(File.path)).all()
    deps = session.exec(select(Dependency).where(Dependency.version_id == version.id).order_by(Dependency.package)).all()
    base = f"/api/v1/packages/{package.full_name}/versions/{quote(version.version)}/files/"
    doc = version_summary(version)
    manifest = json.loads(version.manifest)
    doc.update(
        {
            "package": package.full_name,
            "kind": manifest.get("kind") or "model",
            # A dataset's task, classes and per-split image and box counts (its [dataset] table).
            "dataset": manifest.get("dataset"),
            "manifest": manifest,
            # A fine-tune's [lineage] as written: base, dataset, trainer, metrics against the base's.
            "lineage": manifest.get("lineage"),
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "url": base + quote(f.path)} for f in files],
            "dependencies": {d.package: d.range for d in deps},
            "source": {"repository": version.source_repository, "commit": version.source_commit}
            if version.source_repository
            else None,
        }
    )
    return doc


def search(
    session: Session,
    principal: Principal,
    *,
    query: str = "",
    task: str | None = None,
    tag: str | None = None,
    namespace: str | None = None,
    framework: str | None = None,
    kind: str | None = None,
    sort: str = "downloads",
    page: int = 1,
    per_page: int = 20,
) -> dict[str, Any]:
    """Search packages: ``query`` matches names, descriptions and tags (a part of any, any case),
    among the packages ``principal`` may see. Raises ``invalid_field`` for an unknown sort or kind, or a bad page."""
    if sort not in SORTS:
        raise HubError("invalid_field", f"sort must be one of {', '.join(SORTS)}")
    if kind is not None and kind not in KINDS:
        raise HubError("invalid_field", f"kind must be one of {', '.join(KINDS)}")
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise HubError("invalid_field", f"page starts at 1 and per_page is 1 to {MAX_PER_PAGE}")
    where: list[sa.ColumnElement[bool]] = [visible_filter(session, principal)]
    if query:
        like = f"%{query.lower().replace('%', '').replace('_', '')}%"
        tagged = select(PackageTag.package_id).where(sa.func.lower(PackageTag.tag).like(like))
        where.append(sa.or_(sa.func.lower(Package.full_name).like(like), sa.func.lower(Package.description).like(like),
                            col(Package.id).in_(tagged)))
    if task:
        where.append(col(Package.task) == task)
    if tag:
        where.append(col(Package.id).in_(select(PackageTag.package_id).where(PackageTag.tag == tag)))
    if framework:
        where.append(col(Package.framework) == framework)
    if kind:
        where.append(col(Package.kind) == kind)
    if namespace:
        where.append(col(Package.namespace_id).in_(select(Namespace.id).where(Namespace.name == namespace)))
    orders: dict[str, tuple[sa.UnaryExpression[Any], ...]] = {
        "downloads": (col(Package.downloads).desc(), col(Package.full_name).asc()),
        "recent": (col(Package.updated_at).desc(), col(Package.full_name).asc()),
        "name": (col(Package.full_name).asc(),),
    }
    order = orders[sort]
    total = session.exec(select(sa.func.count()).select_from(Package).where(*where)).one()
    rows = session.exec(select(Package).where(*where).order_by(*order).offset((page - 1) * per_page).limit(per_page)).all()
    tags: dict[int, list[str]] = {}
    if rows:
        for pid, t in session.exec(
            select(PackageTag.package_id, PackageTag.tag).where(col(PackageTag.package_id).in_([p.id for p in rows])).order_by(PackageTag.tag)
        ):
            tags.setdefault(pid, []).append(t)
    return {
        "total": total,
        "page": page,
        "per_page": per_page,
        "results": [package_summary(p, tags.get(row_id(p), [])) for p in rows],
    }


def index(session: Session, principal: Principal, names: list[str]) -> dict[str, Any]:
    """Resolution metadata for many packages in one round trip: every version with its yank
    state and package dependencies. Packages the caller may not see are reported missing.

    Each entry is keyed by the name as asked; a look-alike spelling (``a_b`` for ``a-b``)
    gets the canonical package's entry, whose ``name`` is the canonical name.

    Only the needed columns are selected: resolution asks for hundreds of packages at once,
    and building full ORM objects for them costs several times the query itself."""
    asked = packages.find_packages(session, names)
    ids_seen = {id_ for id_, _ in asked.values()}
    visible = set(session.exec(
        select(Package.id).where(col(Package.id).in_(ids_seen), visible_filter(session, principal))
    ).all()) if ids_seen else set()
    full_names = {id_: full for id_, full in asked.values() if id_ in visible}
    entries: dict[int, dict[str, Any]] = {id_: {"name": full, "versions": []} for id_, full in full_names.items()}
    out: dict[str, Any] = {name: entries[id_] for name, (id_, _) in asked.items() if id_ in visible}
    if full_names:
        ids = list(full_names)
        deps: dict[int, dict[str, str]] = {}
        for version_id, package, range_ in session.exec(
            select(Dependency.version_id, Dependency.package, Dependency.range)
            .join(Version, col(Version.id) == Dependency.version_id)
            .where(col(Version.package_id).in_(ids))
        ):
            deps.setdefault(version_id, {})[package] = range_
        for version_id, package_id, version, prerelease, yanked in session.exec(
            select(Version.id, Version.package_id, Version.version, Version.is_prerelease, Version.yanked)  # type: ignore[call-overload]  # sqlmodel types select() for at most 4 columns
            .where(col(Version.package_id).in_(ids))
            .order_by(col(Version.sort_key).desc())
        ):
            entries[package_id]["versions"].append({
                "version": version, "prerelease": prerelease, "yanked": yanked,
                "dependencies": deps.get(version_id, {}),
            })
    return {"packages": out, "missing": sorted(set(names) - out.keys())}


def record_downloads(session: Session, counts: Mapping[tuple[int, int, date], int]) -> None:
    """Add batched download counts, ``{(version_id, package_id, day): n}``: per version, per
    package and per day (:class:`hub.context.DownloadCounter` collects them). Counts of a
    version deleted since are dropped."""
    live = set(session.exec(select(Version.id).where(col(Version.id).in_({v for v, _, _ in counts}))).all())
    per_version: dict[int, int] = {}
    per_package: dict[int, int] = {}
    per_day: dict[tuple[int, date], int] = {}
    for (version_id, package_id, day), n in counts.items():
        if version_id in live:
            per_version[version_id] = per_version.get(version_id, 0) + n
            per_package[package_id] = per_package.get(package_id, 0) + n
            per_day[version_id, day] = per_day.get((version_id, day), 0) + n
    # In id order, so two replicas' batches take row locks in the same order (no deadlock).
    for version_id, n in sorted(per_version.items()):
        session.exec(sa.update(Version).where(col(Version.id) == version_id).values(downloads=col(Version.downloads) + n))
    for package_id, n in sorted(per_package.items()):
        session.exec(sa.update(Package).where(col(Package.id) == package_id).values(downloads=col(Package.downloads) + n))
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for (version_id, day), n in sorted(per_day.items()):
        stmt = insert(DownloadCount).values(version_id=version_id, day=day, count=n)
        stmt = stmt.on_conflict_do_update(index_elements=["version_id", "day"],
                                          set_={"count": DownloadCount.count + stmt.excluded.count})
        session.exec(stmt)


def download_history(session: Session, package: Package, since: date) -> list[dict[str, Any]]:
    rows = session.exec(
        select(col(DownloadCount.day), sa.func.sum(DownloadCount.count))
        .join(Version, col(Version.id) == DownloadCount.version_id)
        .where(Version.package_id == package.id, DownloadCount.day >= since)
        .group_by(col(DownloadCount.day))
        .order_by(col(DownloadCount.day))
    )
    return [{"day": d.isoformat(), "downloads": int(n)} for d, n in rows]
