"""A shifted domain for the digit classifier: the same digits, written differently, where the shipped
model does poorly until it is fine-tuned on a few labelled images (README, "Fine-tuning").

The base model learnt scikit-learn's 8x8 digits as they are: bright, thick ink on a black ground,
filling the frame upright. A *shifted* image is one of those digits as if drawn with a pen on paper
and photographed: scaled up to 32x32, thinned (only the core of each stroke is kept), tilted by
20-35 degrees either way, shrunk a little and moved off centre, in dark ink on light, unevenly lit
paper with sensor noise and now and then a stray pen stroke. The solver's own preprocessing (grey,
8x8 box filter, ink made bright by the border's lightness) still applies, so what changes for the
model is the shape, thickness, angle and ground of the strokes, which is what a fine-tune can learn.

The generator needs numpy and Pillow only and takes the digits as arrays, so it runs in the package's
venv and in any process that has the digits (:func:`digit_split` reads them from scikit-learn, the
same 80/20 split the base model was trained and tested on). The same ``(images, labels, seed,
count)`` always gives the same images.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32  #: the side of a shifted image in pixels
SPLIT_SEED = 0  #: the digits split (20 % held out, stratified), as train.py's


@cache
def digit_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits (8x8, 0..16), split as ``train.py`` split them:
    ``{"train" | "test": (images, labels)}``; the base model never saw the ``test`` part."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train, test = train_test_split(index, test_size=0.2, random_state=SPLIT_SEED, stratify=digits.target)
    return {"train": (digits.images[train], digits.target[train]), "test": (digits.images[test], digits.target[test])}


def shifted(images: np.ndarray, labels: np.ndarray, seed: int, count: int) -> list[tuple[np.ndarray, int]]:
    """``count`` shifted images (``(SIZE, SIZE)`` grey ``uint8``) with their digit, drawn from the
    8x8 ``images`` (any scale: each is normalised to its own brightest pixel) and their ``labels``.
    Deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 8])
    return [_one(images, labels, rng) for _ in range(count)]


def _one(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    i = int(rng.integers(len(labels)))
    glyph = np.asarray(images[i], dtype=np.float32)
    glyph = glyph / max(float(glyph.max()), 1e-6)
    big = np.asarray(Image.fromarray(glyph).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
    big = np.clip((big - 0.4) / 0.6 * 1.5, 0, 1)  # thin: keep the core of each stroke, saturated
    pen = Image.fromarray(np.rint(big * 255).astype(np.uint8))
    angle = float(rng.uniform(20, 35)) * (1 if rng.random() < 0.5 else -1)
    pen = pen.rotate(angle, resample=Image.Resampling.BILINEAR)
    side = round(SIZE * rng.uniform(0.9, 1.0))
    pen = pen.resize((side, side), Image.Resampling.BILINEAR)
    ink_cover = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = int(rng.integers(0, SIZE - side + 1)), int(rng.integers(0, SIZE - side + 1))
    ink_cover[top:top + side, left:left + side] = np.asarray(pen, dtype=np.float32) / 255.0
    strokes = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(strokes)
    for _ in range(int(rng.integers(0, 2))):  # a stray stroke, half the time
        x0, y0 = rng.uniform(0, SIZE, 2)
        length, direction = rng.uniform(6, 16), rng.uniform(0, 2 * math.pi)
        draw.line([(x0, y0), (x0 + length * math.cos(direction), y0 + length * math.sin(direction))], fill=255)
    np.maximum(ink_cover, np.asarray(strokes, dtype=np.float32) / 255.0, out=ink_cover)
    paper, ink = float(rng.uniform(190, 235)), float(rng.uniform(30, 90))
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / SIZE - 0.5
    light = rng.uniform(0, 2 * math.pi)
    grey = paper + 50 * (xs * math.cos(light) + ys * math.sin(light))  # uneven lighting
    grey = grey * (1 - ink_cover) + ink * ink_cover + rng.normal(0, 8.0, (SIZE, SIZE))
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8), int(labels[i])


def png(image: np.ndarray) -> bytes:
    """A shifted image as an RGB PNG (grey in three channels, as a camera gives)."""
    import io

    out = io.BytesIO()
    Image.fromarray(image, "L").convert("RGB").save(out, "PNG", optimize=True)
    return out.getvalue()
