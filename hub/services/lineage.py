"""Lineage of fine-tuned versions: checked on publish, recorded with every stored version, read
by the website (docs/training.md, "Lineage on the hub").

A manifest's ``[lineage]`` names a base model version and a dataset version. It is input, never
permission:

* On publish (:func:`check`) both must exist on this hub, be of the right kind, and be readable
  by the publisher; otherwise ``invalid_lineage``. A private version the publisher may not read
  gets the very answer an absent one gets, so the check is no probe for private packages.
* Every stored version (publish, indexer, mirror sync, pull-through, bundle import: all go
  through :func:`hub.services.packages.add_version`) gets its ``version_lineage`` row from
  :func:`record`, the ids filled for the versions this hub holds. A copy is never refused for a
  base it lacks; when that base arrives later, :func:`record` fills the ids of the rows naming it.
* Readers (:func:`lineage_view`, :func:`fine_tunes`, :func:`zoo_marks`) link a referenced
  version only for those who may read its package; to anyone else it is "a private package",
  and an absent one reads the same, so a page tells nothing of private packages either.

Naming a base grants nothing: blobs are still checked against what the publisher may read, and
no role or visibility follows from the row. Versions are immutable, and so is their lineage:
the row is written once with its version and only the ids of versions arriving later change.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from cvflow.errors import ValidationError
from cvflow.manifest import Manifest
from cvflow.manifest.training import parse_ref
from cvflow.names import PackageName, package_key
from cvflow.versions import Version as SemVer
from hub.errors import HubError
from hub.models import Package, Version, VersionLineage, row_id
from hub.services import packages
from hub.services.access import can_read, visible_filter
from hub.services.accounts import Principal

#: What a page says for a referenced version the reader may not see (private, or not on this hub).
PRIVATE = "a private package"
#: The most fine-tunes a base's page lists.
MAX_LISTED = 50
#: What the referenced kinds must be: ``[lineage]`` key -> the package kind it names.
_KINDS = {"base": "model", "dataset": "dataset"}


def _find(session: Session, ref: str) -> tuple[Package, Version] | None:
    """The package and version ``namespace/name@version`` names on this hub, whoever may read it.

    Any look-alike spelling of the name finds the package (as ``cvflow install`` does), and the
    version matches by precedence, so ``1.0.0+build`` names ``1.0.0``."""
    parts = parse_ref(ref)
    if parts is None:
        return None
    try:
        name = PackageName.parse(parts[0])
        precedence = SemVer.parse(parts[1]).precedence_str
    except ValidationError:
        return None
    package = packages.find_package(session, name.namespace, name.name)
    if package is None:
        return None
    version = session.exec(
        select(Version).where(Version.package_id == package.id, Version.precedence == precedence)
    ).first()
    return None if version is None else (package, version)


def _kind(version: Version) -> str:
    kind = json.loads(version.manifest).get("kind")
    return kind if isinstance(kind, str) else "model"


def check(session: Session, principal: Principal, manifest: Manifest) -> None:
    """Raise ``invalid_lineage`` unless the manifest's ``[lineage]`` (if any) names a model
    version and a dataset version that exist here and that ``principal`` may read.

    Called by publish after the role checks, before anything of the version is written; the
    message says which reference is wrong. An unreadable private version is answered exactly
    like a missing one."""
    lineage = manifest.lineage
    if lineage is None:
        return
    problems: list[dict[str, str]] = []
    if manifest.kind != "model":
        problems.append({"code": "invalid_lineage", "field": "lineage",
                         "message": f"only a model version records a lineage; this is a {manifest.kind}"})
    for key, ref in (("base", lineage.base), ("dataset", lineage.dataset)):
        wanted = _KINDS[key]
        found = _find(session, ref)
        if found is None or not can_read(session, principal, found[0]):
            message = f"lineage.{key}: no {wanted} version {ref} on this hub that you may read"
        elif (kind := _kind(found[1])) != wanted:
            message = f"lineage.{key}: {ref} is a {kind}, not a {wanted}"
        else:
            continue
        problems.append({"code": "invalid_lineage", "field": f"lineage.{key}", "message": message})
    if problems:
        raise HubError("invalid_lineage", "; ".join(p["message"] for p in problems), details={"problems": problems})


def record(session: Session, package: Package, version: Version, manifest: Manifest) -> None:
    """Write ``version``'s lineage row (when its manifest has one) and fill the ids of the rows
    that name ``version`` and were stored before it was (a mirror's copy of a fine-tune may
    arrive before its base).

    Called for every stored version, in its transaction. The ids are filled for versions this
    hub holds, readable or not: they are never shown without a read check."""
    lineage = manifest.lineage
    if lineage is not None:
        base = _find(session, lineage.base)
        dataset = _find(session, lineage.dataset)
        session.add(VersionLineage(
            version_id=row_id(version),
            base_package=lineage.base_name, base_version=lineage.base_version,
            base_version_id=None if base is None else row_id(base[1]),
            dataset_package=lineage.dataset_name, dataset_version=lineage.dataset_version,
            dataset_version_id=None if dataset is None else row_id(dataset[1]),
        ))
    _link_waiting(session, package, version)


def _key(column: Any) -> Any:
    """A referenced name's :func:`cvflow.names.package_key` in SQL: valid names have single
    separators, so mapping ``_`` and ``.`` to ``-`` and lowering the case is the normal form."""
    return sa.func.lower(sa.func.replace(sa.func.replace(column, "_", "-"), ".", "-"))


def _link_waiting(session: Session, package: Package, version: Version) -> None:
    """Fill the empty ids of the lineage rows that name ``version`` (as base or as dataset)."""
    key = package_key(package.full_name)
    for id_col, name_col, version_col in (
        (VersionLineage.base_version_id, VersionLineage.base_package, VersionLineage.base_version),
        (VersionLineage.dataset_version_id, VersionLineage.dataset_package, VersionLineage.dataset_version),
    ):
        waiting = session.exec(
            select(VersionLineage.version_id, version_col)
            .where(col(id_col).is_(None), _key(name_col) == key, VersionLineage.version_id != version.id)
        ).all()
        ids = [vid for vid, written in waiting if _precedence(written) == version.precedence]
        if ids:
            session.exec(sa.update(VersionLineage).where(col(VersionLineage.version_id).in_(ids))
                         .values({id_col: version.id}))


def _precedence(written: str) -> str | None:
    try:
        return SemVer.parse(written).precedence_str
    except ValidationError:
        return None


# --- reads for the website and the API ------------------------------------------------------


def _ref_view(session: Session, who: Principal, version_id: int | None) -> dict[str, Any]:
    """One reference for a page: its canonical name and link for readers of its package, else
    only :data:`PRIVATE` (an absent version reads the same as an unreadable one)."""
    if version_id is not None:
        row = session.get(Version, version_id)
        package = None if row is None else session.get(Package, row.package_id)
        if row is not None and package is not None and can_read(session, who, package):
            return {"visible": True, "label": f"{package.full_name}@{row.version}", "package": package.full_name,
                    "version": row.version, "url": version_url(package.full_name, row.version),
                    "metrics": json.loads(row.manifest).get("metrics") or {}}
    return {"visible": False, "label": PRIVATE, "package": None, "version": None, "url": None, "metrics": {}}


def version_url(full_name: str, version: str) -> str:
    """The website's page of one version."""
    return f"/{full_name}/v/{quote(version)}"


