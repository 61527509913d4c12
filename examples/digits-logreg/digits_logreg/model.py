"""The model, in numpy alone: shared by ``train.py`` (which measures it) and the solver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

SIDE = 8  # scikit-learn's digits are 8x8, each pixel 0..16


class LogisticRegression:
    """One linear layer and a softmax: ``coef`` (10, 64) and ``intercept`` (10,)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.coef = weights["coef"].astype(np.float32)
        self.intercept = weights["intercept"].astype(np.float32)

    @classmethod
    def load(cls, path: str | Path) -> LogisticRegression:
        return cls(load_file(str(path)))  # safetensors: reading it runs no code

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (N, 64) ink intensities in [0, 1], row-major; returns (N, 10) probabilities."""
        logits = x @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
