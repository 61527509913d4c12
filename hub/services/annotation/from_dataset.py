"""Items taken from a dataset version: its images become a project's items, its labels optionally theirs.

The caller must manage the project and read the dataset version (a private one they may not
read is ``package_not_found``, exactly as one that does not exist). The version must be a
dataset of the project's task whose classes the project has. Items reference the version's
image blobs (nothing is copied), so the project's members may then reference them too
(:func:`hub.services.access.project_reader`); the caller could read them already, and
a stranger still cannot.

Like adding uploaded images (:mod:`hub.services.annotation.images`), it happens in three steps
with no session held across the store: :func:`source` checks the caller, the version and its
blobs; :func:`read` reads its ``annotations/<split>.json`` files (at most
:data:`MAX_ANNOTATION_BYTES` each, parsed with the bounded parser and checked entry by entry:
the files are input from whoever published the version) and the images' headers, which must
agree with the sizes the COCO documents state; then :func:`hub.services.annotation.images.add_items`
adds the items, idempotently, with the dataset's labels when asked (the items are then ``done``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from cvflow.datasets.images import ImageHeader
from cvflow.manifest.dataset import ANNOTATIONS_DIR, IMAGES_DIR
from cvflow.safeparse import loads_json
from hub.errors import HubError
from hub.models import AnnotationProject, File
from hub.services import packages
from hub.services.access import require_project_role
from hub.services.accounts import Principal
from hub.services.annotation import images
from hub.services.annotation import labels as rules
from hub.storage import BlobNotFound, BlobStore, StorageError

#: Most images one call takes from a dataset version (take a large one a few splits at a time).
MAX_DATASET_ITEMS = 10_000
#: Largest annotation file read, as the website reads them (web/datasets.py).
MAX_ANNOTATION_BYTES = 64 << 20
#: The add events' ``model_version`` column holds at most this many characters.
_NOTE_LENGTH = 128


@dataclass(frozen=True)
class Source:
    """A dataset version's chosen splits, checked: what :func:`read` reads from the store."""

    package: str  #: the package's canonical name
    version: str
    task: str
    classes: list[str]
    annotations: dict[str, tuple[str, int]]  #: split -> (sha256, size) of annotations/<split>.json
    images: dict[str, str]  #: images/<split>/<file_name> -> sha256
    sizes: dict[str, int]  #: sha256 -> size, of the blobs the caller may reference

    @property
    def note(self) -> str:
        """What the items' ``add`` events say they came from."""
        return f"dataset {self.package}@{self.version}"[:_NOTE_LENGTH]


@dataclass(frozen=True)
class Taken:
    """What :func:`read` found: the items, their headers, and their labels when asked."""

    items: list[images.NewItem]
    headers: dict[str, ImageHeader]
    #: file_name -> checked labels, for each item the dataset labels; None: labels not taken.
    labels: dict[str, list[dict[str, Any]]] | None


