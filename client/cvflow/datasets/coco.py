"""COCO JSON: the canonical layout's own label format, and the ``coco`` import/export format.

On disk for import and export (what pycocotools and datumaro read)::

    annotations/instances_<split>.json     (annotations/<split>.json is read too)
    images/<split>/<file_name>

Only boxes are carried: segmentation, keypoints and ``iscrowd`` regions are not (crowd
annotations are skipped on import, and counted in a log line).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from cvflow.datasets.model import (
    Box,
    Dataset,
    Item,
    Problems,
    check_box,
    check_dataset,
    fail,
    image_size,
    read_json,
    safe_file_name,
)
from cvflow.errors import ValidationError
from cvflow.manifest.dataset import SPLIT_RE
from cvflow.paths import validate_path
from cvflow.progress import SILENT, Transfer

_JSON_RE = re.compile(r"\A(?:instances_)?(.+)\.json\Z")


def _number(value: object) -> bool:
    # A JSON integer may have hundreds of digits, and float() of one past the largest float
    # raises OverflowError: such a value is no coordinate.
    return type(value) is float or (type(value) is int and abs(value) <= sys.float_info.max)


def parse_coco(data: Any, where: str, images_dir: Path, problems: Problems, *,
               task: str) -> tuple[dict[int, str], list[Item]]:
    """One COCO document: its categories (id -> name) and its images with their labels.

    ``Box.category`` and ``Item.label`` hold COCO category *ids* here; callers map them.
    Every image file is checked: it exists, is a PNG or JPEG within the size limits, and its
    header's size is the ``width`` and ``height`` the document states.
    """
    if not isinstance(data, dict):
        raise fail("bad_coco", where, f"{where}: a COCO document is a JSON object")
    lists: dict[str, list[dict[str, Any]]] = {}
    for key in ("images", "annotations", "categories"):
        value = data.get(key, [] if key == "annotations" else None)
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise fail("bad_coco", f"{where}.{key}", f"{where}: {key} must be a list of objects")
        lists[key] = value
    images, annotations, categories = lists["images"], lists["annotations"], lists["categories"]
    cats: dict[int, str] = {}
    for i, c in enumerate(categories):
        cid, name = c.get("id"), c.get("name")
        if type(cid) is not int or not isinstance(name, str) or cid in cats:
            problems.add("bad_coco", f"{where}.categories[{i}]",
                         f"{where}: category {i} needs a unique int id and a name")
        else:
            cats[cid] = name
    by_id: dict[int, Item] = {}
    declared: set[object] = set()  # image ids listed, whether or not their file passed
    for i, im in enumerate(images):
        at = f"{where}.images[{i}]"
        iid, name, w, h = im.get("id"), im.get("file_name"), im.get("width"), im.get("height")
        if type(iid) is not int or iid in declared or not isinstance(name, str):
            problems.add("bad_coco", at, f"{at}: an image needs a unique int id and a file_name")
            continue
        declared.add(iid)
        if type(w) is not int or type(h) is not int or w <= 0 or h <= 0:
            problems.add("bad_coco", at, f"{at}: width and height must be positive integers")
            continue
        try:
            validate_path(name)
        except ValidationError:
            problems.add("invalid_path", at, f"{at}: file_name {name!r} is not a relative path inside the images")
            continue
        path = images_dir / name
        if not path.is_file():
            problems.add("missing_image", at, f"{at}: {name} is not in {images_dir}")
            continue
        size = image_size(path, f"{images_dir.name}/{name}", problems)
        if size is None:
            continue
        if size != (w, h):
            problems.add("image_size_mismatch", at, f"{at}: {name} is {size[0]}x{size[1]}, the JSON says {w}x{h}")
            continue
        by_id[iid] = Item(name, path, w, h)
    for i, a in enumerate(annotations):
        at = f"{where}.annotations[{i}]"
        iid, cid = a.get("image_id"), a.get("category_id")
        item = by_id.get(iid) if type(iid) is int else None
        if item is None:
            if iid not in declared:  # a listed image that failed its checks is reported already
                problems.add("missing_image", at, f"{at}: image_id {iid!r} is not in images")
            continue
        if type(cid) is not int or cid not in cats:
            problems.add("unknown_class", at, f"{at}: category_id {cid!r} is not in categories")
            continue
        if task == "classification":
            if item.label is not None:
                problems.add("several_labels", at, f"{at}: {item.file_name} has more than one label")
            item.label = cid
            continue
        if a.get("iscrowd") == 1:
            continue
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            problems.add("invalid_box", at, f"{at}: bbox must be [x, y, width, height] numbers")
            continue
        box = Box(cid, *(float(v) for v in bbox))
        if check_box(box, item, at, problems):
            item.boxes.append(box)
    return cats, list(by_id.values())


def coco_document(ds: Dataset, split: str) -> dict[str, Any]:
    """The COCO document of one split: image ids from 1, category ids 1..K in class order."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, item in enumerate(ds.splits[split], start=1):
        images.append({"id": image_id, "file_name": item.file_name, "width": item.width, "height": item.height})
        if ds.task == "classification":
            if item.label is not None:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": item.label + 1})
            continue
        for b in item.boxes:
            bbox = [round(b.x, 3), round(b.y, 3), round(b.w, 3), round(b.h, 3)]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": b.category + 1,
                                "bbox": bbox, "area": round(b.w * b.h, 3), "iscrowd": 0, "segmentation": []})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(ds.classes)]}


