"""Canvases of handwritten digits with their boxes, in a style, from a seed: the training and demo data.

A canvas is a grey image (``CANVAS`` pixels square by default) holding 1-4 digits from
scikit-learn's bundled 8x8 digits, each scaled up, placed without overlap, and boxed tightly
around its ink. A ``Style`` says how it looks; ``BASE`` is what the shipped model was trained
on, ``SHIFTED`` is the look of the demo annotation project (light digits of more sizes on an
unevenly lit grey board, with stray strokes), on which the model is useful but imperfect until it is
fine-tuned on a few annotated images.

The same ``(style, seed, count, digits)`` always gives the same canvases. scikit-learn is
imported only to build canvases; the solver never needs it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 96
CLASSES = tuple(str(d) for d in range(10))  # class names, in category order
SPLIT_SEED = 0  # the digits split (20 % held out, stratified), as demo/digits-lenet's


@dataclass(frozen=True)
class Box:
    """A digit's box in canvas pixels, COCO-style ``[x, y, w, h]``; ``label`` indexes ``CLASSES``."""

    label: int
    x: float
    y: float
    w: float
    h: float

    def xywh(self) -> list[float]:
        return [self.x, self.y, self.w, self.h]


@dataclass
class Sample:
    """One image and its boxes. ``image``: (H, W) ``uint8``, grey."""

    image: np.ndarray
    boxes: list[Box] = field(default_factory=list)

    def png(self) -> bytes:
        """The image as an RGB PNG (grey in three channels, as a camera or scanner would give)."""
        out = io.BytesIO()
        Image.fromarray(self.image, "L").convert("RGB").save(out, "PNG", optimize=True)
        return out.getvalue()


@dataclass(frozen=True)
class Style:
    """How a canvas looks. Ranges are ``(low, high)``, drawn uniformly per canvas or per digit."""

    name: str
    background: tuple[int, int]   # paper grey level
    ink: tuple[int, int]          # ink grey level (above the paper: light ink; below: dark ink)
    sizes: tuple[int, int]        # digit height in pixels
    noise: float = 3.0            # grey-level standard deviation of sensor noise
    gradient: int = 0             # the most the lighting changes across the canvas
    strokes: tuple[int, int] = (0, 0)  # stray pen strokes (lines and arcs), in the ink's colour
    count: tuple[int, int] = (1, 4)    # digits per canvas


BASE = Style("base", background=(0, 40), ink=(190, 255), sizes=(14, 22))
SHIFTED = Style("shifted", background=(50, 90), ink=(180, 240), sizes=(14, 28), noise=6.0, gradient=40,
                strokes=(2, 4))
STYLES = {s.name: s for s in (BASE, SHIFTED)}


@cache
def digit_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits, split 80/20 (stratified, seed 0): ``{"train"|"test": (images 0..1, labels)}``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train, test = train_test_split(index, test_size=0.2, random_state=SPLIT_SEED, stratify=digits.target)
    images = digits.images.astype(np.float32) / 16.0
    return {"train": (images[train], digits.target[train]), "test": (images[test], digits.target[test])}


def canvases(style: Style, seed: int, count: int, *, digits: Literal["train", "test"] = "train",
             size: int = CANVAS) -> list[Sample]:
    """``count`` canvases of ``style``, the same for the same arguments. ``digits="test"`` draws only
    from the held-out digits, for evaluation and the demo."""
    images, labels = digit_split()[digits]
    rng = np.random.default_rng([seed, _style_key(style)])
    return [_canvas(style, rng, images, labels, size) for _ in range(count)]


def _style_key(style: Style) -> int:
    return sum(ord(c) * 31**i for i, c in enumerate(style.name)) % (2**31)


