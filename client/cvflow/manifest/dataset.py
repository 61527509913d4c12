"""The ``[dataset]`` table of a ``kind = "dataset"`` manifest, and its file-list rules.

A dataset package states its task, its classes (in order: category id ``i + 1`` is
``classes[i]``), its splits with their image counts and, for detection, the number of boxes
in each split. The canonical layout these counts describe is in ``docs/datasets.md``:
``images/<split>/<file>`` and ``annotations/<split>.json``. The hub applies these checks at
publish time (it imports them), so an inconsistent dataset manifest is refused there too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cvflow.errors import Problem
from cvflow.paths import FileEntry

KINDS = ("model", "dataset")
DATASET_TASKS = ("detection", "classification")
MAX_CLASSES = 10_000
MAX_CLASS_NAME = 128
MAX_SPLITS = 16
MAX_COUNT = 10**9
SPLIT_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z")
#: An image's file name in ``images/<split>/`` and in an annotation project: flat and portable.
IMAGE_NAME_RE = re.compile(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]{0,123}\.(?:[pP][nN][gG]|[jJ][pP][eE]?[gG])\Z")
# A class name is shown on web pages and becomes a directory name in ImageFolder exports.
_FORBIDDEN_IN_CLASS = frozenset('<>&"`/\\')
IMAGES_DIR = "images"
ANNOTATIONS_DIR = "annotations"


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset manifest says about its contents."""

    task: str
    classes: tuple[str, ...]
    splits: dict[str, int] = field(hash=False)
    #: Boxes per split (detection); None when not stated (classification: one label per image).
    annotations: dict[str, int] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "classes": list(self.classes), "splits": dict(self.splits),
                "annotations": None if self.annotations is None else dict(self.annotations)}


def class_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a class name, or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return "a class name must be a non-empty string"
    if len(name) > MAX_CLASS_NAME:
        return f"a class name must be at most {MAX_CLASS_NAME} characters"
    if name != name.strip():
        return f"class name {name!r} must not start or end with a space"
    if name in (".", ".."):
        return f"class name {name!r} is not allowed"
    bad = sorted({ch for ch in name if ch in _FORBIDDEN_IN_CLASS or unicodedata.category(ch) in ("Cc", "Cf")})
    if bad:
        return f"class name {name!r} must not contain {''.join(bad)!r} (HTML, path or control characters)"
    return None


def _counts(raw: object, where: str, problems: list[Problem], *, names: str) -> dict[str, int] | None:
    if not isinstance(raw, dict) or not raw:
        problems.append(Problem("invalid_field", where, f"{where} must be a non-empty table like {{ train = 100 }}"))
        return None
    if len(raw) > MAX_SPLITS:
        problems.append(Problem("invalid_field", where, f"at most {MAX_SPLITS} {names}"))
        return None
    out: dict[str, int] = {}
    for key, value in raw.items():
        if not SPLIT_RE.match(key):
            problems.append(Problem("invalid_field", f"{where}.{key}",
                                    f"split name {key!r} must match [a-z0-9_-]{{1,32}}"))
        elif type(value) is not int or not 0 <= value <= MAX_COUNT:
            problems.append(Problem("invalid_field", f"{where}.{key}",
                                    f"{key} must be an integer from 0 to {MAX_COUNT}"))
        else:
            out[key] = value
    return out


def parse_dataset_table(raw: object) -> tuple[DatasetInfo | None, list[Problem]]:
    """Check a ``[dataset]`` table; returns the info (None if unusable) and every problem."""
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        return None, [Problem("invalid_field", "dataset", "[dataset] must be a table")]
    for key in raw:
        if key not in ("task", "classes", "splits", "annotations"):
            problems.append(Problem("unknown_key", f"dataset.{key}", f"unknown key {key!r}"))
    task = raw.get("task")
    if task not in DATASET_TASKS:
        problems.append(Problem("invalid_field", "dataset.task", f"task must be one of {', '.join(DATASET_TASKS)}"))
    classes = raw.get("classes")
    if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES:
        problems.append(Problem("invalid_field", "dataset.classes",
                                f"classes must be a list of 1 to {MAX_CLASSES} names"))
        classes = None
    else:
        seen: set[str] = set()
        for i, name in enumerate(classes):
            why = class_name_problem(name)
            if why is not None:
                problems.append(Problem("invalid_class_name", f"dataset.classes[{i}]", why))
            elif name.casefold() in seen:  # ImageFolder directories collide on case-insensitive disks
                problems.append(Problem("duplicate_class", f"dataset.classes[{i}]", f"class {name!r} is listed twice"))
            else:
                seen.add(name.casefold())
    splits = _counts(raw.get("splits"), "dataset.splits", problems, names="splits")
    annotations = None
    if "annotations" in raw:
        annotations = _counts(raw.get("annotations"), "dataset.annotations", problems, names="splits")
    if splits is not None and annotations is not None and set(annotations) != set(splits):
        problems.append(Problem("invalid_field", "dataset.annotations",
                                "dataset.annotations must name the same splits as dataset.splits"))
    if task == "detection" and "annotations" not in raw:
        problems.append(Problem("missing_field", "dataset.annotations",
                                "a detection dataset states its box count per split: annotations = { train = N }"))
    if task == "classification" and splits is not None and annotations is not None and annotations != splits:
        problems.append(Problem("invalid_field", "dataset.annotations",
                                "a classification dataset has one label per image: annotations must equal splits"))
    if problems or splits is None or classes is None or not isinstance(task, str):
        return None, problems
    return DatasetInfo(task, tuple(classes), splits, annotations), problems


def check_dataset_files(info: DatasetInfo, files: Sequence[FileEntry]) -> list[Problem]:
    """Problems between a dataset manifest and the package's file list (the hub can check this)."""
    problems: list[Problem] = []
    paths = {f.path for f in files}
    per_split: dict[str, int] = {}
    for path in paths:
        top, _, rest = path.partition("/")
        if top != IMAGES_DIR:
            continue
        split, _, name = rest.partition("/")
        if not name:
            problems.append(Problem("unexpected_file", path, f"{path}: images live in images/<split>/"))
        elif split not in info.splits:
            problems.append(Problem("unknown_split", path, f"{path}: split {split!r} is not in dataset.splits"))
        else:
            per_split[split] = per_split.get(split, 0) + 1
    for split, count in info.splits.items():
        ann = f"{ANNOTATIONS_DIR}/{split}.json"
        if ann not in paths:
            problems.append(Problem("missing_file", f"dataset.splits.{split}", f"{ann} is not in the package"))
        if per_split.get(split, 0) != count:
            problems.append(Problem("count_mismatch", f"dataset.splits.{split}",
                                    f"{IMAGES_DIR}/{split}/ holds {per_split.get(split, 0)} files, "
                                    f"the manifest says {count}"))
    return sorted(problems, key=lambda p: p.field)