def source(session: Session, who: Principal, project: AnnotationProject, package: str, version: str,
           splits: list[str] | None) -> Source:
    """Check the caller, the dataset version and its blobs.

    Raises what :func:`hub.services.access.require_project_role` raises, ``invalid_package_name``,
    ``package_not_found``
    (also for a private package the caller may not read), ``version_not_found``,
    ``invalid_project`` (not a dataset, another task, classes the project lacks),
    ``invalid_field`` (a split the dataset lacks, too many images), ``invalid_labels`` (a
    split without its annotation file) and what :func:`images.check_blobs` raises.
    """
    require_project_role(session, who, project, "manage")  # before the package: a stranger learns nothing
    if package.count("/") != 1:
        raise HubError("invalid_package_name", f"{package!r} is not namespace/name")
    parsed = packages.parse_name(*package.split("/", 1))  # invalid_package_name: the rules across both halves
    found = packages.get_package(session, who, parsed.namespace, parsed.name)
    row = packages.get_version(session, found, version)
    where = f"{found.full_name}@{row.version}"
    manifest = json.loads(row.manifest)
    if manifest.get("kind") != "dataset":
        raise HubError("invalid_project", f"{where} is a {manifest.get('kind') or 'model'} package, not a dataset: "
                                          "items are taken from a dataset version")
    info = manifest.get("dataset") or {}
    task, classes = str(info.get("task") or ""), [str(c) for c in info.get("classes") or []]
    declared: dict[str, int] = dict(info.get("splits") or {})
    if task != project.task:
        raise HubError("invalid_project", f"{where} is a {task} dataset and {project.full_name} a {project.task} "
                                          "project: the tasks must be the same")
    missing = [c for c in classes if c not in set(project.classes)]
    if missing:
        raise HubError("invalid_project", f"{project.full_name} lacks {len(missing)} of the dataset's classes: "
                       + ", ".join(missing[:20]) + ("" if len(missing) <= 20 else ", ...")
                       + "; add them to the project first (PATCH, the old classes first)",
                       details={"missing": missing[:1000]})
    chosen = list(declared) if splits is None else list(dict.fromkeys(splits))
    unknown = [s for s in chosen if s not in declared]
    if unknown:
        raise HubError("invalid_field", f"{where} has no split {', '.join(unknown)}; it has "
                                        f"{', '.join(declared) or 'none'}", details={"splits": list(declared)})
    files = {f.path: f for f in session.exec(select(File).where(File.version_id == row.id))}
    annotations: dict[str, tuple[str, int]] = {}
    found_images: dict[str, str] = {}
    for split in chosen:
        entry = files.get(f"{ANNOTATIONS_DIR}/{split}.json")
        if entry is None:
            raise HubError("invalid_labels", f"{where} has no {ANNOTATIONS_DIR}/{split}.json")
        annotations[split] = (entry.sha256, entry.size)
        prefix = f"{IMAGES_DIR}/{split}/"
        found_images.update((p, f.sha256) for p, f in files.items() if p.startswith(prefix))
    if len(found_images) > MAX_DATASET_ITEMS:
        raise HubError("invalid_field", f"{where} has {len(found_images)} images in those splits; at most "
                                        f"{MAX_DATASET_ITEMS} are taken in one call: name a few splits at a time",
                       details={"splits": {s: declared[s] for s in chosen}})
    # The caller reads the version, so its blobs are theirs to reference; checked all the same,
    # with the size limit and the mark that keeps them from gc.
    sizes = images.check_blobs(session, who, project, [images.NewItem(d, p) for p, d in found_images.items()])
    return Source(found.full_name, row.version, task, classes, annotations, found_images, sizes)


def read(store: BlobStore, src: Source, *, labels: bool) -> Taken:
    """The items the annotation files list, their headers, and their labels if ``labels``.

    Raises ``invalid_labels`` (an annotation file that is too large, not JSON, or an entry
    that breaks the layout: every problem, up to 50, in ``details.problems``),
    ``invalid_files`` (names a project cannot hold), ``invalid_image`` (an image that is not
    one the hub accepts, or whose header disagrees with its COCO size) and
    ``storage_unavailable``.
    """
    problems: list[dict[str, str]] = []
    items: list[images.NewItem] = []
    stated: dict[str, tuple[int, int]] = {}
    raw: dict[str, list[dict[str, Any]]] = {}
    for split, (digest, size) in src.annotations.items():
        where = f"{ANNOTATIONS_DIR}/{split}.json"
        doc = _load(store, digest, size, where)
        _split(doc, split, where, src, items, stated, raw if labels else None, problems)
    if problems:
        raise HubError("invalid_labels", f"{len(problems)} problem(s) in the dataset's annotation files: "
                       + problems[0]["message"], details={"problems": problems[:50]})
    items = images.check_names(items)
    headers = images.read_headers(store, items, {i.sha256: src.sizes[i.sha256] for i in items})
    for item in items:
        header = headers[item.sha256]
        if (header.width, header.height) != stated[item.file_name]:
            w, h = stated[item.file_name]
            _problem(problems, item.file_name, f"{item.split}/{item.file_name} is {header.width}x{header.height}, "
                                               f"its annotation file says {w}x{h}")
    if problems:
        raise HubError("invalid_image", f"{len(problems)} image(s) disagree with the annotation files: "
                       + problems[0]["message"], details={"problems": problems[:50]})
    if not labels:
        return Taken(items, headers, None)
    checked: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if item.file_name not in raw:
            continue
        w, h = stated[item.file_name]
        try:
            checked[item.file_name] = rules.check(raw[item.file_name], task=src.task, classes=src.classes,
                                                  width=w, height=h)
        except HubError as exc:
            for p in exc.details.get("problems") or [{"field": "labels", "message": exc.message}]:
                _problem(problems, f"{item.file_name}.{p['field']}", f"{item.split}/{item.file_name}: {p['message']}")
    if problems:
        raise HubError("invalid_labels", f"{len(problems)} problem(s) in the dataset's labels: "
                       + problems[0]["message"], details={"problems": problems[:50]})
    return Taken(items, headers, checked)


