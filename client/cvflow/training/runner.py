"""The parent side of a fine-tune: start the trainer's process in the package's venv and follow it.

:func:`run_trainer` checks the hyperparameters, writes ``work_dir/spec.json`` and starts
``python -I -u .../cvflow/training/_boot.py --spec work_dir/spec.json`` with the package venv's
python (``python -I -u -m torch.distributed.run --standalone --nproc-per-node N _boot.py ...``
for N > 1), in a session of its own, with stdout and stderr appended to ``work_dir/train.log``.
While it runs, the parent reads the new lines of ``work_dir/events.jsonl`` and hands each event
to ``on_event`` (the progress bar of ``cvflow finetune``, the heartbeats of ``cvflow worker
--train``). Whatever ends the parent's wait (Ctrl-C, an ``on_event`` that raises because the
lease is lost), the child's process group is stopped before the exception goes on.

A run in a work folder that holds ``checkpoint/checkpoint.safetensors`` resumes from it (the
trainer reads it with ``context.load_checkpoint()``), and one that holds ``base_metrics.json``
does not evaluate the base again. ``output/`` is emptied first, so only this run's weights count.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cvflow.errors import TrainingError
from cvflow.manifest.training import Trainer
from cvflow.training.data import PreparedData

BOOT = Path(__file__).resolve().parent / "_boot.py"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "train.log"
SPEC_FILE = "spec.json"
CHECKPOINT = Path("checkpoint") / "checkpoint.safetensors"
#: Lines of train.log a failure's message ends with.
TAIL_LINES = 30
POLL_SECONDS = 0.2
#: How long a stopped child may take to exit after SIGTERM before SIGKILL (torchrun stops its workers).
STOP_GRACE_SECONDS = 10.0

EventCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainOutcome:
    """A finished fine-tune: its validation metrics before and after, and the new weight files."""

    metrics: dict[str, float]
    base_metrics: dict[str, float]
    device: str
    seconds: float
    #: The package's weight path (``weights/model.safetensors``) -> the new file under work_dir/output/.
    outputs: dict[str, Path]
    log_tail: str
    hyperparameters: dict[str, int | float | bool | str] = field(default_factory=dict)
    world_size: int = 1
    resumed: bool = False  #: the run went on from a checkpoint in work_dir


class _Follower:
    """Reads what a file gained since the last call, from where this run began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.start = self.offset
        self._partial = b""

    def new_bytes(self) -> bytes:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return b""
        self.offset += len(data)
        return data

    def new_lines(self) -> list[bytes]:
        """Whole new lines only: a line still being written waits for the next call."""
        data = self._partial + self.new_bytes()
        *lines, self._partial = data.split(b"\n")
        return lines


