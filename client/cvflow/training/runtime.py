"""The child side of a fine-tune: runs a package's trainer in the package's venv.

Started by :mod:`cvflow.training.runner` as ``python -I -u .../cvflow/training/_boot.py --spec
SPEC.json`` (or under ``python -m torch.distributed.run``, one process per rank), it needs the
standard library alone plus whatever the trainer imports (torch, when it is there, only to pick
the device and to set up the process group). The spec (JSON, :func:`read_spec`)::

    {"package_dir": "...", "data": ".../data.json", "work_dir": "...", "trainer": "finetune",
     "class": "module.path:ClassName", "metric": "accuracy", "weights": ["weights/model.safetensors"],
     "hyperparameters": {...resolved...}, "device": null | "cpu" | "cuda"}

What it does, in order: put the package folder first on ``sys.path``; pick the device
(``cuda:LOCAL_RANK`` when torch sees CUDA, else ``cpu``); under torchrun (``WORLD_SIZE`` > 1)
start the process group (NCCL on CUDA, gloo on CPU); build the trainer with a
:class:`cvflow.training.api.Context`; ``evaluate(val)`` for the base metrics (skipped when
``work_dir/base_metrics.json`` holds them from an earlier attempt); ``fit(data)``; check that
every declared weight was written under ``work_dir/output/`` and that both metric tables hold
the declared metric as a finite number; then the ``result`` event. Events are JSON lines
appended to ``work_dir/events.jsonl`` by rank 0 (an ``error`` by any rank); a failure prints
its traceback (to ``train.log``, where the parent sends stdout and stderr) and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cvflow.training.api import BoxLabel, Context, Sample, TrainingData, environment_rank, write_json

SPEC_FORMAT = 1
#: data.json's format (cvflow.training.data.DATA_FORMAT; not imported: that module needs the client's dependencies).
DATA_FORMAT = 1
EVENTS_FILE = "events.jsonl"
BASE_METRICS_FILE = "base_metrics.json"
OUTPUT_DIR = "output"
MAX_METRICS = 64


class TrainerFault(Exception):
    """The trainer broke the contract (a missing weight, a metric that is not a number)."""


def read_spec(path: Path) -> dict[str, Any]:
    """The spec the parent wrote; ValueError when it is not one."""
    spec = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{path} is not a training spec of format {SPEC_FORMAT}")
    return spec


def _sample(raw: Mapping[str, Any]) -> Sample:
    boxes = tuple(BoxLabel(str(b["label"]), float(b["x"]), float(b["y"]), float(b["w"]), float(b["h"]))
                  for b in raw.get("boxes") or ())
    label = raw.get("label")
    return Sample(Path(raw["image"]), int(raw["width"]), int(raw["height"]),
                  None if label is None else str(label), boxes)


def read_data(path: Path) -> TrainingData:
    """``data.json`` (written by cvflow.training.data.prepare) as the trainer's :class:`TrainingData`."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("format") != DATA_FORMAT:
        raise ValueError(f"{path} is not prepared data of format {DATA_FORMAT}")
    return TrainingData(task=str(raw["task"]), classes=tuple(str(c) for c in raw["classes"]),
                        train=tuple(_sample(s) for s in raw["train"]), val=tuple(_sample(s) for s in raw["val"]),
                        root=Path(raw["root"]), layout=str(raw["layout"]))


