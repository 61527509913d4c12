"""The ``finetune`` trainer: continues from the package's own weights on labelled digit images.

It implements ``cvflow.training.api`` (docs/training.md): the runtime builds it with a
``Context``, asks ``evaluate`` for the base model's accuracy on the validation images, then
``fit``. Every image goes through the solver's own preprocessing (:func:`digits_lenet.solver.to_input`:
grey, 8x8 box filter, ink made bright), so what the model learns on is what it will be served.

Training is plain Adam on cross-entropy with a cosine-decayed learning rate and light
augmentation (small random tilts, shifts and scalings of the image before it is shrunk). The
learning rate of an epoch, the order of its batches and its augmentation depend only on the seed
and the epoch's number, so a run resumed from a checkpoint goes on exactly as it would have.
Under ``torchrun`` the model is wrapped in ``DistributedDataParallel`` and each process trains on
its share of every epoch's batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from cvflow.solver import Image
from cvflow.training.api import Context, Sample, TrainingData
from cvflow.training.torch_state import flatten, restore
from digits_lenet.model import LeNet
from digits_lenet.solver import to_input

WEIGHTS = "weights/model.safetensors"
CLASSES = tuple(str(d) for d in range(10))  # the model's outputs, in order (the manifest's classes)
_CACHE_SIDE = 64  # images are kept at most this large for augmentation: 8x the model's input


class Finetune:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.device = torch.device(context.device)
        self.model = LeNet()
        self.model.load_state_dict(load_file(str(context.package_dir / WEIGHTS), device="cpu"))
        self.model.to(self.device)
        hp = context.hyperparameters
        self.epochs, self.lr = int(hp["epochs"]), float(hp["lr"])
        self.batch_size, self.seed = int(hp["batch_size"]), int(hp["seed"])
        self._inputs: dict[str, np.ndarray] = {}

    def _input(self, sample: Sample) -> np.ndarray:
        """The model's input for an image file, decoded once (``fit`` evaluates after every epoch)."""
        key = str(sample.image)
        if key not in self._inputs:
            self._inputs[key] = to_input(Image.open(sample.image))
        return self._inputs[key]

    # -- what the runtime calls --------------------------------------------------------------

    def evaluate(self, samples: Sequence[Sample]) -> dict[str, float]:
        """Accuracy of the current weights on ``samples``, read exactly as the solver reads an upload."""
        if not samples:
            return {"accuracy": 0.0}
        inputs = torch.from_numpy(np.stack([self._input(s) for s in samples])).unsqueeze(1)
        labels = torch.tensor([CLASSES.index(str(s.label)) for s in samples])
        self.model.eval()
        right = 0
        with torch.inference_mode():
            for k in range(0, len(samples), 256):
                logits = self.model(inputs[k:k + 256].to(self.device))
                right += int((logits.argmax(1).cpu() == labels[k:k + 256]).sum())
        return {"accuracy": round(right / len(samples), 4)}

    def fit(self, data: TrainingData) -> dict[str, float]:
        ctx = self.context
        pictures = [_grey(s) for s in data.train]
        labels = torch.tensor([CLASSES.index(str(s.label)) for s in data.train])
        optimiser = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        start = 0
        resumed = ctx.load_checkpoint()
        if resumed is not None:
            tensors, state = resumed
            restore(tensors, state["optimiser"], self.model, optimiser)
            start = int(state["epoch"])
            ctx.log(f"resumed after epoch {start} of {self.epochs}")
        model: nn.Module = self.model
        if ctx.distributed:
            model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        loss_fn = nn.CrossEntropyLoss()
        per_epoch = math.ceil(math.ceil(len(pictures) / ctx.world_size) / self.batch_size)
        total = self.epochs * per_epoch
        previewed = False
        for epoch in range(start, self.epochs):
            for group in optimiser.param_groups:  # cosine decay, a function of the epoch alone
                group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
            rng = np.random.default_rng([self.seed, epoch])
            order = _shard(rng.permutation(len(pictures)), ctx.rank, ctx.world_size)
            model.train()
            loss_sum, seen = 0.0, 0
            for b, k in enumerate(range(0, len(order), self.batch_size)):
                rows = order[k:k + self.batch_size]
                shown = [_augment(pictures[r], rng) for r in rows]
                batch = torch.from_numpy(np.stack([to_input(Image(p)) for p in shown])).unsqueeze(1)
                if not previewed:
                    ctx.preview([_enlarge(x) for x in batch[:, 0].numpy()],
                                [CLASSES[int(labels[r])] for r in rows])
                    previewed = True
                optimiser.zero_grad()
                loss = loss_fn(model(batch.to(self.device)), labels[rows].to(self.device))
                loss.backward()
                optimiser.step()
                loss_sum, seen = loss_sum + float(loss.detach()) * len(rows), seen + len(rows)
                ctx.progress(epoch * per_epoch + b + 1, total, loss=loss_sum / seen, epoch=epoch + 1)
            mean_loss = _mean_over_ranks(loss_sum, seen, ctx, self.device)
            metrics = self.evaluate(data.val)
            ctx.epoch_end(epoch + 1, loss=mean_loss, metrics=metrics)
            ctx.log(f"epoch {epoch + 1}/{self.epochs}: loss {mean_loss:.4f}, val accuracy {metrics['accuracy']:.4f}")
            tensors, optimiser_state = flatten(self.model, optimiser)
            ctx.save_checkpoint(tensors, {"epoch": epoch + 1, "optimiser": optimiser_state})
        if ctx.is_main:
            state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
            save_file(state, str(ctx.output_path(WEIGHTS)), metadata={"architecture": "LeNet-8x8"})
        return self.evaluate(data.val)


