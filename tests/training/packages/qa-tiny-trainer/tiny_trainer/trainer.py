"""The trainer: SGD on the linear layer, from the package's weights or the last checkpoint.

Small on purpose (tests/training): an epoch over a few dozen 8x8 thumbnails takes milliseconds.
Under torchrun each rank trains on its shard of the training images (``rank::world_size``,
cut to equal lengths so every rank takes the same number of steps) through
DistributedDataParallel; rank 0 alone writes checkpoints and weights (the context ignores the
other ranks' reports). Hyperparameters ``stop_after_epoch``, ``sleep`` and ``crash`` let the
tests kill, slow or break it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cvflow.training.api import Context, Sample, TrainingData
from cvflow.training.torch_state import flatten, restore
from tiny_trainer.model import CLASSES, TinyNet, load

WEIGHTS = "weights/model.safetensors"


class Finetune:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.hp = context.hyperparameters
        if self.hp["crash"] == "init":
            raise RuntimeError("asked to crash in __init__")
        torch.manual_seed(0)
        self.device = torch.device(context.device)
        self.model = TinyNet()
        self.model.load_state_dict(load_file(str(context.package_dir / WEIGHTS)))
        self.model.to(self.device)
        # Every rank says where it is (train.log); rank 0's line is an event too.
        print(f"tiny-trainer: rank {context.rank} of world_size {context.world_size}, pid {os.getpid()}", flush=True)
        context.log(f"world_size {context.world_size}, pid {os.getpid()}")

    def _batch(self, samples: Sequence[Sample], classes: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([load(s.image) for s in samples]).to(self.device)
        y = torch.tensor([list(classes).index(s.label or "") for s in samples], device=self.device)
        return x, y

    def evaluate(self, samples: Sequence[Sample]) -> dict[str, float]:
        if self.hp["crash"] == "evaluate":
            raise RuntimeError("asked to crash in evaluate")
        x, y = self._batch(samples, CLASSES)
        self.model.eval()
        with torch.no_grad():
            logits = self.model(x)
        loss = float(torch.nn.functional.cross_entropy(logits, y))
        return {"accuracy": float((logits.argmax(1) == y).float().mean()), "loss": loss}

    def fit(self, data: TrainingData) -> dict[str, float]:
        context, hp = self.context, self.hp
        if hp["crash"] == "fit":
            raise RuntimeError("asked to crash in fit")
        model: Any = self.model
        if context.distributed:
            model = torch.nn.parallel.DistributedDataParallel(self.model)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=float(hp["lr"]))
        start = 1
        checkpoint = context.load_checkpoint()
        if checkpoint is not None:
            tensors, state = checkpoint
            restore(tensors, state["optimizer"], self.model, optimizer)
            start = int(state["epoch"]) + 1
            context.log(f"resumed after epoch {state['epoch']}: starting epoch {start}")
        x_all, y_all = self._batch(data.train, data.classes)
        per_rank = max(1, len(data.train) // context.world_size)
        shard = torch.arange(context.rank, len(data.train), context.world_size)[:per_rank]
        print(f"tiny-trainer: rank {context.rank} trains on {len(shard)} of {len(data.train)} images", flush=True)
        epochs, batch = int(hp["epochs"]), int(hp["batch_size"])
        steps = (len(shard) + batch - 1) // batch
        for epoch in range(start, epochs + 1):
            model.train()
            order = shard[torch.randperm(len(shard), generator=torch.Generator().manual_seed(epoch))]
            losses = []
            for step in range(steps):
                index = order[step * batch:(step + 1) * batch]
                x, y = x_all[index], y_all[index]
                if epoch == start and step == 0:
                    context.preview(list(x), [data.classes[int(c)] for c in y])
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                context.progress((epoch - 1) * steps + step + 1, epochs * steps, loss=losses[-1], epoch=epoch)
            metrics = self.evaluate(data.val)
            context.epoch_end(epoch, loss=sum(losses) / len(losses), metrics=metrics)
            tensors, meta = flatten(self.model, optimizer)
            context.save_checkpoint(tensors, {"epoch": epoch, "optimizer": meta})
            if epoch == hp["stop_after_epoch"]:
                os._exit(1)  # as a killed worker: no exception, no error event
            if hp["sleep"]:
                time.sleep(float(hp["sleep"]))
        metrics = self.evaluate(data.val)
        # Each rank's weights and metrics, for tests/training/test_torchrun: DDP keeps them equal.
        checksum = sum(float(v.double().abs().sum()) for v in self.model.state_dict().values())
        print(f"tiny-trainer: rank {context.rank} done: accuracy {metrics['accuracy']!r} loss {metrics['loss']!r}"
              f" checksum {checksum!r}", flush=True)
        if context.is_main:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                      str(context.output_path(WEIGHTS)))
        return metrics