class EventLog:
    """Appends events as JSON lines, one ``write`` each, flushed: the parent reads whole lines."""

    def __init__(self, path: Path, rank: int) -> None:
        self.path = path
        self.rank = rank
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        """Rank 0's events are written; other ranks' only when they are errors."""
        if self.rank != 0 and event.get("event") != "error":
            return
        line = json.dumps(_finite({**event, "time": round(time.time(), 3)}), ensure_ascii=False, default=str,
                          allow_nan=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        if event.get("event") == "log":
            print(event.get("message"), flush=True)  # the log's tail shows it too


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: the events are JSON that any reader takes."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _torch() -> Any | None:
    """torch, when the package's venv has it (a trainer need not use it)."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def pick_device(requested: str | None, local_rank: int, torch: Any | None) -> str:
    """``cuda:LOCAL_RANK`` when torch sees CUDA (and ``requested`` is not ``cpu``), else ``cpu``."""
    cuda = torch is not None and bool(torch.cuda.is_available())
    if requested == "cuda" and not cuda:
        raise RuntimeError("the spec asks for CUDA, but torch sees no CUDA device here")
    if requested == "cpu" or not cuda:
        return "cpu"
    return f"cuda:{local_rank}"


def load_class(class_path: str, package_dir: Path) -> Callable[[Context], Any]:
    """The trainer class ``module.path:ClassName``, imported with the package folder first on sys.path."""
    where = str(package_dir)
    if where not in sys.path:
        sys.path.insert(0, where)
    module_name, _, name = class_path.partition(":")
    cls = getattr(importlib.import_module(module_name), name, None)
    if cls is None:
        raise TrainerFault(f"{module_name} has no {name}")
    return cls  # type: ignore[no-any-return]


def check_metrics(metrics: object, metric: str, what: str) -> dict[str, float]:
    """A trainer's metric table as ``{name: finite float}``; TrainerFault when the declared
    ``metric`` is missing or not a finite number (other entries that are not numbers are dropped)."""
    if not isinstance(metrics, Mapping):
        raise TrainerFault(f"{what} returned {type(metrics).__name__}, not a dict of metrics")
    out: dict[str, float] = {}
    for key, value in metrics.items():
        number = _number(value)
        if isinstance(key, str) and number is not None and len(out) < MAX_METRICS:
            out[key] = number
    if metric not in out:
        raise TrainerFault(f"{what} returned no finite number for the declared metric {metric!r}: "
                           f"{dict(metrics)!r}"[:1000])
    return out


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # ints, floats, numpy and 0-d torch values
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _watch_parent() -> None:
    """Exit when the process that started this one is gone: a trainer must not outlive a
    killed worker (torchrun's own workers live in sessions of their own)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="cvflow-parent-watch", daemon=True).start()


def run(spec: Mapping[str, Any]) -> int:
    """Train as the spec says (see the module docstring); the process's exit status."""
    started = time.monotonic()
    rank, world_size, local_rank = environment_rank()
    work_dir = Path(spec["work_dir"])
    events = EventLog(work_dir / EVENTS_FILE, rank)
    dist: Any | None = None
    try:
        package_dir = Path(spec["package_dir"])
        torch = _torch()
        device = pick_device(spec.get("device"), local_rank, torch)
        if world_size > 1:
            if torch is None:
                raise RuntimeError("a distributed run (torchrun) needs torch in the package's venv")
            dist = torch.distributed
            if device.startswith("cuda"):
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        print(f"cvflow training: rank {rank}/{world_size} on {device}, pid {os.getpid()}", flush=True)
        metric = str(spec["metric"])
        context = Context(package_dir=package_dir, work_dir=work_dir, device=device,
                          hyperparameters=dict(spec["hyperparameters"]), metric=metric, rank=rank,
                          world_size=world_size, local_rank=local_rank, emit=events)
        data = read_data(Path(spec["data"]))
        if (context.checkpoint_dir / "checkpoint.safetensors").is_file():
            context.log("resuming from the checkpoint in " + str(context.checkpoint_dir))
        trainer = load_class(str(spec["class"]), package_dir)(context)
        base_file = work_dir / BASE_METRICS_FILE
        known = base_file.is_file()
        if dist is not None:
            dist.barrier()  # every rank decided before rank 0 may write the file: all evaluate, or none
        if known:
            base = check_metrics(json.loads(base_file.read_text(encoding="utf-8")), metric, BASE_METRICS_FILE)
        else:
            base = check_metrics(trainer.evaluate(data.val), metric, "evaluate()")
            if rank == 0:
                write_json(base_file, base)
        events({"event": "base", "metrics": base, "cached": known})
        metrics = check_metrics(trainer.fit(data), metric, "fit()")
        if dist is not None:
            dist.barrier()  # rank 0's outputs are written once every rank is through fit
        if rank == 0:
            outputs = {}
            for weight in spec.get("weights") or ():
                path = work_dir / OUTPUT_DIR / weight
                if not path.is_file():
                    raise TrainerFault(f"fit() did not write {weight} (context.output_path({weight!r}))")
                outputs[weight] = str(path)
            events({"event": "result", "metrics": metrics, "base_metrics": base, "device": device,
                    "world_size": world_size, "seconds": round(time.monotonic() - started, 3),
                    "outputs": outputs})
        if dist is not None:
            dist.destroy_process_group()
        return 0
    except BaseException as exc:
        traceback.print_exc()
        sys.stdout.flush()
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrainerFault) else str(exc)
        with contextlib.suppress(OSError):
            events({"event": "error", "message": message[:4000], "rank": rank})
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cvflow.training", description="Run a package's trainer (internal).")
    parser.add_argument("--spec", required=True, type=Path, help="the spec JSON the parent wrote")
    args = parser.parse_args(argv)
    _watch_parent()
    try:
        spec = read_spec(args.spec)
    except (OSError, ValueError) as exc:
        print(f"cvflow training: cannot read the spec: {exc}", file=sys.stderr, flush=True)
        return 2
    return run(spec)
