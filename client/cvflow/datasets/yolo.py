"""YOLO (detection): one text file of normalised boxes per image.

On disk, as Ultralytics and datumaro's ``yolo`` importer lay it out::

    obj.names                    one class per line, line i is class id i
    data.yaml                    written on export for Ultralytics (names as a list)
    images/<split>/<file>
    labels/<split>/<stem>.txt    "class cx cy w h" per line, each in [0, 1] of the image size

On import the classes come from ``obj.names`` or ``classes.txt`` (a YAML parser is not
a client dependency, so ``data.yaml`` is only written). Without ``images/<split>/``
directories, ``images/`` is one ``train`` split. An image without a label file has no boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

from cvflow.datasets.model import (
    MAX_ANNOTATION_BYTES,
    Box,
    Dataset,
    Item,
    Problems,
    check_box,
    check_dataset,
    fail,
    image_size,
    safe_file_name,
)
from cvflow.manifest.dataset import SPLIT_RE
from cvflow.progress import SILENT, Transfer

_TOLERANCE = 1e-6  # normalised coordinates are printed with limited digits


def _classes(src: Path) -> list[str]:
    for name in ("obj.names", "classes.txt"):
        path = src / name
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise fail("bad_names", name, f"{name} cannot be read as UTF-8 text: {exc}") from exc
            return [line.strip() for line in text.splitlines() if line.strip()]
    raise fail("missing_file", "obj.names", f"{src}: no obj.names or classes.txt (one class name per line)")


def _split_dirs(src: Path) -> dict[str, Path]:
    images = src / "images"
    if not images.is_dir():
        raise fail("missing_file", "images", f"{src}: no images/ directory")
    dirs = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        return {"train": images}
    for d in dirs:
        if not SPLIT_RE.match(d.name):
            raise fail("invalid_split", f"images/{d.name}",
                       f"images/{d.name}: split name must match [a-z0-9_-]{{1,32}}")
    return {d.name: d for d in dirs}


def _read_labels(path: Path, where: str, item: Item, classes: list[str], problems: Problems) -> None:
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        problems.add("too_large", where, f"{where} is over {MAX_ANNOTATION_BYTES} bytes")
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        problems.add("bad_label_line", where, f"{where} is not UTF-8 text")
        return
    for n, line in enumerate(lines, start=1):
        at = f"{where}:{n}"
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 5:
                raise ValueError
            cls, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            problems.add("bad_label_line", at, f"{at}: expected 'class cx cy w h', got {line[:80]!r}")
            continue
        if not 0 <= cls < len(classes):
            problems.add("unknown_class", at, f"{at}: class id {cls} is not in 0..{len(classes) - 1}")
            continue
        cx, cy, w, h = values
        if not all(-_TOLERANCE <= v <= 1 + _TOLERANCE for v in values):
            problems.add("coordinates_out_of_range", at, f"{at}: coordinates must lie in [0, 1], got {fields[1:]}")
            continue
        x0, y0 = max(cx - w / 2, 0.0) * item.width, max(cy - h / 2, 0.0) * item.height
        x1, y1 = min(cx + w / 2, 1.0) * item.width, min(cy + h / 2, 1.0) * item.height
        if (cx - w / 2 < -_TOLERANCE or cy - h / 2 < -_TOLERANCE
                or cx + w / 2 > 1 + _TOLERANCE or cy + h / 2 > 1 + _TOLERANCE):
            problems.add("coordinates_out_of_range", at, f"{at}: the box leaves the image")
            continue
        box = Box(cls, x0, y0, x1 - x0, y1 - y0)
        if check_box(box, item, at, problems):
            item.boxes.append(box)


def import_yolo(src: Path, *, progress: Transfer = SILENT) -> Dataset:
    """Read a YOLO directory (see the module docstring for the layout).

    Raises:
        DatasetError: every problem found, each with its own code (``bad_label_line``,
            ``unknown_class``, ``coordinates_out_of_range``, ``missing_image``, ...).
    """
    classes = _classes(src)
    problems = Problems()
    taken: set[str] = set()
    splits: dict[str, list[Item]] = {}
    for split, images_dir in _split_dirs(src).items():
        labels_dir = src / "labels" / split if images_dir.name == split else src / "labels"
        files = sorted(p for p in images_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        progress.log(f"reading {split}: {len(files)} images")
        items: list[Item] = []
        stems: set[str] = set()
        for path in files:
            where = f"images/{images_dir.relative_to(src / 'images').as_posix()}/{path.name}".replace("/./", "/")
            size = image_size(path, where, problems)
            if size is None:
                continue
            item = Item(path.name, path, *size)
            stems.add(path.stem)
            label = labels_dir / f"{path.stem}.txt"
            if label.is_file():
                _read_labels(label, label.relative_to(src).as_posix(), item, classes, problems)
            item.file_name = safe_file_name(path.name, taken)
            items.append(item)
        if labels_dir.is_dir():
            for label in sorted(labels_dir.glob("*.txt")):
                if label.stem not in stems and not any(f.stem == label.stem for f in files):
                    where = label.relative_to(src).as_posix()
                    problems.add("missing_image", where,
                                 f"{where}: labels for an image that is not in {images_dir.name}/")
        splits[split] = items
    ds = Dataset("detection", classes, splits)
    check_dataset(ds, problems)
    problems.raise_if_any(f"the YOLO dataset in {src} cannot be imported")
    return ds


def _line(b: Box, item: Item) -> str:
    cx, cy = (b.x + b.w / 2) / item.width, (b.y + b.h / 2) / item.height
    # Fixed-point, never an exponent: datumaro's reader takes digits and dots only.
    return f"{b.category} {cx:.6f} {cy:.6f} {b.w / item.width:.6f} {b.h / item.height:.6f}\n"


def export_yolo(ds: Dataset, out: Path, *, progress: Transfer = SILENT) -> None:
    """Write obj.names, data.yaml, images/<split>/ and labels/<split>/ under ``out``."""
    from cvflow.datasets.layout import copy_images

    out.mkdir(parents=True, exist_ok=True)
    (out / "obj.names").write_text("".join(f"{c}\n" for c in ds.classes), encoding="utf-8")
    # JSON strings are YAML strings, so names with any character survive.
    yaml = ["path: .", *(f"{s}: images/{s}" for s in ds.splits), f"nc: {len(ds.classes)}",
            f"names: {json.dumps(ds.classes, ensure_ascii=False)}"]
    (out / "data.yaml").write_text("\n".join(yaml) + "\n", encoding="utf-8")
    for split, items in ds.splits.items():
        labels = out / "labels" / split
        labels.mkdir(parents=True, exist_ok=True)
        for item in items:
            (labels / f"{Path(item.file_name).stem}.txt").write_text(
                "".join(_line(b, item) for b in item.boxes), encoding="utf-8")
        copy_images(items, out / "images" / split, progress)