def _grey(sample: Sample) -> Any:
    """The sample's image as the solver decodes it, in grey, at most ``_CACHE_SIDE`` pixels a side
    (a box filter, like the solver's own shrinking, so the 8x8 input barely changes)."""
    grey = Image.open(sample.image).to_pil("L")
    if max(grey.size) > _CACHE_SIDE:
        scale = _CACHE_SIDE / max(grey.size)
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))),
                           PILImage.Resampling.BOX)
    return grey


def _augment(grey: Any, rng: np.random.Generator) -> Any:
    """A light random change: a tilt of up to 10 degrees, a scaling of 0.9-1.1 and a shift of up
    to 8 % of the side. The uncovered corners take the border's mean, so the solver's ink/paper
    test (the border's lightness) reads the image as before."""
    pixels = np.asarray(grey, dtype=np.float32)
    border = int(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).mean())
    angle = math.radians(float(rng.uniform(-10, 10)))
    scale = float(rng.uniform(0.9, 1.1))
    dx, dy = (float(v) for v in rng.uniform(-0.08, 0.08, 2) * np.array(grey.size))
    cx, cy = grey.width / 2, grey.height / 2
    a, b = math.cos(angle) / scale, math.sin(angle) / scale  # output -> input, about the centre
    matrix = (a, b, cx - a * (cx + dx) - b * (cy + dy), -b, a, cy + b * (cx + dx) - a * (cy + dy))
    return grey.transform(grey.size, PILImage.Transform.AFFINE, matrix, resample=PILImage.Resampling.BILINEAR,
                          fillcolor=border)


def _shard(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This process's share of an epoch: every ``world_size``-th index, padded by wrapping round
    so that every process runs the same number of batches (DDP needs it)."""
    if world_size == 1:
        return order
    per_rank = math.ceil(len(order) / world_size)
    padded = np.resize(order, per_rank * world_size)
    return padded[rank::world_size]


def _mean_over_ranks(loss_sum: float, seen: int, ctx: Context, device: torch.device) -> float:
    """The epoch's mean loss over every process's samples."""
    if ctx.distributed:
        import torch.distributed as dist

        both = torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=device)
        dist.all_reduce(both)
        loss_sum, seen = float(both[0]), int(both[1])
    return loss_sum / max(seen, 1)


def _enlarge(x: Tensor | np.ndarray) -> Any:
    """An 8x8 model input as a 64x64 picture (nearest neighbour) for the preview grid."""
    pixels = np.clip(np.asarray(x) * 255, 0, 255).astype(np.uint8)
    return PILImage.fromarray(pixels, "L").resize((64, 64), PILImage.Resampling.NEAREST)
