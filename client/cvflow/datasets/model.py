"""A dataset in memory, between a format on disk and the canonical layout.

Every importer builds a :class:`Dataset` and every exporter reads one, so the checks that
matter (boxes inside their image, known classes, images that are images) live here once.
Boxes are ``[x, y, w, h]`` in pixels, as in COCO; classes are 0-based indexes into
``Dataset.classes`` (category id ``i + 1`` on disk).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from math import isfinite
from pathlib import Path
from typing import Any

from cvflow.datasets.images import IMAGE_SUFFIXES, ImageProblem, read_header
from cvflow.errors import DatasetError, Problem
from cvflow.manifest.dataset import class_name_problem
from cvflow.paths import windows_reserved
from cvflow.safeparse import TooDeepError, loads_json

#: Largest annotation file (JSON, XML or text) read whole.
MAX_ANNOTATION_BYTES = 512 * 1024 * 1024
MAX_XML_BYTES = 1024 * 1024
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")
# Box coordinates are floats; a box may touch the border, and rounding must not make it leave.
_EPS = 1e-3


@dataclass
class Box:
    category: int  #: 0-based index into Dataset.classes
    x: float
    y: float
    w: float
    h: float


@dataclass
class Item:
    """One image: its name in ``images/<split>/``, where its bytes are now, its size and labels."""

    file_name: str
    source: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    label: int | None = None  #: classification: 0-based class


@dataclass
class Dataset:
    task: str  #: "detection" or "classification"
    classes: list[str]
    splits: dict[str, list[Item]]

    def image_count(self) -> dict[str, int]:
        return {split: len(items) for split, items in self.splits.items()}

    def box_count(self) -> dict[str, int]:
        return {split: sum(len(i.boxes) for i in items) for split, items in self.splits.items()}


class Problems:
    """Collects problems up to a limit, so one bad file does not print a million lines."""

    def __init__(self, limit: int = 50) -> None:
        self.items: list[Problem] = []
        self.dropped = 0
        self.limit = limit

    def add(self, code: str, where: str, message: str) -> None:
        if len(self.items) < self.limit:
            self.items.append(Problem(code, where, message))
        else:
            self.dropped += 1

    def extend(self, problems: list[Problem]) -> None:
        for p in problems:
            self.add(p.code, p.field, p.message)

    def raise_if_any(self, message: str) -> None:
        """Raises DatasetError with every problem collected, if there is one."""
        if not self.items:
            return
        items = list(self.items)
        if self.dropped:
            items.append(Problem("too_many_problems", "", f"... and {self.dropped} more problems"))
        raise DatasetError(f"{message}: {len(self.items) + self.dropped} problem(s)", items)


def fail(code: str, where: str, message: str) -> DatasetError:
    """One problem as a DatasetError, for input that cannot be read any further."""
    return DatasetError(message, [Problem(code, where, message)])


def read_json(path: Path, where: str) -> Any:
    """A JSON file, bounded in size and depth.

    Raises:
        DatasetError: ``missing_file``, ``too_large`` or ``bad_json``.
    """
    try:
        if path.stat().st_size > MAX_ANNOTATION_BYTES:
            raise fail("too_large", where, f"{where} is over {MAX_ANNOTATION_BYTES} bytes")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise fail("missing_file", where, f"{where} does not exist") from exc
    except OSError as exc:
        raise fail("unreadable_file", where, f"{where}: {exc.strerror or exc}") from exc
    try:
        return loads_json(data)
    except (TooDeepError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise fail("bad_json", where, f"{where} is not valid JSON: {exc}") from exc


def image_size(path: Path, where: str, problems: Problems) -> tuple[int, int] | None:
    """An image's (width, height) from its header, or None after recording why it is no image."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        problems.add("not_an_image", where, f"{where}: only .jpg, .jpeg and .png images are taken")
        return None
    try:
        header = read_header(path, where=where)
    except ImageProblem as exc:
        problems.extend([exc.problem])
        return None
    return header.width, header.height


def safe_file_name(name: str, taken: set[str]) -> str:
    """A flat, portable file name for ``name`` whose stem no other image uses (stems name VOC
    and YOLO label files, so they are unique across the whole dataset)."""
    stem, dot, suffix = Path(name).name.rpartition(".")
    stem = _SAFE_NAME_RE.sub("_", stem if dot else name).strip("._") or "image"
    if windows_reserved(stem):  # CON.jpg and friends cannot be published (cvflow.paths)
        stem = f"{stem}_"
    suffix = suffix.lower() if dot else "jpg"
    candidate, n = stem, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem}-{n}"
    taken.add(candidate.casefold())
    return f"{candidate}.{suffix}"


def check_box(box: Box, item: Item, where: str, problems: Problems) -> bool:
    """Records why a box is unusable (outside the image, no area, unknown class); True if fine."""
    values = (box.x, box.y, box.w, box.h)
    try:  # one box of many thousands: four calls, not a generator per box
        finite = isfinite(box.x) and isfinite(box.y) and isfinite(box.w) and isfinite(box.h)
    except (TypeError, OverflowError):  # not a number, or an int too large for a float
        finite = False
    if not finite:
        problems.add("invalid_box", where, f"{where}: box coordinates must be finite numbers")
        return False
    if box.w <= 0 or box.h <= 0:
        problems.add("invalid_box", where, f"{where}: box {list(values)} has no area (width and height must be > 0)")
        return False
    if box.x < -_EPS or box.y < -_EPS or box.x + box.w > item.width + _EPS or box.y + box.h > item.height + _EPS:
        problems.add("coordinates_out_of_range", where,
                     f"{where}: box {list(values)} leaves the {item.width}x{item.height} image")
        return False
    return True


def check_classes(classes: list[str], where: str, problems: Problems) -> None:
    seen: set[str] = set()
    for i, name in enumerate(classes):
        why = class_name_problem(name)
        if why is not None:
            problems.add("invalid_class_name", f"{where}[{i}]", why)
        elif name.casefold() in seen:
            problems.add("duplicate_class", f"{where}[{i}]", f"class {name!r} is listed twice")
        seen.add(str(name).casefold())
    if not classes:
        problems.add("no_classes", where, "the dataset names no classes")


def check_dataset(ds: Dataset, problems: Problems) -> None:
    """Whole-dataset rules every importer and the canonical layout share."""
    check_classes(ds.classes, "classes", problems)
    stems: dict[str, str] = {}
    for split, items in ds.splits.items():
        for item in items:
            where = f"{split}/{item.file_name}"
            stem = Path(item.file_name).stem.casefold()
            if stem in stems:
                problems.add("duplicate_image", where, f"{where}: image name clashes with {stems[stem]}")
            stems[stem] = where
            if ds.task == "classification" and item.label is None:
                problems.add("missing_label", where, f"{where}: a classification image needs one label")
    if not any(ds.splits.values()):
        problems.add("empty_dataset", "", "the dataset has no images")


def dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
