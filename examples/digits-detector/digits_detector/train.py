"""The training loop: build-time training (``../train.py``) and fine-tuning on annotated images use it alike.

``train(model, samples, epochs=..., lr=...)`` fits a ``DigitDetector`` to ``Sample``s (a grey
image and its boxes), whatever made them: ``data.canvases`` or an annotation project's dataset
(``data.from_coco``). Images of different sizes are batched by size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from digits_detector.data import Sample
from digits_detector.model import CLASSES, SIZE_UNIT, STRIDE, DigitDetector, pad_to_stride


def targets(sample: Sample, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the network should output for ``sample`` on a ``grid`` (rows, columns) of cells:
    Gaussian peaks per class (10, gh, gw), box targets (4, gh, gw) (log-size w, h; offset x, y)
    and the mask of the cells that hold a centre (gh, gw)."""
    gh, gw = grid
    heat = np.zeros((CLASSES, gh, gw), dtype=np.float32)
    box = np.zeros((4, gh, gw), dtype=np.float32)
    mask = np.zeros((gh, gw), dtype=np.float32)
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32)
    for b in sample.boxes:
        cx, cy = (b.x + b.w / 2) / STRIDE, (b.y + b.h / 2) / STRIDE
        ix, iy = min(int(cx), gw - 1), min(int(cy), gh - 1)
        sigma = max(0.6, min(b.w, b.h) / STRIDE / 4)
        peak = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
        np.maximum(heat[b.label], peak, out=heat[b.label])
        box[:, iy, ix] = (math.log(b.w / SIZE_UNIT), math.log(b.h / SIZE_UNIT), cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heat, box, mask


def loss(output: Tensor, heat: Tensor, box: Tensor, mask: Tensor) -> Tensor:
    """CenterNet's: the penalty-reduced focal loss on the heatmaps, L1 on sizes and offsets at centres."""
    p = torch.sigmoid(output[:, :CLASSES]).clamp(1e-4, 1 - 1e-4)
    positive = heat.eq(1).float()
    focal = -(positive * (1 - p) ** 2 * torch.log(p)
              + (1 - positive) * (1 - heat) ** 4 * p**2 * torch.log(1 - p)).sum()
    objects = mask.sum().clamp(min=1)
    regression = (F.l1_loss(output[:, CLASSES:], box, reduction="none").sum(1) * mask).sum()
    return (focal + regression) / objects


def grey_tensor(images: Sequence[np.ndarray]) -> Tensor:
    """(N, 1, H, W) in [0, 1] from same-sized (H, W) uint8 images, padded to the stride."""
    return pad_to_stride(torch.from_numpy(np.stack(images)).float().div(255).unsqueeze(1))


def _batches(samples: Sequence[Sample], batch_size: int, rng: np.random.Generator) -> list[list[Sample]]:
    by_shape: dict[tuple[int, ...], list[Sample]] = {}
    for s in samples:
        by_shape.setdefault(s.image.shape, []).append(s)
    batches = []
    for group in by_shape.values():
        order = rng.permutation(len(group))
        batches += [[group[j] for j in order[k:k + batch_size]] for k in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def train(model: DigitDetector, samples: Sequence[Sample], *, epochs: int, lr: float, batch_size: int = 32,
          seed: int = 0, log: Callable[[str], None] | None = None) -> list[float]:
    """Fit ``model`` to ``samples`` with Adam (cosine-decayed ``lr``) for ``epochs``; the mean loss
    of each epoch. The model is left in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    steps = epochs * len(_batches(samples, batch_size, np.random.default_rng(0)))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    history = []
    model.train()
    for epoch in range(epochs):
        total, n = 0.0, 0
        for batch in _batches(samples, batch_size, rng):
            x = grey_tensor([s.image for s in batch])
            grid = (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE)
            made = [cache.setdefault(id(s), targets(s, grid)) for s in batch]
            heat, box, mask = (torch.from_numpy(np.stack(parts)) for parts in zip(*made, strict=True))
            optimiser.zero_grad()
            value = loss(model(x), heat, box, mask)
            value.backward()
            optimiser.step()
            schedule.step()
            total, n = total + float(value.detach()), n + 1
        history.append(total / max(n, 1))
        if log:
            log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
    model.eval()
    return history
