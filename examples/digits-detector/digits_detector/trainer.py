"""The ``finetune`` trainer: continues from the package's own weights on annotated images (COCO boxes).

It implements ``cvflow.training.api`` (docs/training.md) with the package's own parts: the
training loop of ``digits_detector.train`` (the one that trained the shipped weights, run an epoch
at a time here so that each epoch is reported, evaluated and checkpointed) and the metrics of
``digits_detector.metrics`` (``map50`` decides; precision and recall at the solver's default
threshold come with it). Images are decoded as the solver decodes an upload (grey, via
``cvflow.solver.Image``), so the model trains on what it will be served.

A run resumed from a checkpoint gets back the weights and Adam's state, and moves the batch order
and the learning-rate schedule on by the epochs done, so it goes on as it would have. Under
``torchrun`` the model is wrapped in ``DistributedDataParallel`` and each process trains on its
share of every epoch's batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cvflow.solver import Image
from cvflow.training.api import Context, TrainingData
from cvflow.training.api import Sample as FileSample
from cvflow.training.torch_state import flatten, restore
from digits_detector.data import CLASSES, Box, Sample
from digits_detector.metrics import evaluate
from digits_detector.model import DigitDetector
from digits_detector.train import Fit

WEIGHTS = "weights/model.safetensors"
THRESHOLD = 0.3  # the solver's default: precision and recall are of what it returns


class Finetune:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.device = torch.device(context.device)
        self.model = DigitDetector()
        self.model.load_state_dict(load_file(str(context.package_dir / WEIGHTS), device="cpu"))
        self.model.to(self.device).eval()
        hp = context.hyperparameters
        self.epochs, self.lr = int(hp["epochs"]), float(hp["lr"])
        self.batch_size, self.seed = int(hp["batch_size"]), int(hp["seed"])
        self._read: dict[str, Sample] = {}

    def _sample(self, sample: FileSample) -> Sample:
        """The package's own sample for an image file and its boxes, decoded once."""
        key = str(sample.image)
        if key not in self._read:
            grey = Image.open(sample.image).to_numpy("L")
            boxes = [Box(CLASSES.index(b.label), b.x, b.y, b.w, b.h) for b in sample.boxes]
            self._read[key] = Sample(np.ascontiguousarray(grey), boxes)
        return self._read[key]

    # -- what the runtime calls --------------------------------------------------------------

    def evaluate(self, samples: Sequence[FileSample]) -> dict[str, float]:
        """``map50``, ``precision`` and ``recall`` of the current weights on ``samples``."""
        if not samples:
            return {"map50": 0.0, "precision": 0.0, "recall": 0.0}
        found = evaluate(self.model, [self._sample(s) for s in samples], threshold=THRESHOLD)
        return {k: float(found[k]) for k in ("map50", "precision", "recall")}

    def fit(self, data: TrainingData) -> dict[str, float]:
        ctx = self.context
        train = [self._sample(s) for s in data.train]
        module: nn.Module = self.model
        if ctx.distributed:
            module = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        fit = Fit(self.model, train, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, seed=self.seed,
                  module=module, rank=ctx.rank, world_size=ctx.world_size)
        start = 0
        resumed = ctx.load_checkpoint()
        if resumed is not None:
            tensors, state = resumed
            restore(tensors, state["optimiser"], self.model, fit.optimiser)
            start = int(state["epoch"])
            fit.skip(start)
            ctx.log(f"resumed after epoch {start} of {self.epochs}")
        ctx.preview([_preview(s) for s in train[:32]], [" ".join(CLASSES[b.label] for b in s.boxes) for s in train[:32]])
        steps = fit.steps_per_epoch
        for epoch in range(start, self.epochs):

            def step(n: int, _: int, loss: float, epoch: int = epoch) -> None:
                ctx.progress(epoch * steps + n, self.epochs * steps, loss=loss, epoch=epoch + 1)

            loss = fit.epoch(step)
            loss = _mean_over_ranks(loss, ctx, self.device)
            metrics = self.evaluate(data.val)
            ctx.epoch_end(epoch + 1, loss=loss, metrics=metrics)
            ctx.log(f"epoch {epoch + 1}/{self.epochs}: loss {loss:.4f}, val map50 {metrics['map50']:.4f}")
            tensors, optimiser_state = flatten(self.model, fit.optimiser)
            ctx.save_checkpoint(tensors, {"epoch": epoch + 1, "optimiser": optimiser_state})
        if ctx.is_main:
            state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
            save_file(state, str(ctx.output_path(WEIGHTS)), metadata={"architecture": "CenterNet-digits-s4"})
        return self.evaluate(data.val)


def _preview(sample: Sample) -> Any:
    """A training image as the model sees it (grey; the detector trains without augmentation),
    with its boxes drawn, so a person sees that the labels sit on the digits."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    picture = PILImage.fromarray(sample.image, "L").convert("RGB")
    draw = ImageDraw.Draw(picture)
    for b in sample.boxes:
        draw.rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1], outline=(255, 200, 0))
    return picture


def _mean_over_ranks(loss: float, ctx: Context, device: torch.device) -> float:
    """The epoch's mean loss over the processes (each ran as many batches)."""
    if not ctx.distributed:
        return loss
    import torch.distributed as dist

    value = torch.tensor([loss], dtype=torch.float64, device=device)
    dist.all_reduce(value)
    return float(value[0]) / ctx.world_size
