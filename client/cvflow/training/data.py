"""The parent side of a fine-tune's data: a pulled dataset package, mapped and split for a trainer.

:func:`prepare` reads a dataset package in the canonical layout (``cvflow.datasets``), maps its
classes onto the trainer's by name, splits it, and writes what the trainer's process reads:

    work_dir/data.json   the samples (absolute image paths, sizes, labels as the model's class
                         names), the classes, task and layout: JSON, so the child reads it with
                         the standard library alone (``cvflow.training.runtime``)
    work_dir/data/       the same images in the trainer's ``layout`` (``train`` and ``val``
                         splits), hard-linked from the package where the file system allows
                         (else symlinked, else copied): a dataset of thousands of images is
                         not copied for every run

The split: the dataset's ``val`` split when it has images, else 20 % of the training images
chosen by a hash of each file name. The hash decides each image on its own, so an image keeps
its side as a project's dataset grows from one snapshot to the next (a fine-tune of a
fine-tune is not validated on images its base was trained on), and a resumed run sees the
same split. ``test`` splits are left out: they are held back for a person's own measurements.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvflow.datasets import FORMATS, Box, Dataset, Item, read_package
from cvflow.errors import DatasetError, TrainingError
from cvflow.manifest.training import Trainer

#: Share of the training images that become the validation split when the dataset has none.
VAL_SHARE = 0.2
#: Splits that are never trained on.
HELD_OUT_SPLITS = ("val", "test")
#: data.json's format; the child refuses one it does not know.
DATA_FORMAT = 1
MIN_TRAIN = 2
MIN_VAL = 1


@dataclass(frozen=True)
class PreparedData:
    """What :func:`prepare` wrote: the file the child reads, and what a caller shows or records."""

    data_json: Path  #: work_dir/data.json
    root: Path  #: work_dir/data: the images in ``layout``
    task: str
    layout: str
    classes: tuple[str, ...]  #: the model's classes, in output order
    dataset_classes: tuple[str, ...]
    train_images: int
    val_images: int
    #: "val": the dataset's own val split; "hash": 20 % of train, chosen by file name.
    val_source: str


def val_fraction(file_name: str) -> float:
    """Where ``file_name`` falls in [0, 1): below :data:`VAL_SHARE` it is a validation image."""
    digest = hashlib.sha256(file_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(ds: Dataset) -> tuple[list[Item], list[Item], str]:
    """``(train, val, val_source)``: the dataset's val split, else 20 % of train by file name.

    A small dataset whose hash puts no image on one side gets one moved (the image nearest the
    threshold), so 3 images make a run; fewer cannot (:func:`prepare` says so).
    """
    train = sorted((i for name, items in ds.splits.items() if name not in HELD_OUT_SPLITS for i in items),
                   key=lambda i: i.file_name)
    own_val = sorted(ds.splits.get("val", []), key=lambda i: i.file_name)
    if own_val:
        return train, own_val, "val"
    by_hash = sorted(train, key=lambda i: val_fraction(i.file_name))
    cut = sum(1 for i in by_hash if val_fraction(i.file_name) < VAL_SHARE)
    if len(by_hash) > MIN_TRAIN:
        cut = min(max(cut, MIN_VAL), len(by_hash) - MIN_TRAIN)
    val = sorted(by_hash[:cut], key=lambda i: i.file_name)
    rest = sorted(by_hash[cut:], key=lambda i: i.file_name)
    return rest, val, "hash"


def _mapped(ds: Dataset, trainer: Trainer) -> tuple[str, ...]:
    """The model's classes; TrainingError when the task differs or a dataset class has no match."""
    if ds.task != trainer.task:
        raise TrainingError(f"trainer {trainer.name!r} trains {trainer.task} models; the dataset is a "
                            f"{ds.task} dataset: choose a trainer for {ds.task}", code="no_trainer")
    fmt = FORMATS.get(trainer.layout)
    if fmt is None or (fmt.task != trainer.task and trainer.layout != "coco"):
        raise TrainingError(f"trainer {trainer.name!r} reads the {trainer.layout} layout, which cannot hold a "
                            f"{trainer.task} dataset", code="no_trainer")
    classes = tuple(trainer.classes) or tuple(ds.classes)
    missing = [c for c in ds.classes if c not in classes]
    if missing:
        raise TrainingError(f"{len(missing)} dataset class(es) have no model class of the same name: "
                            f"{', '.join(repr(c) for c in missing)} (the model has: "
                            f"{', '.join(repr(c) for c in classes)})", code="class_mismatch")
    return classes


