"""The preview grid: training inputs as the trainer saw them, tiled into one PNG (Pillow)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TILE = 96
MAX_TILES = 64


def _image(value: Any) -> Any:
    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    array = value
    if hasattr(array, "detach"):  # a torch tensor: CHW or HW, floats in [0, 1] or uint8
        array = array.detach().cpu().numpy()
    import numpy as np

    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.transpose(array, (1, 2, 0))
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = ((array - low) / (high - low or 1.0) * 255).clip(0, 255).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def write_grid(path: Path, images: Sequence[Any], captions: Sequence[str] | None = None) -> None:
    """Tile up to 64 images (Pillow images, arrays or tensors) into ``path``, each fitted in 96 px."""
    from PIL import Image, ImageDraw

    tiles = [_image(x) for x in list(images)[:MAX_TILES]]
    if not tiles:
        return
    columns = min(8, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    grid = Image.new("RGB", (columns * TILE, rows * TILE), (32, 32, 32))
    draw = ImageDraw.Draw(grid)
    for i, tile in enumerate(tiles):
        tile.thumbnail((TILE - 4, TILE - 4))
        x, y = (i % columns) * TILE + 2, (i // columns) * TILE + 2
        grid.paste(tile, (x, y))
        if captions is not None and i < len(captions):
            draw.text((x + 2, y + 2), str(captions[i])[:12], fill=(255, 220, 0))
    tmp = path.with_name(f".{path.name}.tmp")
    grid.save(tmp, format="PNG")
    tmp.replace(path)
