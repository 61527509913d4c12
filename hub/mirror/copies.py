"""Writing copies of versions published on another hub: by ``mirror sync``, pull-through and bundle import.

A copy keeps the upstream's version string, manifest text and file digests byte for byte,
and is checked with the same rules as a publish. Versions are immutable, so a copy that
exists is never rewritten: an upstream that now shows other content for it is refused with
``upstream_changed``. Every copy is a change on this hub's own feed, so mirrors chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from cvflow.names import PackageName
from hub.errors import HubError
from hub.mirror import feed
from hub.models import File, HubPath, Namespace, Package, PackageOrigin, Version, YankEvent, row_id, utcnow
from hub.services import packages
from hub.services.blobs import HUB_PATHS, hub_holder
from hub.settings import Settings

VIA = HUB_PATHS


def file_list(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``path``/``size``/``sha256`` of each file of a version document, sorted by path."""
    files = doc.get("files")
    if not isinstance(files, list):
        raise HubError("upstream_invalid", f"{doc.get('package')}@{doc.get('version')}: the document lists no files")
    try:
        return sorted(({"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in files),
                      key=lambda f: str(f["path"]))
    except (KeyError, TypeError) as exc:
        raise HubError("upstream_invalid", f"{doc.get('package')}@{doc.get('version')}: a file entry is malformed"
                       ) from exc


def stored_files(session: Session, version: Version) -> list[dict[str, Any]]:
    rows = session.exec(select(File).where(File.version_id == version.id).order_by(File.path)).all()
    return [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in rows]


def check_unchanged(session: Session, version: Version, doc: Mapping[str, Any]) -> None:
    """Raise ``upstream_changed`` unless ``doc`` has exactly the stored version's files and manifest."""
    name = f"{doc.get('package')}@{version.version}"
    theirs = file_list(doc)
    ours = stored_files(session, version)
    toml = doc.get("manifest_toml")
    if theirs != ours or (toml is not None and toml != version.manifest_toml) or doc.get("version") != version.version:
        changed = sorted({f["path"] for f in theirs} ^ {f["path"] for f in ours}
                         | {a["path"] for a, b in zip(theirs, ours, strict=False) if a != b})
        raise HubError("upstream_changed", f"{name} differs from the copy taken earlier; the copy is kept",
                       details={"package": doc.get("package"), "version": version.version, "paths": changed[:20]})


def find_version(session: Session, package: Package, version: str) -> Version | None:
    try:
        return packages.get_version(session, package, version)
    except HubError:
        return None


def copy_version(session: Session, settings: Settings, doc: Mapping[str, Any], *, upstream: str,
                 via: HubPath) -> tuple[Version, bool]:
    """Store a copy of the version ``doc`` (a hub version document plus ``manifest_toml``),
    whose blobs are already stored; returns it and whether it is new.

    ``doc`` needs ``package``, ``version``, ``manifest_toml`` and ``files``; ``yanked``,
    ``yank_reason``, ``created_at``, ``source`` and ``private`` are kept when present.

    Raises ``invalid_*`` and ``manifest_mismatch`` for metadata the publish rules refuse, ``upstream_invalid`` for a
    document that contradicts itself, ``missing_blobs``, ``upstream_changed`` (a different
    copy exists) and ``name_shadows_upstream`` (a package published here has the name).
    """
    assert via in VIA
    name = str(doc.get("package") or "")
    try:
        pkg_name = PackageName.parse(name)
    except Exception as exc:
        raise HubError("upstream_invalid", f"not a package name: {name[:120]!r}") from exc
    toml = doc.get("manifest_toml")
    if not isinstance(toml, str):
        raise HubError("upstream_invalid", f"{name}@{doc.get('version')}: the document has no manifest text")
    files = file_list(doc)
    manifest, entries = packages.validate_release(settings, pkg_name, toml, files)
    if str(manifest.version) != doc.get("version"):
        raise HubError("upstream_invalid", f"{name}: the manifest says version {manifest.version}, "
                       f"the document {doc.get('version')!r}")

    package = session.exec(select(Package).where(Package.full_name == name)).first()
    if package is not None and session.get(PackageOrigin, package.id) is None:
        raise HubError("name_shadows_upstream", f"{name} was published on this hub; it is not replaced by a copy",
                       details={"package": name})
    if package is not None:
        existing = find_version(session, package, str(manifest.version))
        if existing is not None:
            check_unchanged(session, existing, {**doc, "files": files})
            set_yank(session, package, existing, bool(doc.get("yanked")), doc.get("yank_reason"))
            _touch_origin(session, package, upstream, via)
            return existing, False
    # The hub is the publisher of a copy: it may reference blobs it stored on this path
    # (fetched from the upstream, or read from the bundle) and blobs of public versions.
    packages.check_blobs(session, entries, holder=hub_holder(via), readable=None)
    if package is None:
        package = _create_package(session, pkg_name, private=bool(doc.get("private")))
    source = doc.get("source") or {}
    try:
        packages._check_source(source.get("repository"), source.get("commit"))
    except HubError:
        source = {}
    version = packages.add_version(session, package, manifest, toml, entries, published_by=None,
                                   source_repository=source.get("repository"), source_commit=source.get("commit"),
                                   created_at=parse_time(doc.get("created_at")))
    _touch_origin(session, package, upstream, via)
    feed.emit(session, "publish", name, version.version)
    set_yank(session, package, version, bool(doc.get("yanked")), doc.get("yank_reason"))
    return version, True


def set_yank(session: Session, package: Package, version: Version, yanked: bool, reason: Any) -> bool:
    """Bring a copy's yank state in line with its upstream's; True if it changed."""
    reason = (str(reason) if reason else "yanked upstream" if yanked else "unyanked upstream")[:500]
    if version.yanked == yanked and (not yanked or version.yank_reason == reason):
        return False
    version.yanked = yanked
    version.yank_reason = reason if yanked else None
    version.yanked_at = utcnow() if yanked else None
    session.add(version)
    session.add(YankEvent(version_id=row_id(version), action="yank" if yanked else "unyank", reason=reason))
    session.flush()
    packages.apply_latest(session, package)
    feed.emit(session, "yank" if yanked else "unyank", package.full_name, version.version,
              {"reason": reason} if yanked else None)
    return True


def _create_package(session: Session, pkg_name: PackageName, *, private: bool) -> Package:
    ns = session.exec(select(Namespace).where(Namespace.name == pkg_name.namespace)).first()
    if ns is None:
        # A namespace only copies live in: no user or organisation owns it here.
        ns = Namespace(name=pkg_name.namespace, kind="mirror")
        session.add(ns)
        session.flush()
    # The one creation path: it refuses a look-alike of a package here (``similar_name_exists``).
    package, _ = packages.create_package(session, ns, pkg_name, private=private)
    return package


def _touch_origin(session: Session, package: Package, upstream: str, via: HubPath) -> None:
    origin = session.get(PackageOrigin, package.id)
    if origin is None:
        origin = PackageOrigin(package_id=row_id(package), upstream=upstream, via=via)
    else:
        origin.upstream, origin.via, origin.synced_at = upstream, via, utcnow()
    session.add(origin)


def origin_json(session: Session, package: Package) -> dict[str, Any] | None:
    """Where a copied package came from, for its documents; None for packages published here."""
    origin = session.get(PackageOrigin, package.id)
    if origin is None:
        return None
    return {"upstream": origin.upstream, "via": origin.via,
            "synced_at": origin.synced_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
