"""Small classification datasets that qa/tiny-trainer learns in a second: noisy solid colours.

Built here with numpy and Pillow (nothing downloaded), written as dataset packages in the
canonical layout with :func:`cvflow.datasets.write_package`, as ``cvflow pull`` leaves them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cvflow.datasets import Dataset, Item, write_package

#: qa/tiny-trainer's classes, in its output order.
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def build_colors(src: Path, splits: dict[str, int], *, classes: list[str] | None = None, seed: int = 0,
                 size: int = 16) -> Dataset:
    """``splits[name]`` images per split under ``src``, the classes taking turns."""
    rng = np.random.default_rng(seed)
    classes = classes or list(COLORS)
    src.mkdir(parents=True, exist_ok=True)
    ds = Dataset("classification", list(classes), {})
    n = 0
    for split, count in splits.items():
        items: list[Item] = []
        for _ in range(count):
            label = n % len(classes)
            base = np.array(COLORS.get(classes[label], (128, 128, 128)), dtype=np.int16)
            pixels = np.clip(base + rng.integers(-25, 26, size=(size, size, 3)), 0, 255).astype(np.uint8)
            path = src / f"{classes[label].replace(' ', '_')}_{n:03d}.png"
            Image.fromarray(pixels).save(path)
            items.append(Item(path.name, path, size, size, label=label))
            n += 1
        ds.splits[split] = items
    return ds


def colors_package(out: Path, splits: dict[str, int], *, classes: list[str] | None = None, seed: int = 0,
                   name: str = "qa/colors", version: str = "1.0.0") -> Path:
    """A dataset package of :func:`build_colors` images at ``out`` (its images built beside it)."""
    ds = build_colors(out.with_name(f"{out.name}-src"), splits, classes=classes, seed=seed)
    write_package(ds, out, name=name, version=version, license="CC0-1.0")
    return out