def _tail(path: Path, start: int, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines written to ``path`` since byte ``start``."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _argv(python: Path, spec_path: Path, nproc_per_node: int) -> list[str]:
    if nproc_per_node > 1:
        return [str(python), "-I", "-u", "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={nproc_per_node}", str(BOOT), "--spec", str(spec_path)]
    return [str(python), "-I", "-u", str(BOOT), "--spec", str(spec_path)]


def _env(python: Path, nproc_per_node: int) -> dict[str, str]:
    """The child's environment: ours without another venv's or Python path's settings; with
    N processes on one machine, each gets 1/N of the CPU cores for its threads unless
    ``OMP_NUM_THREADS`` says otherwise (torchrun would give each one thread)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    venv = python.parent.parent
    env.update({"VIRTUAL_ENV": str(venv), "PATH": str(python.parent) + os.pathsep + env.get("PATH", ""),
                "PYTHONUNBUFFERED": "1"})
    if nproc_per_node > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc_per_node))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a worker itself started by torchrun must not pass its rank on
    return env


def _stop(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's process group, then SIGKILL if it is still there after the grace time."""
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


def _failure(message: str, log: Path, start: int) -> TrainingError:
    tail = _tail(log, start)
    return TrainingError(f"{message}\n--- the last lines of {log} ---\n{tail}" if tail else message,
                         code="trainer_failed")


def run_trainer(python: Path, package_dir: Path, trainer: Trainer, data: PreparedData, work_dir: Path,
                hyperparameters: dict[str, object], *, nproc_per_node: int = 1,
                on_event: EventCallback | None = None, verbose: bool = False,
                device: str | None = None) -> TrainOutcome:
    """Run ``trainer`` of the package in ``package_dir`` with the venv's ``python`` on ``data``.

    ``device``: None picks CUDA when the child's torch sees it, else the CPU; ``"cpu"`` or
    ``"cuda"`` insist. ``verbose`` copies train.log to this process's stderr as it grows.

    Raises:
        TrainingError: ``invalid_hyperparameters`` before anything starts; ``trainer_failed``
            when the trainer raised, broke the contract or its process died (the message ends
            with the last lines of ``work_dir/train.log``).
        BaseException: whatever ``on_event`` raised (or a KeyboardInterrupt), after the child stopped.
    """
    try:
        resolved = trainer.resolve(hyperparameters)
    except ValueError as exc:
        raise TrainingError(f"trainer {trainer.name!r}: {exc}", code="invalid_hyperparameters") from exc
    if nproc_per_node < 1:
        raise ValueError("nproc_per_node must be at least 1")
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, not {device!r}")
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work_dir / "output", ignore_errors=True)
    resumed = (work_dir / CHECKPOINT).is_file()
    spec = {"format": 1, "package_dir": str(package_dir.resolve()), "data": str(data.data_json.resolve()),
            "work_dir": str(work_dir), "trainer": trainer.name, "class": trainer.class_path, "metric": trainer.metric,
            "weights": list(trainer.weights), "hyperparameters": resolved, "device": device}
    spec_path = work_dir / SPEC_FILE
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    log_path = work_dir / LOG_FILE
    events = _Follower(work_dir / EVENTS_FILE)
    log_start = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.write(f"--- {stamp} {trainer.name} of {package_dir.name}, {nproc_per_node} process(es)"
                  f"{', resuming' if resumed else ''} ---\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(_argv(python, spec_path, nproc_per_node), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=_env(python, nproc_per_node), cwd=work_dir,
                                     start_new_session=True, close_fds=True)
        except OSError as exc:
            raise TrainingError(f"cannot start {python}: {exc.strerror or exc}", code="trainer_failed") from exc
    echo = _Follower(log_path) if verbose else None
    if echo is not None:
        echo.offset = echo.start = log_start
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    try:
        while True:
            code = popen.poll()  # before reading: every event written before the exit is read below
            if echo is not None:
                _echo(echo, sys.stderr)
            for line in events.new_lines():
                event = _parse(line)
                if event is None:
                    continue
                if event.get("event") == "result":
                    result = event
                elif event.get("event") == "error" and error is None:
                    error = event
                if on_event is not None:
                    on_event(event)
            if code is not None:
                break
            time.sleep(POLL_SECONDS)
    except BaseException:
        _stop(popen)
        raise
    tail = _tail(log_path, log_start)
    if code != 0 or result is None:
        if error is not None:
            raise _failure(f"the trainer failed: {error.get('message')}", log_path, log_start)
        why = f"exited with status {code}" if code else "exited without a result"
        if code is not None and code < 0:
            why = f"was killed by signal {-code}"
        raise _failure(f"the trainer's process {why}", log_path, log_start)
    outputs = {weight: Path(path) for weight, path in dict(result.get("outputs") or {}).items()}
    missing = [w for w in trainer.weights if w not in outputs or not outputs[w].is_file()]
    if missing:
        raise _failure(f"the trainer did not write {', '.join(missing)}", log_path, log_start)
    return TrainOutcome(metrics=dict(result["metrics"]), base_metrics=dict(result["base_metrics"]),
                        device=str(result.get("device", "cpu")), seconds=float(result.get("seconds", 0.0)),
                        outputs=outputs, log_tail=tail, hyperparameters=resolved,
                        world_size=int(result.get("world_size", 1)), resumed=resumed)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def _echo(follower: _Follower, out: IO[str]) -> None:
    data = follower.new_bytes()
    if data:
        out.write(data.decode("utf-8", "replace"))
        out.flush()