def _remap(items: list[Item], ds: Dataset, classes: tuple[str, ...], placeholder: Path) -> list[Item]:
    """The items with class indexes into ``classes``, their bytes read from ``placeholder`` (see _write)."""
    index = {name: classes.index(name) for name in ds.classes}
    out: list[Item] = []
    for item in items:
        boxes = [Box(index[ds.classes[b.category]], b.x, b.y, b.w, b.h) for b in item.boxes]
        label = None if item.label is None else index[ds.classes[item.label]]
        out.append(Item(item.file_name, placeholder, item.width, item.height, boxes, label))
    return out


def _link(source: Path, target: Path) -> None:
    """``target`` becomes ``source``'s bytes: a hard link, else a symlink, else a copy."""
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        try:
            os.symlink(source.resolve(), tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _write(ds: Dataset, layout: str, out: Path, sources: dict[str, Path]) -> dict[str, Path]:
    """Write ``ds`` in ``layout`` under ``out`` with each image linked to its source; image name -> path.

    The exporters copy bytes; here they copy an empty placeholder (the annotations need only the
    sizes and labels), and each empty image file is then replaced by a link to the real one.
    """
    FORMATS[layout].write(ds, out)
    where: dict[str, Path] = {}
    for folder, _, files in os.walk(out):
        for name in files:
            path = Path(folder) / name
            if name in sources and path.stat().st_size == 0:
                _link(sources[name], path)
                where[name] = path
    missing = sorted(set(sources) - set(where))
    if missing:  # an exporter that renamed an image: the layout and data.json would disagree
        raise TrainingError(f"writing the {layout} layout lost images: {', '.join(missing[:5])}")
    return where


def _sample(item: Item, path: Path, classes: tuple[str, ...]) -> dict[str, Any]:
    sample: dict[str, Any] = {"image": str(path), "width": item.width, "height": item.height}
    if item.label is not None:
        sample["label"] = classes[item.label]
    else:
        sample["boxes"] = [{"label": classes[b.category], "x": b.x, "y": b.y, "w": b.w, "h": b.h}
                           for b in item.boxes]
    return sample


def prepare(dataset_dir: Path, trainer: Trainer, work_dir: Path) -> PreparedData:
    """Read the dataset package in ``dataset_dir``, map and split it for ``trainer``, write
    ``work_dir/data.json`` and ``work_dir/data/`` (replacing an earlier run's).

    Raises:
        TrainingError: ``no_trainer`` (the trainer is for another task, or reads a layout that
            cannot hold it), ``class_mismatch``, ``dataset_too_small``.
        ManifestError, DatasetError: ``dataset_dir`` is no valid dataset package.
    """
    try:
        _, ds = read_package(dataset_dir)
    except DatasetError as exc:
        if exc.problems and all(p.code == "empty_dataset" for p in exc.problems):
            raise TrainingError("the dataset has no images", code="dataset_too_small") from exc
        raise
    classes = _mapped(ds, trainer)
    train, val, val_source = split(ds)
    if len(train) < MIN_TRAIN or len(val) < MIN_VAL:
        total = sum(len(items) for items in ds.splits.values())
        raise TrainingError(f"the dataset is too small to train on: {len(train)} training and {len(val)} "
                            f"validation image(s) of {total} (at least {MIN_TRAIN} and {MIN_VAL} are needed)",
                            code="dataset_too_small")
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    root = work_dir / "data"
    tmp = work_dir / ".data.incomplete"
    placeholder = work_dir / ".empty-image"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        placeholder.write_bytes(b"")
        sources = {i.file_name: i.source for i in (*train, *val)}
        mapped = Dataset(ds.task, list(classes), {"train": _remap(train, ds, classes, placeholder),
                                                  "val": _remap(val, ds, classes, placeholder)})
        where = _write(mapped, trainer.layout, tmp, sources)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        placeholder.unlink(missing_ok=True)
    located = {name: root / path.relative_to(tmp) for name, path in where.items()}
    splits = {name: [_sample(i, located[i.file_name], classes) for i in items] for name, items in mapped.splits.items()}
    data = {"format": DATA_FORMAT, "task": ds.task, "layout": trainer.layout, "classes": list(classes),
            "dataset_classes": list(ds.classes), "root": str(root), "val_source": val_source, **splits}
    data_json = work_dir / "data.json"
    tmp_json = work_dir / ".data.json.tmp"
    tmp_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp_json, data_json)
    return PreparedData(data_json=data_json, root=root, task=ds.task, layout=trainer.layout, classes=classes,
                        dataset_classes=tuple(ds.classes), train_images=len(train), val_images=len(val),
                        val_source=val_source)
