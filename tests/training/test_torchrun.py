"""torchrun: qa/tiny-trainer in 2 processes on the CPU (gloo), through DistributedDataParallel.

One real ``python -m torch.distributed.run --standalone --nproc-per-node 2`` run: both ranks
train on their shard, rank 0 alone reports and writes, and the result is what rank 0 saw.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cvflow.manifest import load_package_dir
from cvflow.training.data import prepare
from cvflow.training.runner import run_trainer
from tests.training.colors import colors_package
from tests.training.conftest import TINY_TRAINER


def test_two_gloo_processes_train_one_model(torch_python: Path, tmp_path: Path) -> None:
    trainer = load_package_dir(TINY_TRAINER).trainer("finetune")
    assert trainer is not None
    prepared = prepare(colors_package(tmp_path / "pkg", {"train": 24, "val": 6}), trainer, tmp_path / "work")
    work = tmp_path / "work"
    seen: list[dict[str, Any]] = []
    outcome = run_trainer(torch_python, TINY_TRAINER, trainer, prepared, work, {"epochs": 2}, nproc_per_node=2,
                          on_event=seen.append)
    assert outcome.world_size == 2 and outcome.device == "cpu"
    assert outcome.metrics["accuracy"] >= 0.9
    log = (work / "train.log").read_text()
    # Both ranks started in one world of 2 and trained on half the images each.
    for rank in (0, 1):
        assert f"cvflow training: rank {rank}/2 on cpu" in log
        assert f"tiny-trainer: rank {rank} of world_size 2" in log
        assert f"tiny-trainer: rank {rank} trains on 12 of 24 images" in log
    # DDP kept the replicas equal; the result is rank 0's.
    done = {int(m[1]): (float(m[2]), float(m[3]), float(m[4])) for m in re.finditer(
        r"tiny-trainer: rank (\d) done: accuracy (\S+) loss (\S+) checksum (\S+)", log)}
    assert set(done) == {0, 1} and done[0][2] == pytest.approx(done[1][2], rel=1e-6)
    assert (outcome.metrics["accuracy"], outcome.metrics["loss"]) == done[0][:2]
    # Rank 0 alone reported: one epoch event and one checkpoint per epoch, not two.
    assert [e["epoch"] for e in seen if e["event"] == "epoch"] == [1, 2]
    assert [e["state"]["epoch"] for e in seen if e["event"] == "checkpoint"] == [1, 2]
    assert any(e["event"] == "log" and e["message"].startswith("world_size 2") for e in seen)
    assert seen[-1]["event"] == "result" and seen[-1]["world_size"] == 2
    assert [p.name for p in (work / "output" / "weights").iterdir()] == ["model.safetensors"]
    assert json.loads((work / "base_metrics.json").read_text()) == outcome.base_metrics
