"""The Hugging Face Hub's read protocol over packages: revisions, commit ids and the documents.

A package is a model repository ``namespace/name``; a revision is one of its versions, ``main``
(the latest version that is not yanked: a release, or a pre-release when there is no release)
or a version's commit id. Versions are not git commits, so each gets a stable one: the sha1 of
``cvflow:<namespace>/<name>@<version>``, the same on every hub that holds the version. Every
file is described as Git LFS describes it (its sha256 is its ``ETag``), whether or not it is
large. Lookups and visibility are :mod:`hub.services.packages`' (so :mod:`hub.services.access`'s
rules). The routes are ``hub.api.hf``; the mapping is in docs/huggingface.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from hub.errors import HubError
from hub.models import File, Package, PackageTag, Version
from hub.services import catalog, packages
from hub.services.accounts import Principal

#: The revision that names the latest version.
MAIN = "main"
_COMMIT = re.compile(r"[0-9a-f]{40}")
#: Tasks as Hugging Face's ``pipeline_tag``; another task is its own.
PIPELINE_TAGS = {"classification": "image-classification", "detection": "object-detection",
                 "segmentation": "image-segmentation", "keypoints": "keypoint-detection"}
TASKS = {v: k for k, v in PIPELINE_TAGS.items()}


def commit_id(full_name: str, version: str) -> str:
    """The commit id of ``full_name@version``: stable, and the same on every hub."""
    return hashlib.sha1(f"cvflow:{full_name}@{version}".encode(), usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file of a blob: what ``oid`` (its git blob id) and ``pointerSize`` describe."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _git_oid(data: bytes, kind: str = "blob") -> str:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


def resolve(session: Session, who: Principal, namespace: str, name: str, revision: str) -> tuple[Package, Version]:
    """The package (if ``who`` may read it) and the version ``revision`` names.

    Raises ``package_not_found`` or ``version_not_found``."""
    package = packages.get_package(session, who, namespace, name)
    if revision == MAIN:
        if package.latest_version is None:
            raise HubError("version_not_found", f"{package.full_name} has no version that is not yanked")
        return package, packages.get_version(session, package, package.latest_version)
    if _COMMIT.fullmatch(revision):
        for version in session.exec(select(Version).where(Version.package_id == package.id)):
            if commit_id(package.full_name, version.version) == revision:
                return package, version
        raise HubError("version_not_found", f"{package.full_name} has no version with commit id {revision}")
    return package, packages.get_version(session, package, revision)


def files(session: Session, version: Version) -> Sequence[File]:
    return session.exec(select(File).where(File.version_id == version.id).order_by(col(File.path))).all()


def _entry(f: File) -> dict[str, Any]:
    pointer = lfs_pointer(f.sha256, f.size)
    return {"type": "file", "path": f.path, "size": f.size, "oid": _git_oid(pointer),
            "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": len(pointer)}}


def tree(files: Sequence[File], path: str, recursive: bool, commit: str) -> list[dict[str, Any]] | None:
    """The entries under the folder ``path`` ("" for the root), folders first; None when it is no folder."""
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    folders: set[str] = set()
    entries: list[dict[str, Any]] = []
    for f in files:
        if not f.path.startswith(prefix):
            continue
        parts = f.path[len(prefix):].split("/")
        depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
        folders.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        if recursive or len(parts) == 1:
            entries.append(_entry(f))
    if prefix and not entries and not folders:
        return None
    return [{"type": "directory", "path": d, "size": 0, "oid": _git_oid(f"{commit}:{d}".encode(), "tree")}
            for d in sorted(folders)] + entries


def _pipeline_tag(task: str | None) -> str | None:
    return PIPELINE_TAGS.get(task, task) if task else None


def _tags(package: dict[str, Any]) -> list[str]:
    task = _pipeline_tag(package["task"])
    return list(dict.fromkeys(["cvflow", *package["tags"], *([task] if task else [])]))


def model_summary(package: dict[str, Any]) -> dict[str, Any]:
    """A package summary (``catalog.package_summary``) as an entry of ``/api/models``."""
    latest = package["latest_version"]
    return {"_id": package["name"], "id": package["name"], "modelId": package["name"], "author": package["namespace"],
            "sha": commit_id(package["name"], latest) if latest else None, "private": package["private"],
            "gated": False, "disabled": False, "downloads": package["downloads"], "likes": 0,
            "library_name": "cvflow", "tags": _tags(package), "pipeline_tag": _pipeline_tag(package["task"]),
            "createdAt": package["created_at"], "lastModified": package["updated_at"]}


def model_document(session: Session, package: Package, version: Version) -> dict[str, Any]:
    """``/api/models/{id}[/revision/{revision}]``: the repository at one version, with its files."""
    tags = list(session.exec(select(PackageTag.tag).where(PackageTag.package_id == package.id)
                             .order_by(col(PackageTag.tag))))
    doc = model_summary(catalog.package_summary(package, tags))
    doc.update({"sha": commit_id(package.full_name, version.version), "lastModified": catalog.iso(version.created_at),
                "version": version.version, "yanked": version.yanked,
                "siblings": [{"rfilename": e["path"], "size": e["size"], "blobId": e["oid"],
                              "lfs": {"sha256": e["lfs"]["oid"], "size": e["size"],
                                      "pointerSize": e["lfs"]["pointerSize"]}}
                             for e in map(_entry, files(session, version))]})
    return doc


def refs(session: Session, package: Package) -> dict[str, Any]:
    """``main`` as the one branch, every version as a tag (yanked ones too: they stay pinnable)."""
    versions = session.exec(select(Version.version).where(Version.package_id == package.id)
                            .order_by(col(Version.sort_key).desc())).all()

    def ref(name: str, kind: str, version: str) -> dict[str, str]:
        return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": commit_id(package.full_name, version)}

    branches = [ref(MAIN, "heads", package.latest_version)] if package.latest_version else []
    return {"branches": branches, "converts": [], "tags": [ref(v, "tags", v) for v in versions], "pullRequests": []}


def find_file(session: Session, package: Package, version: Version, path: str) -> File:
    """The file at ``path``; raises ``file_not_found`` with the revision's commit id in its details."""
    file = session.exec(select(File).where(File.version_id == version.id, File.path == path)).first()
    if file is None:
        raise HubError("file_not_found", f"{package.full_name}@{version.version} has no file {path!r}",
                       details={"commit": commit_id(package.full_name, version.version)})
    return file
