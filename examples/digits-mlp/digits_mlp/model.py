"""The model, in numpy alone: shared by ``train.py`` (which measures it) and the solver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

SIDE = 8  # scikit-learn's digits are 8x8, each pixel 0..16


class MLP:
    """Dense layers ``w0, b0, w1, b1, ...`` (``w``: inputs x outputs), ReLU between them, softmax at the end."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        count = len(weights) // 2
        self.layers = [(weights[f"w{i}"].astype(np.float32), weights[f"b{i}"].astype(np.float32)) for i in range(count)]

    @classmethod
    def load(cls, path: str | Path) -> MLP:
        return cls(load_file(str(path)))  # safetensors: reading it runs no code

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (N, 64) ink intensities in [0, 1], row-major; returns (N, 10) probabilities."""
        for w, b in self.layers[:-1]:
            x = np.maximum(x @ w + b, 0.0)
        w, b = self.layers[-1]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
