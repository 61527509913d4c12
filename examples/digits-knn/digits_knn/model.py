"""The model, in numpy alone: shared by ``train.py`` (which measures it) and the solver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

SIDE = 8  # scikit-learn's digits are 8x8, each pixel 0..16
CLASSES = 10


class NearestNeighbours:
    """The ``k`` training images nearest an input (Euclidean) vote for their digit, each with
    weight 1 / distance: ``images`` (M, 64) uint8 ink 0..16, ``labels`` (M,) uint8, ``k`` (1,)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.images = weights["images"].astype(np.float32) / 16.0
        self.labels = weights["labels"].astype(np.int64)
        self.k = int(weights["k"][0])
        self.norms = (self.images**2).sum(axis=1)

    @classmethod
    def load(cls, path: str | Path) -> NearestNeighbours:
        return cls(load_file(str(path)))  # safetensors: reading it runs no code

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (N, 64) ink intensities in [0, 1], row-major; returns (N, 10) probabilities: each
        digit's share of the neighbours' votes."""
        squared = (x**2).sum(axis=1, keepdims=True) - 2.0 * (x @ self.images.T) + self.norms
        nearest = np.argpartition(squared, self.k - 1, axis=1)[:, : self.k]
        distance = np.sqrt(np.maximum(np.take_along_axis(squared, nearest, axis=1), 0.0))
        vote = 1.0 / np.maximum(distance, 1e-6)  # an image met exactly outvotes the rest, as it should
        scores = np.zeros((len(x), CLASSES), dtype=np.float64)
        np.add.at(scores, (np.arange(len(x))[:, None], self.labels[nearest]), vote)
        return scores / scores.sum(axis=1, keepdims=True)
