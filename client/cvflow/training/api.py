"""What a trainer sees: the contract between a package's trainer class and the training runtime.

A trainer runs in its package's virtual environment, like a solver (docs/training.md). It is a
class named by ``[[trainers]] class`` in ``cvflow.toml``; the runtime builds it with a
:class:`Context`, then calls::

    trainer = Finetune(context)
    base = trainer.evaluate(data.val)      # the package's own weights, before training
    metrics = trainer.fit(data)            # trains, writes context.output_path(w) for each weight
                                           # the trainer declares, returns validation metrics

``evaluate`` and ``fit`` return ``{metric: number}`` and must include the trainer's declared
``metric`` (higher is better). ``fit`` resumes when :meth:`Context.load_checkpoint` returns
something: a killed run goes on from its last checkpoint, on this machine or another.

This module needs the standard library alone (the package's venv has no client dependencies);
torch is imported only by :mod:`cvflow.training.torch_state`, for trainers that use it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

JSONScalar = int | float | bool | str


@dataclass(frozen=True)
class BoxLabel:
    """One box: its class name and ``[x, y, w, h]`` in pixels (COCO)."""

    label: str
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Sample:
    """One training image: where its bytes are, its size and its labels.

    A classification sample has ``label`` (a class name); a detection sample has ``boxes``.
    Class names are the model's (:attr:`TrainingData.classes`), already mapped from the dataset's.
    """

    image: Path
    width: int
    height: int
    label: str | None = None
    boxes: tuple[BoxLabel, ...] = ()


@dataclass(frozen=True)
class TrainingData:
    """The dataset, split and mapped onto the model's classes.

    ``root`` holds the dataset in the trainer's declared ``layout`` for trainers that read files
    themselves; ``train`` and ``val`` are the same images as samples. ``val`` is the dataset's
    ``val`` split when it has one, else a fixed share of ``train`` chosen by file name.
    """

    task: str
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    root: Path
    layout: str

    def index(self, label: str) -> int:
        """The class's position in the model's output."""
        return self.classes.index(label)


class Trainer(Protocol):
    """What ``[[trainers]] class`` names (duck-typed: no base class to import)."""

    def __init__(self, context: Context) -> None: ...

    def evaluate(self, samples: Sequence[Sample]) -> dict[str, float]: ...

    def fit(self, data: TrainingData) -> dict[str, float]: ...


@dataclass
class Context:
    """The run's settings and the trainer's way to report, checkpoint and write weights.

    In a distributed run (``torchrun``), every process gets a context with its ``rank``;
    :meth:`progress`, :meth:`epoch_end`, :meth:`preview` and the outputs count on rank 0 only,
    and the others' calls are ignored, so a trainer need not check the rank itself.
    """

    package_dir: Path  #: the package's files as published: its weights are read from here
    work_dir: Path  #: this run's folder: checkpoints, outputs, the event log
    device: str  #: "cuda:N" when the machine has CUDA (per local rank), else "cpu"
    hyperparameters: dict[str, JSONScalar]  #: every declared one, defaults filled in and checked
    metric: str  #: the declared validation metric, higher is better
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: Where events go (the runtime sets it; the parent process reads them as JSON lines).
    emit: Callable[[dict[str, Any]], None] = field(default=lambda event: None, repr=False)
    _last_progress: float = field(default=0.0, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def progress(self, step: int, total: int, *, loss: float | None = None, epoch: int | None = None) -> None:
        """Training is at ``step`` of ``total`` (any unit: batches, samples); sent at most 5 times a second."""
        now = time.monotonic()
        if not self.is_main or (now - self._last_progress < 0.2 and step < total):
            return
        self._last_progress = now
        self.emit({"event": "progress", "step": step, "total": total, "loss": loss, "epoch": epoch})

    def epoch_end(self, epoch: int, *, loss: float, metrics: Mapping[str, float] | None = None) -> None:
        """One point of the curves the project page draws: the epoch's mean loss and validation metrics."""
        if self.is_main:
            self.emit({"event": "epoch", "epoch": epoch, "loss": float(loss),
                       "metrics": {k: float(v) for k, v in (metrics or {}).items()}})

    def log(self, message: str) -> None:
        """A line for the run's log (also shown as the log tail on the project page)."""
        if self.is_main:
            self.emit({"event": "log", "message": str(message)[:2000]})

    def preview(self, images: Sequence[Any], captions: Sequence[str] | None = None) -> None:
        """Training inputs as the model sees them after augmentation: Pillow images or 2-D/3-D
        uint8 arrays, saved as one grid (at most 64 tiles) that a person checks before trusting
        the model. Call it once, early; later calls replace the grid."""
        if not self.is_main:
            return
        from cvflow.training.preview import write_grid  # Pillow, imported only when used

        path = self.work_dir / "preview.png"
        write_grid(path, list(images)[:64], None if captions is None else list(captions)[:64])
        self.emit({"event": "preview", "path": str(path)})

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoint"

    def save_checkpoint(self, tensors: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        """Keep a checkpoint: ``tensors`` (name -> torch tensor, saved as safetensors, never a
        pickle) and ``state`` (JSON: epoch, rng seeds...). Written aside and renamed, so a kill
        leaves the previous one whole. Rank 0 writes; the others return at once."""
        if not self.is_main:
            return
        from cvflow.training.torch_state import write_checkpoint

        write_checkpoint(self.checkpoint_dir, tensors, state)
        self.emit({"event": "checkpoint", "path": str(self.checkpoint_dir), "state": dict(state)})

    def load_checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """``(tensors, state)`` of the last checkpoint, or None when this run starts afresh."""
        from cvflow.training.torch_state import read_checkpoint

        return read_checkpoint(self.checkpoint_dir, device=self.device)

    def output_path(self, weight: str) -> Path:
        """Where to write the new file for the package's weight ``weight`` (its path in the package)."""
        path = self.work_dir / "output" / weight
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def environment_rank() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as torchrun sets them; ``(0, 1, 0)`` outside torchrun."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def write_json(path: Path, data: object) -> None:
    """Write JSON aside and rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