def _find_splits(src: Path) -> dict[str, tuple[Path, Path]]:
    ann_dir = src / "annotations"
    if not ann_dir.is_dir():
        raise fail("missing_file", "annotations",
                   f"{src}: no annotations/ directory (expected annotations/instances_<split>.json)")
    found: dict[str, tuple[Path, Path]] = {}
    for path in sorted(ann_dir.glob("*.json")):
        m = _JSON_RE.match(path.name)
        if m is None:
            continue
        split = m.group(1).lower()
        if not SPLIT_RE.match(split):
            raise fail("invalid_split", path.name, f"{path.name}: split name {split!r} must match [a-z0-9_-]{{1,32}}")
        for images in (src / "images" / m.group(1), src / m.group(1), src / "images"):
            if images.is_dir():
                break
        found[split] = (path, images)
    if not found:
        raise fail("missing_file", "annotations", f"{ann_dir}: no COCO JSON files")
    return found


def import_coco(src: Path, *, progress: Transfer = SILENT) -> Dataset:
    """Read a COCO dataset directory; categories become classes in the order of their ids.

    Raises:
        DatasetError: every problem found, each with its own code.
    """
    problems = Problems()
    splits: dict[str, list[Item]] = {}
    names: dict[int, str] = {}
    crowd = 0
    raw: dict[str, tuple[dict[int, str], list[Item]]] = {}
    for split, (json_path, images_dir) in _find_splits(src).items():
        progress.log(f"reading {json_path.relative_to(src)}")
        data = read_json(json_path, json_path.name)
        cats, items = parse_coco(data, json_path.name, images_dir, problems, task="detection")
        crowd += sum(1 for a in data.get("annotations", []) if isinstance(a, dict) and a.get("iscrowd") == 1)
        for cid, name in cats.items():
            if names.setdefault(cid, name) != name:
                problems.add("class_mismatch", f"{json_path.name}.categories",
                             f"category {cid} is {names[cid]!r} in one split and {name!r} in another")
        raw[split] = (cats, items)
    index = {cid: i for i, cid in enumerate(sorted(names))}
    taken: set[str] = set()
    for split, (_, items) in raw.items():
        for item in items:
            item.file_name = safe_file_name(item.file_name, taken)
            for b in item.boxes:
                b.category = index[b.category]
        splits[split] = items
    if crowd:
        progress.log(f"skipped {crowd} crowd (iscrowd=1) annotations")
    ds = Dataset("detection", [names[cid] for cid in sorted(names)], splits)
    check_dataset(ds, problems)
    problems.raise_if_any(f"the COCO dataset in {src} cannot be imported")
    return ds


def export_coco(ds: Dataset, out: Path, *, progress: Transfer = SILENT) -> None:
    """Write ``annotations/instances_<split>.json`` and ``images/<split>/`` under ``out``."""
    from cvflow.datasets.layout import copy_images, write_json

    for split in ds.splits:
        write_json(out / "annotations" / f"instances_{split}.json", coco_document(ds, split))
        copy_images(ds.splits[split], out / "images" / split, progress)