def lineage_view(session: Session, who: Principal, version: Version) -> dict[str, Any] | None:
    """What the version page shows of a fine-tune: base and dataset (links for their readers),
    trainer, hyperparameters, device, time, and each metric beside the base's; None when the
    version has no lineage."""
    row = session.get(VersionLineage, version.id)
    raw = json.loads(version.manifest).get("lineage")
    if row is None or not isinstance(raw, dict):
        return None
    metrics: dict[str, Any] = raw.get("metrics") or {}
    base_metrics: dict[str, Any] = raw.get("base_metrics") or {}
    return {
        "base": _ref_view(session, who, row.base_version_id),
        "dataset": _ref_view(session, who, row.dataset_version_id),
        "trainer": raw.get("trainer"), "hyperparameters": raw.get("hyperparameters") or {},
        "device": raw.get("device"), "seconds": raw.get("seconds"),
        "metrics": [{"name": k, "value": metrics.get(k), "base": base_metrics.get(k)}
                    for k in sorted(set(metrics) | set(base_metrics))],
    }


def fine_tunes(session: Session, who: Principal, package: Package, *, limit: int = MAX_LISTED) -> dict[str, Any]:
    """The versions, of any package ``who`` may read, whose lineage base is a version of
    ``package``: newest first, at most ``limit``, and how many there are in all."""
    base = aliased(Version)
    where = (base.package_id == package.id, visible_filter(session, who))
    query = (select(Package.full_name, Version.version, base.version, Version.manifest)
             .select_from(VersionLineage)
             .join(base, col(base.id) == VersionLineage.base_version_id)
             .join(Version, col(Version.id) == VersionLineage.version_id)
             .join(Package, col(Package.id) == Version.package_id)
             .where(*where))
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(Version.created_at).desc(), col(Version.id).desc()).limit(limit)).all()
    items = []
    for name, ver, base_ver, manifest in rows:
        lineage = json.loads(manifest).get("lineage") or {}
        items.append({"package": name, "version": ver, "url": version_url(name, ver), "base_version": base_ver,
                      "base_url": version_url(package.full_name, base_ver),
                      "metrics": lineage.get("metrics") or {}, "base_metrics": lineage.get("base_metrics") or {}})
    return {"total": int(total), "items": items}


def public_fine_tune_count(session: Session, package: Package) -> int:
    """How many versions of public packages name a version of ``package`` as their base: the
    package document's ``fine_tunes``. Public ones only, because that document is the same for
    every reader (and cached for anonymous ones); one query on the indexed base id."""
    base = aliased(Version)
    return int(session.exec(
        select(sa.func.count()).select_from(VersionLineage)
        .join(base, col(base.id) == VersionLineage.base_version_id)
        .join(Version, col(Version.id) == VersionLineage.version_id)
        .join(Package, col(Package.id) == Version.package_id)
        .where(base.package_id == package.id, col(Package.private).is_(False))
    ).one())


def zoo_marks(session: Session, who: Principal, version_ids: list[int]) -> dict[int, dict[str, Any]]:
    """For the model zoo: of ``version_ids``, each fine-tune's base as ``who`` may see it
    (``label``: ``name@version`` or :data:`PRIVATE`, and the base's manifest ``metrics`` for its
    readers, which lend a fine-tune its base's speed and memory)."""
    if not version_ids:
        return {}
    rows = session.exec(select(VersionLineage).where(col(VersionLineage.version_id).in_(version_ids))).all()
    marks = {}
    for row in rows:
        view = _ref_view(session, who, row.base_version_id)
        marks[row.version_id] = {"label": view["label"], "url": view["url"], "metrics": view["metrics"]}
    return marks

