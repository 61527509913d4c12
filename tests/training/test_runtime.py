"""The training runtime end to end, as real processes: qa/tiny-trainer run by
cvflow.training.runner.run_trainer in a real venv with torch (one process here; torchrun in
test_torchrun.py), and a standard-library trainer written here, run in a bare venv (nothing
installed: the child needs the standard library alone), for the ways a trainer fails (fast: no
torch to import).
"""

from __future__ import annotations

import json
import os
import struct
import textwrap
import time
import venv
from pathlib import Path
from typing import Any

import pytest

from cvflow.errors import TrainingError
from cvflow.install.venv import venv_python
from cvflow.manifest import load_package_dir
from cvflow.manifest.training import Hyperparameter, Trainer
from cvflow.training.data import PreparedData, prepare
from cvflow.training.runner import run_trainer
from cvflow.training.runtime import TrainerFault, check_metrics
from tests.training.colors import colors_package
from tests.training.conftest import TINY_TRAINER


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    found = load_package_dir(TINY_TRAINER).trainer("finetune")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colors_package(tmp_path_factory.mktemp("colors") / "pkg", {"train": 24, "val": 6})


@pytest.fixture
def prepared(dataset: Path, trainer: Trainer, tmp_path: Path) -> PreparedData:
    return prepare(dataset, trainer, tmp_path / "work")


def _events(work: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]


