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


class Fit:
    """One training run, an epoch at a time: Adam with a one-cycle (cosine) schedule over ``epochs``,
    and a cache of the targets. :func:`train` runs every epoch; a fine-tune calls :meth:`epoch`
    itself to report, evaluate and checkpoint between epochs, and :meth:`skip` to resume.

    ``module`` is what the batches go through: ``model`` itself, or its ``DistributedDataParallel``
    wrapper, in which case ``rank``/``world_size`` give each process its share of the batches."""

    def __init__(self, model: DigitDetector, samples: Sequence[Sample], *, epochs: int, lr: float,
                 batch_size: int = 32, seed: int = 0, module: torch.nn.Module | None = None, rank: int = 0,
                 world_size: int = 1) -> None:
        torch.manual_seed(seed)
        self.model, self.module = model, module if module is not None else model
        self.samples, self.batch_size = list(samples), batch_size
        self.rank, self.world_size = rank, world_size
        self.rng = np.random.default_rng(seed)
        self.steps_per_epoch = len(self._share(_batches(self.samples, batch_size, np.random.default_rng(0))))
        self.optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimiser, max_lr=lr, total_steps=max(epochs * self.steps_per_epoch, 1), pct_start=0.1)
        self._targets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _share(self, batches: list[list[Sample]]) -> list[list[Sample]]:
        """This process's batches: every ``world_size``-th, padded by wrapping round so that every
        process runs as many steps (DDP needs it)."""
        if self.world_size == 1 or not batches:
            return batches
        per_rank = math.ceil(len(batches) / self.world_size)
        padded = (batches * self.world_size)[:per_rank * self.world_size]
        return padded[self.rank::self.world_size]

    def skip(self, epochs: int) -> None:
        """Move the batch order and the schedule on by ``epochs`` epochs already trained (a resumed
        run, whose model and optimiser state came from a checkpoint)."""
        import warnings

        for _ in range(epochs):
            _batches(self.samples, self.batch_size, self.rng)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": on purpose here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(epochs * self.steps_per_epoch):
                self.schedule.step()

    def epoch(self, on_step: Callable[[int, int, float], None] | None = None) -> float:
        """Train one epoch; its mean loss. ``on_step(step, steps, mean_loss)`` after each batch."""
        self.module.train()
        total, n = 0.0, 0
        batches = self._share(_batches(self.samples, self.batch_size, self.rng))
        for batch in batches:
            x = grey_tensor([s.image for s in batch])
            grid = (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE)
            made = [self._targets.setdefault(id(s), targets(s, grid)) for s in batch]
            heat, box, mask = (torch.from_numpy(np.stack(parts)) for parts in zip(*made, strict=True))
            device = next(self.model.parameters()).device
            self.optimiser.zero_grad()
            value = loss(self.module(x.to(device)), heat.to(device), box.to(device), mask.to(device))
            value.backward()
            self.optimiser.step()
            self.schedule.step()
            total, n = total + float(value.detach()), n + 1
            if on_step:
                on_step(n, len(batches), total / n)
        self.model.eval()
        return total / max(n, 1)


def train(model: DigitDetector, samples: Sequence[Sample], *, epochs: int, lr: float, batch_size: int = 32,
          seed: int = 0, log: Callable[[str], None] | None = None) -> list[float]:
    """Fit ``model`` to ``samples`` with Adam (cosine-decayed ``lr``) for ``epochs``; the mean loss
    of each epoch. The model is left in eval mode."""
    fit = Fit(model, samples, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    history = []
    for epoch in range(epochs):
        history.append(fit.epoch())
        if log:
            log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
    model.eval()
    return history
