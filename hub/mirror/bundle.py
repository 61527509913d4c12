"""``cvflow-hub export`` and ``import``: move packages to a hub with no network path to this one.

The file format is the client's (:mod:`cvflow.bundle`), so a bundle made by ``cvflow bundle``
can seed a hub too. Import checks the whole manifest with the publish rules first, then
streams each blob the hub lacks through the store's verified upload path, and only when
every blob has checked out writes every version in one transaction. A tampered or damaged
bundle therefore leaves the catalogue as it was; blobs that verified before the damage
was found are unreferenced and ``gc`` removes them.

The hub is the publisher of an import (grant holder ``hub:bundle``): a blob the hub has
already is skipped only when an import stored it before or a public version has it; any other
is read from the bundle and verified, since the bundle, not the digest, proves the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import select

from cvflow.bundle import BundleError, BundleManifest, BundleReader, write_bundle
from cvflow.errors import CVFlowError
from cvflow.names import PackageName
from hub.context import HubContext
from hub.db import session_scope
from hub.errors import HubError
from hub.mirror import copies
from hub.mirror.filters import Filters
from hub.models import Package, Version
from hub.services import catalog, packages
from hub.services.blobs import hub_holder, referable


@dataclass
class BundleReport:
    path: str
    sha256: str = ""
    versions: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "versions": self.versions, "present": self.present,
                "blobs": self.blobs, "bytes": self.bytes}


def export_bundle(context: HubContext, out: Path, filters: Filters, *, include_private: bool = False,
                  source: str | None = None) -> BundleReport:
    """Write the packages and versions ``filters`` select to ``out``.

    Raises ``not_found`` when nothing is selected, ``storage_unavailable``.
    """
    docs: dict[str, list[dict[str, Any]]] = {}
    with session_scope(context.engine) as session:
        rows = session.exec(select(Package).order_by(Package.full_name)).all()
        for package in rows:
            if (package.private and not include_private) or not filters.wants(package.full_name):
                continue
            versions = session.exec(select(Version).where(Version.package_id == package.id)).all()
            by_name = {v.version: v for v in versions}
            chosen = filters.select(package.full_name, [{"version": v.version} for v in versions])
            for entry in chosen:
                version = by_name[str(entry["version"])]
                doc = catalog.version_document(session, package, version)
                doc["manifest_toml"] = version.manifest_toml
                docs.setdefault(package.full_name, []).append(doc)
    if not docs:
        raise HubError("not_found", "no package matches; nothing to export")
    manifest = BundleManifest.build(docs, source=source)
    store = context.store

    def open_blob(digest: str) -> Any:
        return store.open_range(digest, 0, manifest.blobs[digest])

    try:
        digest = write_bundle(Path(out), manifest, open_blob)
    except OSError as exc:
        raise HubError("storage_unavailable", f"writing {out}: {exc}") from exc
    return BundleReport(str(out), digest, [f"{n}@{d['version']}" for n, d in manifest.versions()],
                        blobs=len(manifest.blobs), bytes=sum(manifest.blobs.values()))


def import_bundle(context: HubContext, path: Path, *, sha256: str | None = None) -> BundleReport:
    """Load a bundle into the hub, verifying every digest; all of it or nothing of it.

    Raises ``bundle_invalid`` (a damaged, tampered or malformed bundle), ``invalid_*`` (a
    version the publish rules refuse), ``upstream_changed`` (a version this hub has with
    other content), ``name_shadows_upstream`` (a package published on this hub).
    """
    report = BundleReport(str(path))
    try:
        with BundleReader(Path(path), sha256=sha256) as reader:
            manifest = reader.manifest
            report.sha256 = sha256 or ""
            origin = manifest.source or f"bundle {Path(path).name}"
            _check(context, manifest)
            have = _stored(context, manifest.blobs)
            for digest, size, chunks in reader.blobs():
                if digest in have:
                    continue
                try:
                    context.uploads.put_stream(chunks, size, sha256=digest, grant_to=hub_holder("bundle"))
                except HubError as exc:
                    if exc.code in ("digest_mismatch", "size_mismatch"):
                        raise BundleError(f"blobs/{digest}: {exc.message}") from exc
                    raise
                report.blobs += 1
                report.bytes += size
    except BundleError as exc:
        raise HubError("bundle_invalid", exc.message) from exc
    with session_scope(context.engine, write=True) as session:
        for name, doc in manifest.versions():
            _, created = copies.copy_version(session, context.settings, {**doc, "package": name},
                                             upstream=origin, via="bundle")
            (report.versions if created else report.present).append(f"{name}@{doc['version']}")
    context.cache.clear()
    return report


def _check(context: HubContext, manifest: BundleManifest) -> None:
    """Every version passes the publish rules before a single byte is stored."""
    for name, doc in manifest.versions():
        if not isinstance(doc.get("manifest_toml"), str):
            raise BundleError(f"{name}@{doc.get('version')}: the bundle has no manifest text for it")
        try:
            packages.validate_release(context.settings, PackageName.parse(name), doc["manifest_toml"], doc["files"])
        except CVFlowError as exc:
            raise BundleError(f"{name}: {exc.message}") from exc
        except HubError as exc:
            raise BundleError(f"{name}@{doc.get('version')}: {exc.message} [{exc.code}]") from exc


def _stored(context: HubContext, blobs: dict[str, int]) -> set[str]:
    """The bundle's blobs an import may reference without reading them (same size too)."""
    with session_scope(context.engine) as session:
        have = referable(session, hub_holder("bundle"), blobs, readable=None)
    return {d for d, s in have.items() if blobs[d] == s}
