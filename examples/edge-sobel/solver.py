"""Sobel edge magnitude (numpy only)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from cvflow.solver import Context, Image, Input

KX = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
KY = KX.T


def _convolve3(grey: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    padded = np.pad(grey, 1, mode="edge")
    h, w = grey.shape
    out = np.zeros((h, w), dtype=np.float32)
    for dy in range(3):
        for dx in range(3):
            out += kernel[dy, dx] * padded[dy : dy + h, dx : dx + w]
    return out


class SobelEdges:
    """No weights to load: the constructor only keeps the context."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def infer(
        self,
        image: Image,
        top_k: Annotated[int, Input(ge=0, le=1000, description="how many of the strongest edge pixels")] = 10,
    ) -> dict[str, Any]:
        grey = image.to_numpy("L").astype(np.float32)
        magnitude = np.hypot(_convolve3(grey, KX), _convolve3(grey, KY))
        flat = np.argsort(magnitude, axis=None)[::-1][:top_k]
        ys, xs = np.unravel_index(flat, magnitude.shape)
        return {
            "width": image.width,
            "height": image.height,
            "mean_magnitude": float(magnitude.mean()),
            "strongest": [
                {"x": int(x), "y": int(y), "magnitude": float(magnitude[y, x])} for y, x in zip(ys, xs, strict=True)
            ],
        }
