"""What a dataset version's page shows: its splits, a grid of thumbnails with their boxes, and a
histogram of its classes, read from the version's ``annotations/<split>.json`` (docs/datasets.md).

The annotation files are input from whoever published the version: the hub checks their file
list at publish, not their contents. So a file is read only up to :data:`MAX_ANNOTATION_BYTES`,
parsed with the bounded parser (``cvflow.safeparse``), and read entry by entry: an entry that is
not what the layout says is skipped and counted, and a file that cannot be read at all becomes a
note on the page, never an error. What is read from a file is kept in a small in-process LRU,
keyed by the file's digest and the version's image files, so a popular page parses once.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from html import escape
from typing import Any

from cvflow.datasets.formats import FORMATS
from cvflow.manifest.dataset import ANNOTATIONS_DIR, IMAGES_DIR
from cvflow.safeparse import loads_json
from hub.models import File
from hub.storage import BlobNotFound, StorageError
from web.charts import nice_ticks

#: Larger annotation files are not read for the page (they can still be downloaded).
MAX_ANNOTATION_BYTES = 64 << 20
#: Images shown per split.
THUMBNAILS = 24
#: Boxes drawn on one thumbnail; the rest are counted.
MAX_BOXES_PER_IMAGE = 200
#: Splits' previews kept in memory.
CACHE_SIZE = 32
#: How many colours the stylesheet has for boxes (``.box.c0`` ...).
COLOURS = 8

#: The content type each image extension is served with (the layout allows these only).
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass(frozen=True)
class Box:
    category: int  #: 0-based class index
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Thumb:
    path: str  #: the file in the version: ``images/<split>/<file_name>``
    file_name: str
    width: int
    height: int
    boxes: tuple[Box, ...]
    more_boxes: int  #: boxes past MAX_BOXES_PER_IMAGE, not drawn
    label: int | None  #: classification: the 0-based class


@dataclass(frozen=True)
class SplitPreview:
    """What one split's annotation file says, as far as it could be read."""

    thumbs: tuple[Thumb, ...] = ()
    counts: dict[int, int] = field(default_factory=dict)  #: 0-based class -> boxes (or labels)
    images: int = 0  #: images listed whose file the version has
    skipped: int = 0  #: entries that were not what the layout says
    note: str | None = None  #: why nothing (or not everything) could be read


_cache: OrderedDict[tuple[str, str, str], SplitPreview] = OrderedDict()
_lock = threading.Lock()


