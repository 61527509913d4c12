"""The model, in numpy alone: shared by ``train.py`` (which measures it) and the solver.

libsvm's multi-class SVM as scikit-learn's ``SVC(probability=True)`` fits it: one RBF-kernel
classifier per pair of digits (45), each decision turned into a pairwise probability by a
fitted sigmoid (Platt), and the 45 coupled into one probability per digit (Wu, Lin and Weng's
method, as libsvm's ``multiclass_probability``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

SIDE = 8  # scikit-learn's digits are 8x8, each pixel 0..16
CLASSES = 10
MIN_PROBABILITY = 1e-7  # libsvm's clip of a pairwise probability


class SupportVectorMachine:
    """``support_vectors`` (M, 64) uint8 ink 0..16, grouped by digit, ``n_support`` (10,) of each
    digit, ``dual_coef`` (9, M), ``intercept`` (45,), ``prob_a`` and ``prob_b`` (45,) the pairs'
    sigmoids and ``gamma`` (1,) the kernel's width; pairs in the order (0, 1), (0, 2) ... (8, 9)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.vectors = weights["support_vectors"].astype(np.float32) / 16.0
        self.norms = (self.vectors**2).sum(axis=1)
        self.dual_coef = weights["dual_coef"].astype(np.float32)
        self.intercept = weights["intercept"].astype(np.float64)
        self.prob_a, self.prob_b = weights["prob_a"].astype(np.float64), weights["prob_b"].astype(np.float64)
        self.gamma = float(weights["gamma"][0])
        starts = np.concatenate([[0], np.cumsum(weights["n_support"])])
        self.groups = [slice(int(starts[c]), int(starts[c + 1])) for c in range(CLASSES)]
        self.pairs = [(i, j) for i in range(CLASSES) for j in range(i + 1, CLASSES)]

    @classmethod
    def load(cls, path: str | Path) -> SupportVectorMachine:
        return cls(load_file(str(path)))  # safetensors: reading it runs no code

    def decisions(self, x: np.ndarray) -> np.ndarray:
        """(N, 45): each pair's decision value, positive for the first digit of the pair."""
        squared = (x**2).sum(axis=1, keepdims=True) - 2.0 * (x @ self.vectors.T) + self.norms
        kernel = np.exp(-self.gamma * np.maximum(squared, 0.0))
        values = [kernel[:, self.groups[i]] @ self.dual_coef[j - 1, self.groups[i]]
                  + kernel[:, self.groups[j]] @ self.dual_coef[i, self.groups[j]] for i, j in self.pairs]
        return np.stack(values, axis=1).astype(np.float64) + self.intercept

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: (N, 64) ink intensities in [0, 1], row-major; returns (N, 10) probabilities."""
        decisions = self.decisions(x)
        r = np.zeros((len(x), CLASSES, CLASSES))  # r[n, i, j]: P(i | i or j)
        for p, (i, j) in enumerate(self.pairs):
            v = np.clip(1.0 / (1.0 + np.exp(decisions[:, p] * self.prob_a[p] + self.prob_b[p])),
                        MIN_PROBABILITY, 1 - MIN_PROBABILITY)
            r[:, i, j], r[:, j, i] = v, 1 - v
        return couple(r)


def couple(r: np.ndarray) -> np.ndarray:
    """Pairwise probabilities (N, k, k) -> one probability per class (N, k), as libsvm couples them."""
    n, k = r.shape[:2]
    rt = r.transpose(0, 2, 1)
    q = -rt * r  # q[t, j] = -r[j, t] r[t, j]
    q[:, np.arange(k), np.arange(k)] = (rt**2).sum(axis=2)  # q[t, t] = sum over j of r[j, t]^2
    p = np.full((n, k), 1.0 / k)
    for _ in range(max(100, k)):
        qp = np.einsum("ntj,nj->nt", q, p)
        pqp = (p * qp).sum(axis=1)
        if np.abs(qp - pqp[:, None]).max() < 0.005 / k:
            break
        for t in range(k):
            diff = (pqp - qp[:, t]) / q[:, t, t]
            p[:, t] += diff
            pqp = (pqp + diff * (diff * q[:, t, t] + 2 * qp[:, t])) / (1 + diff) ** 2
            qp = (qp + diff[:, None] * q[:, t, :]) / (1 + diff)[:, None]
            p /= (1 + diff)[:, None]
    return p