def _safetensors_keys(path: Path) -> set[str]:
    """The tensor names in a safetensors file, read with the standard library (no torch here)."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return {k for k in header if k != "__metadata__"}


def test_trains_writes_weights_and_reports_every_event(torch_python: Path, trainer: Trainer,
                                                       prepared: PreparedData, tmp_path: Path) -> None:
    work = tmp_path / "work"
    seen: list[dict[str, Any]] = []
    outcome = run_trainer(torch_python, TINY_TRAINER, trainer, prepared, work, {"epochs": 3}, on_event=seen.append)
    # The base model (zero weights) says "red" to everything: a third of the balanced val split.
    assert outcome.base_metrics["accuracy"] == pytest.approx(1 / 3, abs=1e-6)
    assert outcome.metrics["accuracy"] >= 0.9 > outcome.base_metrics["accuracy"]
    assert outcome.device == "cpu" and outcome.world_size == 1 and not outcome.resumed and outcome.seconds > 0
    assert outcome.hyperparameters == {"epochs": 3, "lr": 0.5, "batch_size": 4, "stop_after_epoch": 0,
                                       "sleep": 0.0, "crash": ""}
    new = outcome.outputs["weights/model.safetensors"]
    assert new == work / "output" / "weights" / "model.safetensors"
    assert _safetensors_keys(new) == {"linear.weight", "linear.bias"}
    assert new.read_bytes() != (TINY_TRAINER / "weights" / "model.safetensors").read_bytes()
    # The callback got every event of events.jsonl, in order; the result is last.
    assert seen == _events(work)
    kinds = [e["event"] for e in seen]
    assert kinds[-1] == "result" and "error" not in kinds
    assert kinds.index("base") < kinds.index("preview") < kinds.index("progress") < kinds.index("epoch")
    assert [e["epoch"] for e in seen if e["event"] == "epoch"] == [1, 2, 3]
    assert [e["state"]["epoch"] for e in seen if e["event"] == "checkpoint"] == [1, 2, 3]
    assert all(isinstance(e["metrics"]["accuracy"], float) for e in seen if e["event"] == "epoch")
    progress = [e for e in seen if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == 18  # 24 images, batches of 4, 3 epochs
    assert any(e["event"] == "log" and e["message"].startswith("world_size 1") for e in seen)
    preview = Path(next(e["path"] for e in seen if e["event"] == "preview"))
    assert preview == work / "preview.png" and preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = seen[-1]
    assert result["metrics"] == outcome.metrics and result["base_metrics"] == outcome.base_metrics
    assert json.loads((work / "base_metrics.json").read_text()) == outcome.base_metrics
    assert (work / "checkpoint" / "checkpoint.safetensors").is_file()
    log = (work / "train.log").read_text()
    assert "finetune of qa-tiny-trainer, 1 process(es)" in log and "rank 0/1 on cpu" in log
    assert outcome.log_tail and outcome.log_tail in log


class _LeaseLost(Exception):
    pass


def test_a_stopped_run_resumes_from_its_checkpoint(torch_python: Path, trainer: Trainer, prepared: PreparedData,
                                                   tmp_path: Path) -> None:
    work = tmp_path / "work"
    pids: list[int] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "log" and "pid" in event["message"]:
            pids.append(int(event["message"].rsplit(" ", 1)[1]))
        if event["event"] == "checkpoint":  # the trainer now sleeps 30 s; the worker's lease is lost
            raise _LeaseLost

    started = time.monotonic()
    with pytest.raises(_LeaseLost):
        run_trainer(torch_python, TINY_TRAINER, trainer, prepared, work, {"epochs": 3, "sleep": 30.0},
                    on_event=on_event)
    assert time.monotonic() - started < 25 and pids and not _alive(pids[0])  # stopped, not left running
    first = _events(work)
    assert [e["event"] for e in first].count("checkpoint") == 1 and "result" not in [e["event"] for e in first]
    seen: list[dict[str, Any]] = []
    outcome = run_trainer(torch_python, TINY_TRAINER, trainer, prepared, work, {"epochs": 3}, on_event=seen.append)
    assert outcome.resumed and outcome.metrics["accuracy"] >= 0.9
    # Only this run's events reach the callback; it went on at epoch 2 and kept the base metrics.
    assert seen == _events(work)[len(first):]
    assert any(e["event"] == "log" and e["message"] == "resumed after epoch 1: starting epoch 2" for e in seen)
    assert [e["epoch"] for e in seen if e["event"] == "epoch"] == [2, 3]
    base = next(e for e in seen if e["event"] == "base")
    assert base["cached"] is True and base["metrics"] == next(e for e in first if e["event"] == "base")["metrics"]
    assert "resuming" in (work / "train.log").read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(("given", "why"), [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"lr": "fast"}, "lr must be a finite number"),
    ({"momentum": 0.9}, "unknown hyperparameter 'momentum'"),
])
def test_bad_hyperparameters_start_nothing(trainer: Trainer, prepared: PreparedData, tmp_path: Path,
                                           given: dict[str, object], why: str) -> None:
    work = tmp_path / "work"
    with pytest.raises(TrainingError) as err:
        run_trainer(Path("/nonexistent/python"), TINY_TRAINER, trainer, prepared, work, given)
    assert err.value.code == "invalid_hyperparameters" and why in err.value.message
    assert not (work / "train.log").exists() and not (work / "spec.json").exists()


def test_metric_tables_are_checked() -> None:
    assert check_metrics({"accuracy": 1, "loss": float("nan"), "note": "x", 3: 1.0}, "accuracy", "fit()") == {
        "accuracy": 1.0}
    for bad in ({"loss": 0.1}, {"accuracy": float("inf")}, {"accuracy": True}, [0.5]):
        with pytest.raises(TrainerFault, match="accuracy|not a dict"):
            check_metrics(bad, "accuracy", "fit()")


PLAIN = """
import json
import os


class Plain:
    def __init__(self, context):
        self.context = context
        self.mode = context.hyperparameters["mode"]
        if self.mode == "init":
            raise ValueError("broken in init")

    def evaluate(self, samples):
        return {"loss": 1.0} if self.mode == "no_metric" else {"accuracy": 0.25, "loss": 1.0}

    def fit(self, data):
        c = self.context
        c.progress(1, 1, loss=float("nan"), epoch=1)
        c.epoch_end(1, loss=float("inf"), metrics={"accuracy": 0.5})
        if self.mode == "raise":
            raise RuntimeError("asked to crash in fit")
        if self.mode == "exit":
            os._exit(1)
        seen = {"device": c.device, "rank": c.rank, "world_size": c.world_size, "hp": c.hyperparameters,
                "classes": list(data.classes), "task": data.task, "layout": data.layout, "root": str(data.root),
                "train": [[str(s.image), s.width, s.height, s.label] for s in data.train],
                "val": [[str(s.image), s.width, s.height, s.label] for s in data.val]}
        (c.work_dir / "seen.json").write_text(json.dumps(seen))
        if self.mode != "no_weights":
            c.output_path("weights/w.bin").write_bytes(b"new")
        return {"accuracy": 0.75, "loss": 0.5, "note": "not a number"}
