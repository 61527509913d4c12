"""The canonical layout of a dataset package (docs/datasets.md), read, checked and written::

    cvflow.toml                  kind = "dataset", with a [dataset] table
    README.md
    images/<split>/<file>        JPEG or PNG; flat, portable names with unique stems
    annotations/<split>.json     COCO JSON: bbox [x, y, w, h] in pixels, category ids 1..K
                                 in the order of dataset.classes; file_name relative to
                                 images/<split>/. Classification: one annotation per image,
                                 without bbox.

A package is written into ``<out>.incomplete`` and renamed into place when complete, so a
failed import never leaves a half-written package behind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w

from cvflow.datasets.coco import coco_document, parse_coco
from cvflow.datasets.model import Dataset, Item, Problems, check_dataset, fail, read_json
from cvflow.errors import DatasetError, ManifestError
from cvflow.manifest import MANIFEST_FILENAME, Manifest, load_package_dir, parse_manifest
from cvflow.manifest.dataset import ANNOTATIONS_DIR, IMAGES_DIR
from cvflow.progress import SILENT, Transfer

__all__ = ["copy_images", "json_text", "manifest_text", "read_package", "readme_text", "validate_package", "write_json",
           "write_package"]


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# Images up to this size are copied with one read and one write: for the small files datasets
# are made of, shutil.copyfile's extra stat calls cost about as much as the copy.
_SMALL_FILE = 1 << 20


def json_text(data: Any) -> str:
    """An annotation file's text, as the canonical layout writes it: a dict's non-empty lists
    get one element per line.

    Readable and diffable like an indented file, but every line comes from json's C encoder
    (``indent`` switches to its pure-Python one, about 10x slower on a COCO document).
    """
    if not isinstance(data, dict) or not data:
        return _encode(data) + "\n"
    fields = [f"{_encode(str(key))}:[\n" + ",\n".join(map(_encode, value)) + "\n]"
              if isinstance(value, list) and value else f"{_encode(str(key))}:{_encode(value)}"
              for key, value in data.items()]
    return "{\n" + ",\n".join(fields) + "\n}\n"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(data), encoding="utf-8")


def copy_images(items: Iterable[Item], directory: Path, progress: Transfer) -> None:
    """Copy each item's bytes to ``directory/<file_name>``, with a progress bar in bytes."""
    items = list(items)
    sizes = [item.source.stat().st_size for item in items]
    bar = progress.add(f"{directory.name}: {len(items)} images", total=sum(sizes))
    directory.mkdir(parents=True, exist_ok=True)
    made = {directory}
    for item, size in zip(items, sizes, strict=True):
        target = directory / item.file_name
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        if size > _SMALL_FILE:
            shutil.copyfile(item.source, target)
        else:
            target.write_bytes(item.source.read_bytes())
        progress.advance(bar, size)


def read_package(root: Path, *, progress: Transfer = SILENT) -> tuple[Manifest, Dataset]:
    """Read a dataset package in the canonical layout and check it against its manifest.

    Checks that counts match, that every annotation names an image and class that exist,
    that boxes lie inside their image with a positive size, and that every image is a PNG or
    JPEG whose header agrees with the size in the JSON (and is within the size limits).

    Raises:
        ManifestError: no manifest, an invalid one, or one that is not ``kind = "dataset"``.
        DatasetError: every problem found in the files, each with its own code.
    """
    manifest = load_package_dir(root)
    info = manifest.dataset
    if info is None:
        raise ManifestError(f"{root / MANIFEST_FILENAME} is not a dataset (kind = \"dataset\" in [package])")
    problems = Problems()
    splits: dict[str, list[Item]] = {}
    for split, expected in info.splits.items():
        where = f"{ANNOTATIONS_DIR}/{split}.json"
        progress.log(f"checking {where}")
        try:
            data = read_json(root / ANNOTATIONS_DIR / f"{split}.json", where)
        except DatasetError as exc:
            problems.extend(exc.problems)
            continue
        images_dir = root / IMAGES_DIR / split
        try:
            cats, items = parse_coco(data, where, images_dir, problems, task=info.task)
        except DatasetError as exc:
            problems.extend(exc.problems)
            continue
        want = {i + 1: name for i, name in enumerate(info.classes)}
        if cats != want:
            problems.add("class_mismatch", f"{where}.categories",
                         f"{where}: categories must be ids 1..{len(want)} named as dataset.classes, in order")
        for item in items:
            item.label = None if item.label is None else item.label - 1
            for b in item.boxes:
                b.category -= 1
            if "/" in item.file_name:
                problems.add("invalid_path", where,
                             f"{where}: {item.file_name} must be a file directly in images/{split}/")
        listed = {im.get("file_name") for im in data["images"]}
        on_disk = {p.name for p in images_dir.iterdir()} if images_dir.is_dir() else set()
        for extra in sorted(on_disk - listed):
            at = f"{IMAGES_DIR}/{split}/{extra}"
            problems.add("unlisted_image", at, f"{at} is not in {where}")
        if len(data["images"]) != expected:
            problems.add("count_mismatch", f"dataset.splits.{split}",
                         f"{where} lists {len(data['images'])} images, the manifest says {expected}")
        if info.annotations is not None and len(data.get("annotations", [])) != info.annotations.get(split):
            problems.add("count_mismatch", f"dataset.annotations.{split}",
                         f"{where} holds {len(data.get('annotations', []))} annotations, "
                         f"the manifest says {info.annotations.get(split)}")
        splits[split] = items
    ds = Dataset(info.task, list(info.classes), splits)
    check_dataset(ds, problems)
    problems.raise_if_any(f"the dataset in {root} is not valid")
    return manifest, ds