def _int(value: object) -> int | None:
    """``value`` if it is an int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _box(value: object) -> tuple[float, float, float, float] | None:
    """A COCO ``bbox`` ``[x, y, width, height]`` of finite numbers with a positive size, else None."""
    if not isinstance(value, list) or len(value) != 4:
        return None
    numbers = [float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers) or numbers[2] <= 0 or numbers[3] <= 0:
        return None
    return numbers[0], numbers[1], numbers[2], numbers[3]


def _image(value: object, prefix: str, image_paths: set[str]) -> tuple[int, str, int, int] | None:
    """A COCO image entry as ``(id, file_name, width, height)`` when its file is in the version, else None."""
    if not isinstance(value, dict):
        return None
    iid, name, w, h = (_int(value.get("id")), value.get("file_name"), _int(value.get("width")),
                       _int(value.get("height")))
    if iid is None or not isinstance(name, str) or prefix + name not in image_paths:
        return None
    if w is None or h is None or not (0 < w < 1 << 20 and 0 < h < 1 << 20):
        return None
    return iid, name, w, h


def parse_split(data: bytes, split: str, image_paths: set[str], classes: int) -> SplitPreview:
    """Read one split's COCO document, skipping (and counting) every entry that breaks the layout.

    ``image_paths`` are the version's files under ``images/<split>/``; an image whose file is
    not among them is skipped, so every thumbnail points at a file the version has.
    """
    where = f"{ANNOTATIONS_DIR}/{split}.json"
    try:
        doc = loads_json(data)
    except ValueError:  # not UTF-8, not JSON, or nested too deep
        return SplitPreview(note=f"{where} is not a JSON document this page can read.")
    images = doc.get("images") if isinstance(doc, dict) else None
    annotations = doc.get("annotations", []) if isinstance(doc, dict) else None
    if not isinstance(images, list) or not isinstance(annotations, list):
        return SplitPreview(note=f"{where} is not a COCO document (it needs lists of images and annotations).")
    prefix = f"{IMAGES_DIR}/{split}/"
    skipped = listed = 0
    shown: dict[int, tuple[str, int, int]] = {}
    for entry in images:
        image = _image(entry, prefix, image_paths)
        if image is None:
            skipped += 1
            continue
        listed += 1
        iid, name, w, h = image
        if len(shown) < THUMBNAILS and iid not in shown:
            shown[iid] = (name, w, h)
    boxes: dict[int, list[Box]] = {iid: [] for iid in shown}
    extra: Counter[int] = Counter()
    labels: dict[int, int] = {}
    counts: Counter[int] = Counter()
    for a in annotations:
        if not isinstance(a, dict):
            skipped += 1
            continue
        category, image_id = _int(a.get("category_id")), _int(a.get("image_id"))
        if category is None or not 1 <= category <= classes or image_id is None:
            skipped += 1
            continue
        if a.get("bbox") is None:  # a label for the whole image (classification)
            counts[category - 1] += 1
            if image_id in shown:
                labels.setdefault(image_id, category - 1)
            continue
        bbox = _box(a.get("bbox"))
        if bbox is None:
            skipped += 1
            continue
        counts[category - 1] += 1
        if image_id in boxes:
            if len(boxes[image_id]) < MAX_BOXES_PER_IMAGE:
                boxes[image_id].append(Box(category - 1, *bbox))
            else:
                extra[image_id] += 1
    thumbs = tuple(Thumb(prefix + name, name, w, h, tuple(boxes[iid]), extra[iid], labels.get(iid))
                   for iid, (name, w, h) in shown.items())
    note = (f"{skipped} entr{'y' if skipped == 1 else 'ies'} in {where} could not be read and "
            f"{'is' if skipped == 1 else 'are'} left out.") if skipped else None
    return SplitPreview(thumbs, dict(counts), listed, skipped, note)


def split_preview(store: Any, files: list[File], split: str, classes: int) -> SplitPreview:
    """The preview of ``split``, from the cache or read from the blob store within the limits."""
    where = f"{ANNOTATIONS_DIR}/{split}.json"
    entry = next((f for f in files if f.path == where), None)
    if entry is None:
        return SplitPreview(note=f"This version has no {where}.")
    if entry.size > MAX_ANNOTATION_BYTES:
        return SplitPreview(note=f"{where} is {entry.size / (1 << 20):.0f} MiB, more than the "
                                 f"{MAX_ANNOTATION_BYTES >> 20} MiB this page reads; pull the dataset to see it all.")
    prefix = f"{IMAGES_DIR}/{split}/"
    images = sorted((f.path, f.sha256) for f in files if f.path.startswith(prefix))
    key = (entry.sha256, split, hashlib.sha256(repr((classes, images)).encode()).hexdigest())
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    try:
        data = bytearray()
        for chunk in store.open_range(entry.sha256):
            data += chunk
            if len(data) > MAX_ANNOTATION_BYTES:  # the row's size is what was verified; never trust a stream
                return SplitPreview(note=f"{where} is larger than this page reads.")
    except (BlobNotFound, StorageError):
        return SplitPreview(note=f"{where} could not be read from storage just now.")  # not cached: may pass
    preview = parse_split(bytes(data), split, {p for p, _ in images}, classes)
    with _lock:
        _cache[key] = preview
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return preview


def dataset_context(store: Any, manifest: dict[str, Any], files: list[File], chosen: str | None,
                    command: str) -> dict[str, Any]:
    """Everything the package page shows of a dataset version; ``chosen`` is the ``?split=`` asked for."""
    info = manifest.get("dataset") or {}
    classes: list[str] = list(info.get("classes") or [])
    task = str(info.get("task") or "")
    declared: dict[str, int] = dict(info.get("splits") or {})
    box_counts: dict[str, int] = dict(info.get("annotations") or {})
    splits = [{"name": s, "images": n, "boxes": box_counts.get(s)} for s, n in declared.items()]
    split = chosen if chosen in declared else next(iter(declared), None)
    preview = split_preview(store, files, split, len(classes)) if split is not None else SplitPreview()
    formats = [f.name for f in FORMATS.values() if f.task == task]
    stem = command.split("/")[-1].split("@")[0]
    return {
        "task": task,
        "classes": classes,
        "splits": splits,
        "split": split,
        "preview": preview,
        "histogram": histogram_svg(classes, preview.counts, split or ""),
        "counts": [(name, preview.counts.get(i, 0)) for i, name in enumerate(classes)],
        "colours": COLOURS,
        "pull_line": f"cvflow pull -q {command}",
        "export_lines": [(f, f'cvflow dataset export {f} "$(cvflow pull -q {command})" ./{stem}-{f}') for f in formats],
        "annotation_files": [f for f in files if f.path.startswith(f"{ANNOTATIONS_DIR}/")],
    }


def histogram_svg(classes: list[str], counts: dict[int, int], split: str, *, width: int = 640) -> str:
    """Boxes (or labels) per class as horizontal bars, one row per class, the names escaped."""
    if not classes or not counts:
        return ""
    rows = classes[:200]  # a longer list is in the table beside it
    row_h, left, right, top = 18, 150, 48, 8
    height = top + row_h * len(rows) + 28
    peak = max(counts.values()) or 1
    ticks = [t for t in nice_ticks(0, peak) if t <= peak and t == int(t)]  # counts: whole numbers
    span = width - left - right

    def x(v: float) -> float:
        return left + span * v / peak

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="histogram-title" class="chart histogram">',
             f'<title id="histogram-title">How often each class occurs in {escape(split)}</title>']
    bottom = top + row_h * len(rows)
    for t in ticks:
        parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{bottom}" class="grid"/>'
                     f'<text x="{x(t):.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">{t:g}</text>')
    for i, name in enumerate(rows):
        n = counts.get(i, 0)
        y = top + i * row_h
        label = escape(name if len(name) <= 22 else name[:21] + "…")
        parts.append(
            f'<g class="class-row"><text x="{left - 6}" y="{y + 13}" class="name" text-anchor="end">{label}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{span * n / peak:.1f}" height="{row_h - 6}" '
            f'class="bar c{i % COLOURS}" data-count="{n}"><title>{escape(name)}: {n}</title></rect>'
            f'<text x="{x(n) + 4:.1f}" y="{y + 13}" class="tick">{n}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