"""


@pytest.fixture(scope="module")
def plain_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package whose trainer needs the standard library alone."""
    package = tmp_path_factory.mktemp("plain")
    (package / "plain_trainer.py").write_text(textwrap.dedent(PLAIN))
    return package


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv with nothing installed."""
    where = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(where, with_pip=False)
    return venv_python(where)


PLAIN_TRAINER = Trainer(name="plain", class_path="plain_trainer:Plain", task="classification", layout="imagefolder",
                        classes=("red", "green", "blue"), weights=("weights/w.bin",),
                        hyperparameters={"mode": Hyperparameter("mode", "ok")})


def test_the_child_sees_the_prepared_data(bare_python: Path, plain_package: Path, dataset: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    prepared = prepare(dataset, PLAIN_TRAINER, work)
    seen: list[dict[str, Any]] = []
    outcome = run_trainer(bare_python, plain_package, PLAIN_TRAINER, prepared, work, {}, verbose=True,
                          on_event=seen.append)
    assert outcome.metrics == {"accuracy": 0.75, "loss": 0.5}  # what is not a number is dropped
    assert outcome.base_metrics == {"accuracy": 0.25, "loss": 1.0} and outcome.device == "cpu"
    assert outcome.outputs == {"weights/w.bin": work / "output" / "weights" / "w.bin"}
    child = json.loads((work / "seen.json").read_text())
    data = json.loads(prepared.data_json.read_text())
    assert child["train"] == [[s["image"], s["width"], s["height"], s["label"]] for s in data["train"]]
    assert child["val"] == [[s["image"], s["width"], s["height"], s["label"]] for s in data["val"]]
    assert (child["classes"], child["task"], child["layout"], child["root"]) == (
        ["red", "green", "blue"], "classification", "imagefolder", str(prepared.root))
    assert (child["device"], child["rank"], child["world_size"], child["hp"]) == ("cpu", 0, 1, {"mode": "ok"})
    # Events are JSON that any reader takes: NaN and infinity become null.
    assert next(e for e in seen if e["event"] == "progress")["loss"] is None
    assert next(e for e in seen if e["event"] == "epoch")["loss"] is None
    assert "cvflow training: rank 0/1 on cpu" in capsys.readouterr().err  # verbose: the log as it grows


@pytest.mark.parametrize(("mode", "message"), [
    ("raise", "the trainer failed: RuntimeError: asked to crash in fit"),
    ("init", "the trainer failed: ValueError: broken in init"),
    ("exit", "the trainer's process exited with status 1"),
    ("no_weights", "the trainer failed: fit() did not write weights/w.bin (context.output_path('weights/w.bin'))"),
    ("no_metric", "the trainer failed: evaluate() returned no finite number for the declared metric 'accuracy'"),
])
def test_a_failing_trainer_fails_with_the_log_tail(bare_python: Path, plain_package: Path, dataset: Path,
                                                   tmp_path: Path, mode: str, message: str) -> None:
    work = tmp_path / "work"
    seen: list[dict[str, Any]] = []
    with pytest.raises(TrainingError) as err:
        run_trainer(bare_python, plain_package, PLAIN_TRAINER, prepare(dataset, PLAIN_TRAINER, work), work,
                    {"mode": mode}, on_event=seen.append)
    assert err.value.code == "trainer_failed" and err.value.message.startswith(message)
    assert f"--- the last lines of {work / 'train.log'} ---" in err.value.message
    if mode in ("raise", "init"):  # the traceback is in the log, and so in the message's tail
        assert "Traceback (most recent call last)" in err.value.message
        assert err.value.message.rstrip().endswith(message.rpartition("failed: ")[2])
    if mode != "exit":
        assert seen[-1]["event"] == "error" and seen[-1]["rank"] == 0
    assert not (work / "output" / "weights" / "w.bin").exists()