def validate_package(root: Path, *, progress: Transfer = SILENT) -> Manifest:
    """Check a dataset package (see :func:`read_package`); returns its manifest.

    Raises:
        ManifestError, DatasetError: as :func:`read_package`.
    """
    return read_package(root, progress=progress)[0]


def readme_text(ds: Dataset, name: str, description: str) -> str:
    """The README.md of a dataset package holding ``ds``: its splits, label counts and classes."""
    lines = [f"# {name}", "", description, "", f"A {ds.task} dataset in CVFlow's canonical layout (COCO JSON).", "",
             "| split | images | labels |", "| --- | --- | --- |"]
    boxes = ds.box_count()
    for split, items in ds.splits.items():
        labels = len(items) if ds.task == "classification" else boxes[split]
        lines.append(f"| {split} | {len(items)} | {labels} |")
    lines += ["", f"Classes ({len(ds.classes)}): " + ", ".join(f"`{c}`" for c in ds.classes), ""]
    return "\n".join(lines)


def manifest_text(ds: Dataset, *, name: str, version: str, description: str, license: str | None = None) -> str:
    """The ``cvflow.toml`` of a dataset package holding ``ds``.

    Raises:
        ManifestError: the name, version, description or classes break a manifest rule.
    """
    package: dict[str, Any] = {"name": name, "version": version, "description": description, "kind": "dataset",
                               "task": ds.task}
    if license:
        package["license"] = license
    table: dict[str, Any] = {"task": ds.task, "classes": list(ds.classes), "splits": ds.image_count()}
    if ds.task == "detection":
        table["annotations"] = ds.box_count()
    text = tomli_w.dumps({"package": package, "dataset": table})
    parse_manifest(text)
    return text


def write_package(ds: Dataset, out: Path, *, name: str, version: str, description: str | None = None,
                  license: str | None = None, progress: Transfer = SILENT) -> Manifest:
    """Write ``ds`` as a dataset package in directory ``out`` (which must not exist, or be empty).

    Raises:
        ManifestError: the name, version or classes break a manifest rule.
        DatasetError: ``out_exists`` when ``out`` holds files.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail("out_exists", str(out), f"{out} exists and is not empty; choose a new directory")
    description = description or f"{ds.task.capitalize()} dataset: {len(ds.classes)} classes"
    text = manifest_text(ds, name=name, version=version, description=description, license=license)
    tmp = out.with_name(f".{out.name}.incomplete")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        (tmp / MANIFEST_FILENAME).write_text(text, encoding="utf-8")
        (tmp / "README.md").write_text(readme_text(ds, name, description), encoding="utf-8")
        for split, items in ds.splits.items():
            copy_images(items, tmp / IMAGES_DIR / split, progress)
            write_json(tmp / ANNOTATIONS_DIR / f"{split}.json", coco_document(ds, split))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return parse_manifest(text, source=str(out / MANIFEST_FILENAME))