def _problem(problems: list[dict[str, str]], where: str, message: str) -> None:
    if len(problems) < 50:
        problems.append({"field": where, "message": message})


def _load(store: BlobStore, digest: str, size: int, where: str) -> Any:
    """An annotation file's JSON, read within :data:`MAX_ANNOTATION_BYTES` (the stored size and
    the stream both: a stream is never trusted) and parsed with the bounded parser."""
    too_large = HubError("invalid_labels", f"{where} is over the {MAX_ANNOTATION_BYTES >> 20} MiB the hub reads; "
                                           "take the images without it, or split the dataset")
    if size > MAX_ANNOTATION_BYTES:
        raise too_large
    data = bytearray()
    try:
        for chunk in store.open_range(digest):
            data += chunk
            if len(data) > MAX_ANNOTATION_BYTES:
                raise too_large
    except BlobNotFound as exc:
        raise HubError("storage_unavailable", f"{where} is recorded but missing from storage") from exc
    except StorageError as exc:
        raise HubError("storage_unavailable", "the blob store could not be read") from exc
    try:
        return loads_json(bytes(data))
    except ValueError as exc:  # not UTF-8, not JSON, or nested too deep
        raise HubError("invalid_labels", f"{where} is not a JSON document the hub can read") from exc


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _split(doc: Any, split: str, where: str, src: Source, items: list[images.NewItem],
           stated: dict[str, tuple[int, int]], raw: dict[str, list[dict[str, Any]]] | None,
           problems: list[dict[str, str]]) -> None:
    """One split's COCO document: its images as items (with the sizes it states) and, when
    ``raw`` is given, each image's labels in the project's shape (checked later)."""
    lists: dict[str, list[Any]] = {}
    for key in ("images", "annotations", "categories"):
        value = doc.get(key, [] if key == "annotations" else None) if isinstance(doc, dict) else None
        if not isinstance(value, list):
            _problem(problems, f"{where}.{key}", f"{where}: {key} must be a list (a COCO document)")
            return
        lists[key] = value
    by_id: dict[int, str] = {}
    for i, entry in enumerate(lists["images"]):
        at = f"{where}.images[{i}]"
        e = entry if isinstance(entry, dict) else {}
        iid, name, w, h = _int(e.get("id")), e.get("file_name"), _int(e.get("width")), _int(e.get("height"))
        if iid is None or iid in by_id or not isinstance(name, str):
            _problem(problems, at, f"{at}: an image needs a unique integer id and a file_name")
        elif w is None or h is None or w <= 0 or h <= 0:
            _problem(problems, at, f"{at}: width and height must be positive integers")
        elif f"{IMAGES_DIR}/{split}/{name}" not in src.images:
            _problem(problems, at, f"{at}: {IMAGES_DIR}/{split}/{name[:200]} is not a file of the version")
        elif name in stated:
            _problem(problems, at, f"{at}: {name} is listed twice")
        else:
            by_id[iid] = name
            stated[name] = (w, h)
            items.append(images.NewItem(src.images[f"{IMAGES_DIR}/{split}/{name}"], name, split))
            if raw is not None and src.task == "detection":
                raw[name] = []  # an image without boxes is labelled too: nothing in it
    if raw is None:
        return
    names: dict[int, str] = {}
    for i, c in enumerate(lists["categories"]):
        cid, name = (_int(c.get("id")), c.get("name")) if isinstance(c, dict) else (None, None)
        if cid is None or cid in names or not isinstance(name, str) or name not in src.classes:
            _problem(problems, f"{where}.categories[{i}]", f"{where}.categories[{i}]: a category needs a unique "
                                                           "integer id and the name of one of the dataset's classes")
        else:
            names[cid] = name
    for i, a in enumerate(lists["annotations"]):
        at = f"{where}.annotations[{i}]"
        a = a if isinstance(a, dict) else {}
        iid, cid = _int(a.get("image_id")), _int(a.get("category_id"))
        image = by_id.get(iid) if iid is not None else None
        if image is None or cid not in names:
            _problem(problems, at, f"{at}: needs the id of a listed image and of a category")
        elif src.task == "classification":
            if image in raw:
                _problem(problems, at, f"{at}: {image} has more than one label")
            raw[image] = [{"class": names[cid], "from": None}]
        elif a.get("iscrowd") != 1:  # crowd regions are not boxes, as the client's COCO import skips them
            raw[image].append({"class": names[cid], "bbox": a.get("bbox"), "from": None})
