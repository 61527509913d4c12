"""`cvflow init --trainer`: the scaffold's trainer validates and really fine-tunes.

The scaffold's model is a brightness threshold (Pillow only), so its trainer runs in this test
venv's python through the real training runtime (``cvflow.training.data.prepare`` and
``runner.run_trainer``: a child process, events, the new weight file), on a dataset package whose
bright and dark images part at a grey level far from the shipped threshold of 128.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

from cvflow.datasets import Dataset, Item, write_package
from cvflow.manifest import parse_manifest
from cvflow.training.data import prepare
from cvflow.training.runner import run_trainer
from tests.client_e2e._publish_helpers import cli_env, run_cli

#: Mean grey levels: "bright" from 80 up, "dark" below 60. The shipped threshold (128) calls
#: every image here "dark", so it gets only the dark half right.
LEVELS = {"bright": (80, 90, 100, 110, 120, 85, 95, 105), "dark": (20, 30, 40, 50, 55, 25, 35, 45)}


def _dataset(tmp: Path) -> Path:
    """A classification dataset package: 16 flat grey PNGs, a quarter of them in ``val``."""
    pictures = tmp / "pictures"
    pictures.mkdir()
    classes = ["bright", "dark"]
    splits: dict[str, list[Item]] = {"train": [], "val": []}
    for label, levels in LEVELS.items():
        for i, level in enumerate(levels):
            name = f"{label}-{i}.png"
            Image.new("RGB", (12, 10), (level, level, level)).save(pictures / name)
            splits["val" if i >= 6 else "train"].append(
                Item(name, pictures / name, 12, 10, label=classes.index(label)))
    out = tmp / "data"
    write_package(Dataset("classification", classes, splits), out, name="alice/bright-dark", version="1.0.0")
    return out


def test_init_trainer_validates_and_fine_tunes(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", None)
    pkg = tmp_path / "bright"
    made = run_cli(env, "init", str(pkg), "--name", "alice/bright", "--trainer")
    assert made.exit_code == 0, made.output
    assert "trainer.py" in made.output
    assert run_cli(env, "validate", str(pkg)).exit_code == 0
    manifest = parse_manifest((pkg / "cvflow.toml").read_text())
    [trainer] = manifest.trainers
    assert (trainer.name, trainer.class_path, trainer.task, trainer.metric) == (
        "finetune", "trainer:Finetune", "classification", "accuracy")
    assert trainer.weights == ("weights/threshold.json",) and trainer.classes == ("bright", "dark")
    assert "Fine-tune it" in (pkg / "README.md").read_text()

    work = tmp_path / "work"
    data = prepare(_dataset(tmp_path), trainer, work)
    assert (data.train_images, data.val_images, data.val_source) == (12, 4, "val")
    events: list[dict[str, object]] = []
    outcome = run_trainer(Path(sys.executable), pkg, trainer, data, work, {}, on_event=events.append)
    assert outcome.base_metrics == {"accuracy": 0.5}  # 128 calls every image dark
    assert outcome.metrics == {"accuracy": 1.0}
    threshold = json.loads(outcome.outputs["weights/threshold.json"].read_text())["threshold"]
    assert 55 < threshold <= 80
    kinds = {e["event"] for e in events}
    assert {"progress", "epoch", "preview", "log", "result"} <= kinds, kinds
    assert (work / "preview.png").is_file()
    # The package's own weights are untouched: the new ones are the run's output.
    assert json.loads((pkg / "weights" / "threshold.json").read_text()) == {"threshold": 128}


def test_init_trainer_needs_classification(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", None)
    result = run_cli(env, "init", str(tmp_path / "det"), "--name", "alice/det", "--task", "detection", "--trainer")
    assert result.exit_code == 1
    assert "classification trainer" in result.stderr
    assert not (tmp_path / "det" / "cvflow.toml").exists()
    # Without --trainer, no trainer is written or declared.
    assert run_cli(env, "init", str(tmp_path / "plain"), "--name", "alice/plain").exit_code == 0
    assert not (tmp_path / "plain" / "trainer.py").exists()
    assert "[[trainers]]" not in (tmp_path / "plain" / "cvflow.toml").read_text()
