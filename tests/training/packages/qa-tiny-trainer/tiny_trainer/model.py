"""The model: an image as an 8x8 RGB thumbnail in [0, 1], flattened, then one linear layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = ("red", "green", "blue")
SIDE = 8


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(SIDE * SIDE * 3, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An image as the model reads it: CHW float32 in [0, 1]."""
    pixels = np.asarray(image.convert("RGB").resize((SIDE, SIDE)), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def load(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return to_tensor(image)
