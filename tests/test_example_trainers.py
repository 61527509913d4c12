"""The demo packages' trainers, run for real: demo/digits-lenet's ``finetune`` on its shifted digits
and demo/digits-detector's on the demo project's images, each in a venv with torch 2.13.0 (CPU)
through the training runtime that ``cvflow finetune`` and ``cvflow worker --train`` use
(``prepare``, then ``run_trainer``: a child process, its events, the new weight file).

Tiny on purpose (a dozen images, one epoch): what this checks is the contract, that a killed
run resumes, and that the weights written are the model's; the README of each package has the
real measurements (base and fine-tuned accuracy or mAP, and times).
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cvflow.datasets import Box, Dataset, Item, write_package
from cvflow.manifest import parse_manifest
from cvflow.manifest.training import Trainer
from cvflow.training.data import prepare
from cvflow.training.runner import run_trainer
from tests.training.conftest import torch_python, torch_venv  # noqa: F401 - the session's torch venv

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LENET = EXAMPLES / "digits-lenet"
DETECTOR = EXAMPLES / "digits-detector"
DIGITS = tuple(str(d) for d in range(10))


def _trainer(package: Path) -> Trainer:
    [trainer] = parse_manifest((package / "cvflow.toml").read_text()).trainers
    return trainer


def _module(path: Path, name: str) -> ModuleType:
    """A module of a package loaded from its file (the test venv has numpy and Pillow, not torch)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _tensor_names(path: Path) -> set[str]:
    """The tensors a safetensors file holds, from its JSON header (no safetensors here)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return {k for k in json.loads(data[8:8 + length]) if k != "__metadata__"}


def _events(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == kind]


def test_manifests_declare_their_trainers() -> None:
    for package, task, layout, metric in ((LENET, "classification", "imagefolder", "accuracy"),
                                          (DETECTOR, "detection", "coco", "map50")):
        trainer = _trainer(package)
        assert (trainer.name, trainer.task, trainer.layout, trainer.metric) == ("finetune", task, layout, metric)
        assert trainer.classes == DIGITS
        assert trainer.weights == ("weights/model.safetensors",)
        assert set(trainer.hyperparameters) == {"epochs", "lr", "batch_size", "seed"}
        assert trainer.resolve({})["epochs"] == trainer.hyperparameters["epochs"].default
        with pytest.raises(ValueError, match="epochs must be at least 1"):
            trainer.resolve({"epochs": 0})
        module, _, cls = trainer.class_path.partition(":")
        assert (package / (module.replace(".", "/") + ".py")).is_file()
        declared = tomllib.loads((package / "cvflow.toml").read_text())["weights"]
        assert [w["path"] for w in declared] == list(trainer.weights)


def _lenet_dataset(tmp: Path) -> Path:
    """12 shifted digits to train on and 4 to validate on, drawn by the package's own generator."""
    shifted = _module(LENET / "digits_lenet" / "shifted.py", "_digits_lenet_shifted")
    split = shifted.digit_split()
    pictures = tmp / "pictures"
    pictures.mkdir()
    splits: dict[str, list[Item]] = {}
    for name, digits, seed, count in (("train", "train", 1, 12), ("val", "test", 2, 4)):
        splits[name] = []
        for i, (image, label) in enumerate(shifted.shifted(*split[digits], seed=seed, count=count)):
            path = pictures / f"{name}-{i}.png"
            path.write_bytes(shifted.png(image))
            splits[name].append(Item(path.name, path, shifted.SIZE, shifted.SIZE, label=int(label)))
    out = tmp / "shifted-data"
    write_package(Dataset("classification", list(DIGITS), splits), out, name="qa/shifted-digits", version="1.0.0")
    return out


def test_lenet_finetune_runs_and_resumes(torch_python: Path, tmp_path: Path) -> None:  # noqa: F811
    trainer = _trainer(LENET)
    work = tmp_path / "work"
    data = prepare(_lenet_dataset(tmp_path), trainer, work)
    events: list[dict[str, Any]] = []
    first = run_trainer(torch_python, LENET, trainer, data, work, {"epochs": 1, "batch_size": 8},
                        on_event=events.append)
    assert set(first.metrics) == {"accuracy"} and 0 <= first.metrics["accuracy"] <= 1
    assert set(first.base_metrics) == {"accuracy"}
    assert [e["epoch"] for e in _events(events, "epoch")] == [1]
    assert _events(events, "epoch")[0]["metrics"]["accuracy"] == first.metrics["accuracy"]
    assert _events(events, "preview") and (work / "preview.png").is_file()
    assert _events(events, "checkpoint")[-1]["state"]["epoch"] == 1
    progress = _events(events, "progress")
    assert progress[-1]["step"] == progress[-1]["total"] == 2  # 12 images in batches of 8
    written = first.outputs["weights/model.safetensors"]
    assert _tensor_names(written) == _tensor_names(LENET / "weights" / "model.safetensors")

    # The same work folder, asked for two epochs: it goes on from the first epoch's checkpoint.
    events.clear()
    second = run_trainer(torch_python, LENET, trainer, data, work, {"epochs": 2, "batch_size": 8},
                         on_event=events.append)
    assert second.resumed
    assert [e["epoch"] for e in _events(events, "epoch")] == [2]
    assert any("resumed after epoch 1 of 2" in e["message"] for e in _events(events, "log"))
    assert _events(events, "checkpoint")[-1]["state"]["epoch"] == 2


def _detector_dataset(tmp: Path) -> Path:
    """8 of the demo project's shifted images with their true boxes: 6 to train on, 2 to validate on."""
    truth = json.loads((DETECTOR / "demo" / "truth.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    splits: dict[str, list[Item]] = {"train": [], "val": []}
    for i, image in enumerate(truth["images"][:8]):
        boxes = [Box(DIGITS.index(names[a["category_id"]]), *a["bbox"]) for a in truth["annotations"]
                 if a["image_id"] == image["id"]]
        splits["val" if i >= 6 else "train"].append(
            Item(image["file_name"], DETECTOR / "demo" / "images" / image["file_name"], image["width"],
                 image["height"], boxes=boxes))
    out = tmp / "demo-data"
    write_package(Dataset("detection", list(DIGITS), splits), out, name="qa/demo-digits", version="1.0.0")
    return out


def test_detector_finetune_runs(torch_python: Path, tmp_path: Path) -> None:  # noqa: F811
    trainer = _trainer(DETECTOR)
    work = tmp_path / "work"
    data = prepare(_detector_dataset(tmp_path), trainer, work)
    events: list[dict[str, Any]] = []
    outcome = run_trainer(torch_python, DETECTOR, trainer, data, work, {"epochs": 1}, on_event=events.append)
    assert set(outcome.metrics) == {"map50", "precision", "recall"}
    assert all(0 <= v <= 1 for v in (*outcome.metrics.values(), *outcome.base_metrics.values()))
    assert [e["epoch"] for e in _events(events, "epoch")] == [1]
    assert _events(events, "preview") and _events(events, "checkpoint")
    written = outcome.outputs["weights/model.safetensors"]
    assert _tensor_names(written) == _tensor_names(DETECTOR / "weights" / "model.safetensors")