def _canvas(style: Style, rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, size: int) -> Sample:
    paper = float(rng.uniform(*style.background))
    ink = float(rng.uniform(*style.ink))
    grey = np.full((size, size), paper, dtype=np.float32)
    if style.gradient:
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:size, 0:size] / size - 0.5
        grey += style.gradient * (xs * math.cos(angle) + ys * math.sin(angle))
    alpha = np.zeros((size, size), dtype=np.float32)  # how much ink covers each pixel
    boxes: list[Box] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(style.count[0], style.count[1] + 1))):
        placed = _place(style, rng, images, labels, size, taken)
        if placed is None:
            continue
        glyph, top, left, label = placed
        gh, gw = glyph.shape
        region = alpha[top:top + gh, left:left + gw]
        np.maximum(region, glyph, out=region)
        ys, xs = np.nonzero(glyph > 0.25)
        boxes.append(Box(int(label), float(left + xs.min()), float(top + ys.min()),
                         float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)))
    strokes = _strokes(style, rng, size)
    np.maximum(alpha, strokes, out=alpha)
    grey = grey * (1 - alpha) + ink * alpha
    grey += rng.normal(0, style.noise, grey.shape)
    return Sample(np.clip(np.rint(grey), 0, 255).astype(np.uint8), boxes)


def _place(style: Style, rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, size: int,
           taken: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, int, int, int] | None:
    """A scaled digit at a free spot (its cell 2 px from any other), or None after 30 tries."""
    i = int(rng.integers(len(labels)))
    h = int(rng.integers(style.sizes[0], style.sizes[1] + 1))
    w = max(6, round(h * rng.uniform(0.75, 1.0)))
    glyph = np.asarray(Image.fromarray(images[i]).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    glyph = np.clip(glyph / max(float(glyph.max()), 1e-6), 0, 1)
    for _ in range(30):
        top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        if all(top + h + 2 <= t or t + th + 2 <= top or left + w + 2 <= lf or lf + tw + 2 <= left
               for t, lf, th, tw in taken):
            taken.append((top, left, h, w))
            return glyph, top, left, int(labels[i])
    return None


def _strokes(style: Style, rng: np.random.Generator, size: int) -> np.ndarray:
    """Stray pen strokes: straight lines and arcs, as ink coverage in [0, 1]."""
    n = int(rng.integers(style.strokes[0], style.strokes[1] + 1)) if style.strokes[1] else 0
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(n):
        width = int(rng.integers(1, 3))
        if rng.random() < 0.5:
            x0, y0 = rng.uniform(0, size, 2)
            length, angle = rng.uniform(10, 40), rng.uniform(0, 2 * math.pi)
            draw.line([(x0, y0), (x0 + length * math.cos(angle), y0 + length * math.sin(angle))], fill=255,
                      width=width)
        else:
            r = rng.uniform(4, 12)
            cx, cy = rng.uniform(r, size - r, 2)
            start = rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(90, 300), fill=255, width=width)
    return np.asarray(layer, dtype=np.float32) / 255.0


def coco(samples: Sequence[Sample], file_names: Sequence[str]) -> dict[str, object]:
    """COCO ground truth for ``samples`` saved under ``file_names``: categories 1..10 are "0".."9"."""
    images, annotations = [], []
    for image_id, (sample, name) in enumerate(zip(samples, file_names, strict=True), start=1):
        height, width = sample.image.shape
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for box in sample.boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": box.label + 1,
                                "bbox": box.xywh(), "area": box.w * box.h, "iscrowd": 0})
    categories = [{"id": i + 1, "name": name, "supercategory": "digit"} for i, name in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def from_coco(document: dict[str, Any], read: dict[str, np.ndarray]) -> list[Sample]:
    """Samples from COCO ground truth (categories named "0".."9") and the grey images by file name,
    e.g. an annotation project's snapshot, for fine-tuning."""
    names = {int(c["id"]): CLASSES.index(str(c["name"])) for c in document["categories"]}
    by_image: dict[int, list[Box]] = {}
    for a in document["annotations"]:
        x, y, w, h = (float(v) for v in a["bbox"])
        by_image.setdefault(int(a["image_id"]), []).append(Box(names[int(a["category_id"])], x, y, w, h))
    return [Sample(read[str(im["file_name"])], by_image.get(int(im["id"]), []))
            for im in document["images"]]
