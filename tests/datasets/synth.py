"""A small synthetic detection dataset: scikit-learn's digits drawn on noisy canvases.

Built locally with numpy and Pillow, nothing downloaded. Sizes, formats (PNG and JPEG),
fractional box corners, an image without boxes and a class name with a space are mixed in
on purpose, so every format's conversions and limits are exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sklearn.datasets import load_digits

from cvflow.datasets import Box, Dataset, Item

CLASSES = ["zero", "one", "two digit"]
_SIZES = [(96, 64), (80, 80), (120, 72)]


def _digits() -> dict[int, list[np.ndarray]]:
    digits = load_digits()
    out: dict[int, list[np.ndarray]] = {0: [], 1: [], 2: []}
    for image, target in zip(digits.images, digits.target, strict=True):
        if target in out and len(out[target]) < 20:
            out[int(target)].append(image)
    return out


def build_detection(root: Path, *, splits: dict[str, int] | None = None, seed: int = 0) -> Dataset:
    """Images under ``root/src/`` and the Dataset that describes them (boxes in pixels)."""
    splits = splits or {"train": 6, "val": 3}
    rng = np.random.default_rng(seed)
    digits = _digits()
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    ds = Dataset("detection", list(CLASSES), {})
    n = 0
    for split, count in splits.items():
        items: list[Item] = []
        for _ in range(count):
            width, height = _SIZES[n % len(_SIZES)]
            canvas = rng.integers(0, 40, size=(height, width)).astype(np.uint8)
            boxes: list[Box] = []
            for k in range(0 if n % 5 == 4 else 1 + n % 3):  # every fifth image has no boxes
                cls = int(rng.integers(0, len(CLASSES)))
                side = int(rng.integers(16, 28))
                glyph = digits[cls][int(rng.integers(0, 20))]
                patch = np.asarray(
                    PILImage.fromarray((glyph * 15).astype(np.uint8)).resize((side, side), PILImage.Resampling.BILINEAR)
                )
                x = int(rng.integers(0, width - side))
                y = int(rng.integers(0, height - side))
                region = canvas[y:y + side, x:x + side]
                np.maximum(region, patch, out=region)
                # Half-pixel corners on some boxes: every format must keep them within a pixel.
                frac = 0.5 if k == 1 else 0.0
                boxes.append(Box(cls, x + frac, y, side - frac, side))
            suffix = "png" if n % 2 == 0 else "jpg"
            path = src / f"{split}_{n:03d}.{suffix}"
            rgb = PILImage.fromarray(canvas).convert("RGB")
            rgb.save(path, quality=90) if suffix == "jpg" else rgb.save(path)
            items.append(Item(path.name, path, width, height, boxes))
            n += 1
        ds.splits[split] = items
    return ds


def build_imagefolder(root: Path, *, per_class: int = 3) -> Path:
    """An ImageFolder tree ``root/train/<class>/`` and ``root/val/<class>/`` of digit images."""
    digits = _digits()
    for split, offset in (("train", 0), ("val", 10)):
        for cls, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class if split == "train" else 1):
                glyph = (digits[cls][offset + i] * 15).astype(np.uint8)
                img = PILImage.fromarray(glyph).resize((32, 32)).convert("RGB")
                img.save(d / f"img{i}.{'png' if i % 2 == 0 else 'jpg'}")
    return root


def boxes_of(ds: Dataset) -> dict[str, dict[str, list[tuple[str, float, float, float, float]]]]:
    """split -> image stem -> sorted (class name, x, y, w, h): what every format must keep."""
    return {
        split: {
            Path(item.file_name).stem: sorted((ds.classes[b.category], b.x, b.y, b.w, b.h) for b in item.boxes)
            for item in items
        }
        for split, items in ds.splits.items()
    }


def assert_boxes_close(got: dict, want: dict, tol: float = 1.0) -> None:  # type: ignore[type-arg]
    assert set(got) == set(want), (sorted(got), sorted(want))
    for split in want:
        assert set(got[split]) == set(want[split]), split
        for stem, boxes in want[split].items():
            other = got[split][stem]
            assert len(other) == len(boxes), (split, stem, other, boxes)
            for a, b in zip(sorted(other), sorted(boxes), strict=True):
                assert a[0] == b[0], (split, stem, a, b)
                assert all(abs(p - q) <= tol for p, q in zip(a[1:], b[1:], strict=True)), (split, stem, a, b)
