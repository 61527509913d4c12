"""Adding images to a project: uploaded blobs become items, after a look at their headers.

The caller must be able to reference each blob as for a publish (:func:`hub.services.blobs.referable`):
a digest they do not hold answers ``missing_blobs``, exactly as one the hub lacks. The hub reads
only the image's header, from the store, a few kilobytes at a time
(:func:`cvflow.datasets.images.read_header_from`, the rule ``cvflow dataset check`` applies), so a
decompression bomb is refused on the size it declares and no pixel is ever decoded. The same
limits as a dataset's images hold, so every item can be published in a snapshot: PNG or JPEG, at
most 64 MiB and Pillow's 89.5 megapixels, and at most :data:`MAX_SIDE` pixels on a side.

An item's ``file_name`` becomes ``images/<split>/<file_name>`` in a snapshot; the names of a
project are flat, portable and have unique stems (case-insensitive), the canonical layout's
rules (docs/datasets.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from cvflow.datasets.images import MAX_IMAGE_BYTES, ImageHeader, ImageProblem, read_header_from
from cvflow.manifest.dataset import IMAGE_NAME_RE, SPLIT_RE
from cvflow.paths import windows_reserved
from hub.errors import HubError
from hub.models import AnnotationEvent, AnnotationItem, AnnotationProject, row_id
from hub.services.access import project_reader, reader, require_project_role
from hub.services.accounts import Principal
from hub.services.blobs import referable, user_holder
from hub.storage import BlobNotFound, BlobStore, StorageError

#: Most items one call adds.
MAX_ITEMS_PER_CALL = 1000
#: Longest side an image may have (a bomb can be long and thin and still under the pixel limit).
MAX_SIDE = 30_000
#: How far into a blob the header may lie (JPEG metadata segments come before the frame header).
MAX_HEADER_BYTES = 4 << 20
_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class NewItem:
    sha256: str
    file_name: str
    split: str = "train"


@dataclass(frozen=True)
class Added:
    added: int
    existing: int
    items: list[tuple[int, str]]  # (id, file_name), in the order asked


def stem(file_name: str) -> str:
    """What must be unique among a project's names: the name without its suffix, case folded."""
    return PurePosixPath(file_name).stem.lower()


def check_names(items: Sequence[NewItem]) -> list[NewItem]:
    """The names and splits of one call, each item once; raises ``invalid_files`` naming each problem."""
    problems: list[dict[str, str]] = []
    seen: dict[str, NewItem] = {}
    stems: dict[str, str] = {}
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not IMAGE_NAME_RE.match(item.file_name) or windows_reserved(item.file_name):
            problems.append({"field": f"{where}.file_name", "message": "a flat portable name: letters, digits, '.', "
                             "'_' and '-', ending in .png, .jpg or .jpeg, not a Windows device name"})
            continue
        if not SPLIT_RE.match(item.split):
            problems.append({"field": f"{where}.split", "message": "1 to 32 of a-z, 0-9, '_' and '-', "
                             "starting with a letter or digit"})
            continue
        before = seen.get(item.file_name)
        if before is not None and before != item:
            problems.append({"field": f"{where}.file_name", "message": f"{item.file_name} is named twice, "
                             "with another digest or split"})
            continue
        other = stems.setdefault(stem(item.file_name), item.file_name)
        if other != item.file_name:
            problems.append({"field": f"{where}.file_name", "message": f"{item.file_name} clashes with {other}: "
                             "image names must differ in more than their suffix and case"})
            continue
        seen[item.file_name] = item
    if problems:
        raise HubError("invalid_files", f"{len(problems)} problem(s) in the items",
                       details={"problems": problems[:50]})
    return list(seen.values())


def check_blobs(session: Session, who: Principal, project: AnnotationProject, items: Sequence[NewItem]) -> dict[str, int]:
    """The caller may manage the project and reference every blob: the blobs' sizes.

    Raises what :func:`hub.services.access.require_project_role` raises, ``missing_blobs``
    (not stored, or not the caller's to reference: the same answer) and ``invalid_image``
    for a blob over the size limit.
    """
    user = require_project_role(session, who, project, "manage")
    # After the role check: a digest is input, never a reason to answer differently to a stranger.
    wanted = {i.sha256 for i in items}
    found = referable(session, user_holder(user.id), wanted, readable=reader(session, who),
                      projects=project_reader(session, who), touch=True)
    missing = sorted(wanted - found.keys())
    if missing:
        raise HubError("missing_blobs", f"{len(missing)} image(s) have not been uploaded", details={"missing": missing})
    big = sorted(i.file_name for i in items if found[i.sha256] > MAX_IMAGE_BYTES)
    if big:
        raise HubError("invalid_image", f"images may be at most {MAX_IMAGE_BYTES} bytes",
                       details={"items": big[:50]})
    return found


class _BlobReader:
    """A forward-seeking reader over a stored blob, fetching a window at a time."""

    _WINDOW = 64 << 10

    def __init__(self, store: BlobStore, digest: str, size: int) -> None:
        self.store, self.digest, self.size = store, digest, min(size, MAX_HEADER_BYTES)
        self.pos = 0
        self.start, self.buffer = 0, b""

    def read(self, n: int = -1, /) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        if n <= 0:
            return b""
        end = self.pos + n
        if not (self.start <= self.pos and end <= self.start + len(self.buffer)):
            self.start = self.pos
            self.buffer = b"".join(self.store.open_range(self.digest, self.pos, min(self.size, self.pos + max(n, self._WINDOW))))
        out = self.buffer[self.pos - self.start : end - self.start]
        self.pos += len(out)
        return out

    def seek(self, offset: int, whence: int = 0, /) -> int:
        self.pos = max(0, offset if whence == 0 else self.pos + offset)
        return self.pos


