"""Snapshots: a project's accepted labels published as a version of a dataset package.

The ``done`` and ``approved`` items become the canonical layout of docs/datasets.md, written
by the client's own code (:mod:`cvflow.datasets.layout`), so a snapshot is what
``cvflow dataset check`` accepts: ``cvflow.toml`` (``kind = "dataset"``), ``README.md``,
``annotations/<split>.json`` (COCO) and ``images/<split>/<file_name>``, whose bytes are the
items' blobs (nothing is copied). The new files are stored as the caller's uploads and the
version goes through :func:`hub.services.packages.publish` as the caller, so every publish rule
applies (scopes, roles, look-alike names, blobs the caller may reference: the items' images
count because the caller works in the project, :func:`hub.services.access.project_reader`).
A new package is private when the project is: a snapshot never makes private images public
unless its owner publishes them to a public package they chose.

A snapshot happens in three steps, none holding a session across the next: :func:`plan`
reads the items and writes the files' text, the handler stores the new files, and
:func:`publish` publishes and records the :class:`~hub.models.AnnotationSnapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session, col, select

from cvflow.datasets.coco import coco_document
from cvflow.datasets.layout import json_text, manifest_text, readme_text
from cvflow.datasets.model import Box, Dataset, Item
from cvflow.errors import CVFlowError
from cvflow.manifest import MANIFEST_FILENAME
from cvflow.manifest.dataset import ANNOTATIONS_DIR, IMAGES_DIR
from cvflow.versions import Version as SemVer
from hub.errors import HubError, from_validation
from hub.models import AnnotationItem, AnnotationProject, AnnotationSnapshot, Blob, Namespace, Version, row_id
from hub.services import packages
from hub.services.access import can_read, may_create_in, require_maintainer, require_project_owner
from hub.services.accounts import Principal
from hub.services.blobs import UploadService, user_holder
from hub.settings import Settings


@dataclass
class Plan:
    """What a snapshot will publish: the new files' bytes and the images already stored."""

    package: str
    version: str
    manifest: str
    texts: dict[str, bytes]  # path -> bytes to store
    images: list[dict[str, object]]  # {"path", "size", "sha256"}
    items: int
    labels: int
    #: A new package is as private as the project; an existing one keeps its visibility (None).
    private: bool | None = None
    stored: dict[str, str] = field(default_factory=dict)  # path -> sha256, once stored

    def files(self) -> list[dict[str, object]]:
        new = [{"path": p, "size": len(b), "sha256": self.stored[p]} for p, b in self.texts.items()]
        return [*new, *self.images]


def store(uploads: UploadService, who: Principal, plan: Plan) -> None:
    """Store a snapshot's new files as the caller's uploads, granted to them as for a publish.

    Called between :func:`plan` and :func:`publish`, outside any session: it writes to the store.
    """
    holder = user_holder(row_id(who.require_user()))
    for path, data in plan.texts.items():
        plan.stored[path] = uploads.put_small(data, grant_to=holder)


def next_version(session: Session, who: Principal, package_name: str) -> str:
    """The next minor version after the package's latest (pre-releases and yanked ones count
    too, as numbers are never reused); ``1.0.0`` for a package the caller cannot see or that
    does not exist yet."""
    package = packages.find_package(session, *package_name.split("/", 1))
    if package is None or not can_read(session, who, package):
        return "1.0.0"
    versions = [SemVer.parse(v) for v in session.exec(select(Version.version).where(Version.package_id == package.id))]
    if not versions:
        return "1.0.0"
    latest = max(versions, key=lambda v: v.key)
    return f"{latest.major}.{latest.minor + 1}.0"


def _may_publish(session: Session, who: Principal, package_name: str) -> bool:
    """The publish checks that need no files, made before anything is stored; publishing
    makes them again with the rest. Whether the package exists already."""
    ns_name, name = package_name.split("/", 1)
    user = who.require_user()
    assert who.scopes is not None
    if not who.scopes.can_publish(ns_name, name):
        raise HubError("insufficient_scope", f"the token may not publish to {package_name}")
    package = packages.find_package(session, ns_name, name)
    if package is not None:
        require_maintainer(session, who, package)
        return True
    ns = session.exec(select(Namespace).where(Namespace.name == ns_name)).first()
    if ns is None:
        raise HubError("namespace_not_found", f"no user or organisation is named {ns_name!r}")
    if not who.is_admin and not may_create_in(session, user, ns):
        raise HubError("forbidden", f"you may not create packages in {ns_name}")
    return False