def read_headers(store: BlobStore, items: Sequence[NewItem], sizes: dict[str, int]) -> dict[str, ImageHeader]:
    """Each blob's image header, read from the store (outside any database session).

    Raises ``invalid_image`` naming every item that is no image the hub accepts, and
    ``storage_unavailable`` when the store fails.
    """
    headers: dict[str, ImageHeader] = {}
    problems: list[dict[str, str]] = []
    for item in _unique(items):
        try:
            header = read_header_from(_BlobReader(store, item.sha256, sizes[item.sha256]), sizes[item.sha256],
                                      where=item.file_name)
            if max(header.width, header.height) > MAX_SIDE:
                problems.append({"item": item.file_name, "problem": "image_too_large",
                                 "message": f"{item.file_name}: {header.width}x{header.height} pixels, over "
                                            f"{MAX_SIDE} on a side"})
            headers[item.sha256] = header
        except ImageProblem as exc:
            problems.append({"item": item.file_name, "problem": exc.problem.code, "message": exc.problem.message})
        except BlobNotFound as exc:
            raise HubError("storage_unavailable", "an image is recorded but missing from storage") from exc
        except StorageError as exc:
            raise HubError("storage_unavailable", "the blob store could not be read") from exc
    if problems:
        raise HubError("invalid_image", f"{len(problems)} file(s) are not images the hub accepts: "
                       + problems[0]["message"], details={"problems": problems[:50]})
    return headers


def _unique(items: Sequence[NewItem]) -> Iterator[NewItem]:
    seen: set[str] = set()
    for item in items:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            yield item


def add_items(session: Session, who: Principal, project: AnnotationProject, items: Sequence[NewItem],
              headers: dict[str, ImageHeader], *, labels: Mapping[str, list[dict[str, Any]]] | None = None,
              note: str | None = None) -> Added:
    """Add the items (checked by :func:`check_names`, :func:`check_blobs` and :func:`read_headers`).

    A name the project has with the same digest is "existing" (adding is idempotent); with
    another digest, or a name whose stem another image has, it is ``invalid_files``. Each new
    item is recorded as an ``add`` event. The project's row is locked while names are
    compared, so two calls adding the same names wait for each other.

    ``labels`` (file_name -> labels checked by :func:`hub.services.annotation.labels.check`)
    become the current labels of the new items they name, which are then ``done``; existing
    items keep theirs. ``note`` says where the items came from, in their ``add`` events'
    ``model_version`` (:mod:`hub.services.annotation.from_dataset`).
    """
    user = require_project_role(session, who, project, "manage")  # again: a role may be gone by now
    session.exec(select(AnnotationProject.id).where(AnnotationProject.id == project.id).with_for_update()).one()
    variants = sorted({stem(i.file_name) + s for i in items for s in _SUFFIXES})
    have: dict[str, AnnotationItem] = {}
    for part in range(0, len(variants), 500):
        rows = session.exec(select(AnnotationItem).where(
            AnnotationItem.project_id == project.id,
            sa.func.lower(col(AnnotationItem.file_name)).in_(variants[part : part + 500]))).all()
        have.update((stem(r.file_name), r) for r in rows)
    problems: list[dict[str, str]] = []
    result: list[tuple[int, str] | AnnotationItem] = []
    new: dict[str, AnnotationItem] = {}
    new_stems: set[str] = set()
    existing = 0
    for i, item in enumerate(items):
        row = have.get(stem(item.file_name)) or new.get(item.file_name)
        if row is None and stem(item.file_name) in new_stems:
            problems.append({"field": f"items[{i}].file_name", "message": f"{item.file_name} clashes with another "
                             "name in this call"})
        elif row is None:
            header = headers[item.sha256]
            given = labels.get(item.file_name) if labels is not None else None
            new[item.file_name] = row = AnnotationItem(
                project_id=row_id(project), sha256=item.sha256, file_name=item.file_name, split=item.split,
                width=header.width, height=header.height)
            if given is not None:
                row.labels, row.status, row.updated_by = list(given), "done", user.id
            new_stems.add(stem(item.file_name))
            result.append(row)
        elif row.file_name != item.file_name:
            problems.append({"field": f"items[{i}].file_name",
                             "message": f"{item.file_name} clashes with the project's {row.file_name}"})
        elif row.sha256 != item.sha256 or row.split != item.split:
            problems.append({"field": f"items[{i}].file_name",
                             "message": f"the project has {item.file_name} already, with another image or split"})
        elif row.id is None:  # named twice in this call, the same both times
            result.append(row)
        else:
            existing += 1
            result.append((row_id(row), row.file_name))
    if problems:
        raise HubError("invalid_files", f"{len(problems)} problem(s) in the items", details={"problems": problems[:50]})
    session.add_all(new.values())
    session.flush()
    session.add_all(AnnotationEvent(project_id=row_id(project), item_id=row_id(row), user_id=user.id, action="add",
                                    revision=0, model_version=note, labels=row.labels if labels is not None else None)
                    for row in new.values())
    return Added(len(new), existing, [r if isinstance(r, tuple) else (row_id(r), r.file_name) for r in result])