def plan(session: Session, who: Principal, project: AnnotationProject, *, version: str | None,
         package: str | None) -> Plan:
    """Gather the accepted items and write the package's files.

    Raises what :func:`hub.services.access.require_project_owner` raises, ``nothing_to_snapshot``, ``invalid_package_name``, ``invalid_version``, the publish
    checks' ``insufficient_scope``/``forbidden``/``namespace_not_found``, and
    ``invalid_labels`` for a label whose class the project no longer has.
    """
    require_project_owner(session, who, project)
    name = package or project.dataset_package
    if name.count("/") != 1:
        raise HubError("invalid_package_name", f"{name!r} is not namespace/name")
    name = str(packages.parse_name(*name.split("/", 1)))
    exists = _may_publish(session, who, name)
    if version is not None:
        try:
            version = str(SemVer.parse(version))
        except CVFlowError as exc:
            raise from_validation(exc, "invalid_version") from exc
    version = version or next_version(session, who, name)

    rows = session.exec(
        select(AnnotationItem, Blob.size).join(Blob, col(Blob.sha256) == AnnotationItem.sha256)
        .where(AnnotationItem.project_id == project.id, col(AnnotationItem.status).in_(["done", "approved"]))
        .order_by(col(AnnotationItem.split), col(AnnotationItem.id))
    ).all()
    index = {c: i for i, c in enumerate(project.classes)}
    splits: dict[str, list[Item]] = {}
    images: list[dict[str, object]] = []
    labels = 0
    for row, size in rows:
        item = Item(row.file_name, Path(row.file_name), row.width, row.height)
        for label in row.labels:
            category = index.get(str(label.get("class")))
            if category is None:
                raise HubError("invalid_labels", f"item {row.id} ({row.file_name}) has a label of class "
                               f"{label.get('class')!r}, which the project no longer has", details={"item": row.id})
            if project.task == "classification":
                item.label = category
            else:
                x, y, w, h = (float(v) for v in label["bbox"])
                item.boxes.append(Box(category, x, y, w, h))
        if project.task == "classification" and item.label is None:
            continue  # saved without a class: not a labelled image
        labels += len(item.boxes) if project.task == "detection" else 1
        splits.setdefault(row.split, []).append(item)
        images.append({"path": f"{IMAGES_DIR}/{row.split}/{row.file_name}", "size": size, "sha256": row.sha256})
    if not images:
        raise HubError("nothing_to_snapshot", f"{project.full_name} has no item with accepted labels yet")

    ds = Dataset(project.task, list(project.classes), splits)
    description = f"Labels from the annotation project {project.full_name}: {len(images)} images, {labels} labels"
    try:
        manifest = manifest_text(ds, name=name, version=version, description=description)
    except CVFlowError as exc:
        raise from_validation(exc, "invalid_manifest") from exc
    texts = {MANIFEST_FILENAME: manifest.encode(), "README.md": readme_text(ds, name, description).encode()}
    for split in splits:
        texts[f"{ANNOTATIONS_DIR}/{split}.json"] = json_text(coco_document(ds, split)).encode()
    return Plan(name, version, manifest, texts, images, len(images), labels, None if exists else project.private)


def publish(session: Session, settings: Settings, who: Principal, project: AnnotationProject, snap: Plan) -> AnnotationSnapshot:
    """Publish the planned version (its new files stored) as the caller, and record it.

    Raises what :func:`hub.services.packages.publish` raises (``version_exists`` among them).
    """
    user = require_project_owner(session, who, project)
    ns, name = snap.package.split("/", 1)
    version = packages.publish(session, settings, who, ns, name, manifest_toml=snap.manifest, files=snap.files(),
                                private=snap.private)
    row = AnnotationSnapshot(project_id=row_id(project), package=snap.package, version=version.version,
                             items=snap.items, labels=snap.labels, created_by=user.id)
    session.add(row)
    session.flush()
    return row
