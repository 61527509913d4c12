"""``cvflow worker --train``: claim fine-tune jobs from the hub and run them (docs/training.md, "Workers").

The loop::

    claim (POST /api/v1/training-jobs/claim)   nothing queued: sleep --poll (or stop with --once)
    fresh work folder for the job; its checkpoint, if the hub keeps one, into checkpoint/
    finetune(...) with the job's base, dataset, target, trainer and hyperparameters, while
      a heartbeat thread renews the lease every few seconds with the progress, the epochs'
        curves and the tail of train.log (the hub answers lease_lost: stop working on it)
      each checkpoint the trainer writes is uploaded (one upload at a time; an unchanged one
        is not sent again), the preview grid once
    finish: done with the published version and both metrics (the hub decides promotion),
      or failed with the error and the log's tail

A worker killed at any point leaves the job to its lease: once the lease runs out the hub
queues it again, with the last checkpoint uploaded, and the next worker resumes from it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvflow.errors import CVFlowError, HubError, HubNotFoundError, TrainingError
from cvflow.training.finetune import FinetuneResult, finetune
from cvflow.transfer import is_transient

if TYPE_CHECKING:
    from cvflow.api import HubClient
    from cvflow.config import Config

__all__ = ["JobReport", "LeaseLost", "TrainWorker", "TrainWorkerOptions", "default_worker_name"]

Log = Callable[[str], None]
#: How much of train.log goes into each heartbeat (the project page shows it).
LOG_TAIL_CHARS = 4000
CHECKPOINT_FILE = "checkpoint.safetensors"
#: A metric name as the hub takes one in a heartbeat's history.
_METRIC_NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")


class LeaseLost(CVFlowError):
    """The hub gave the job to someone else (this worker's lease ran out): stop working on it."""

    code = "lease_lost"


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


@dataclass
class TrainWorkerOptions:
    once: bool = False  #: one claim, then stop (also when nothing is queued)
    nproc_per_node: int = 1
    lease: int | None = None  #: seconds; None: the hub's default
    poll: float = 10.0  #: seconds between claims while nothing is queued
    projects: tuple[str, ...] = ()  #: only these projects' jobs (``ns/name``); empty: any
    work_dir: Path | None = None  #: where jobs run; None: CVFLOW_HOME/training/worker
    name: str = field(default_factory=default_worker_name)
    heartbeat: float = 5.0  #: seconds between heartbeats (shorter when the lease is short)
    verbose: bool = False


@dataclass
class JobReport:
    """How one job ended on this worker."""

    job: int
    project: str
    state: str  #: done, failed, or lost (the lease went to someone else)
    version: str | None = None
    promoted: bool | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "project": self.project, "state": self.state, "version": self.version,
                "promoted": self.promoted, "message": self.message}


class TrainWorker:
    """Claims and runs training jobs until stopped (``once``: one claim)."""

    def __init__(self, client: HubClient, config: Config, options: TrainWorkerOptions | None = None, *,
                 log: Log | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.config = config
        self.options = options or TrainWorkerOptions()
        self.log = log or (lambda _: None)
        self.sleep = sleep
        self.reports: list[JobReport] = []

    @property
    def work_dir(self) -> Path:
        return self.options.work_dir or self.config.home / "training" / "worker"

    def run(self) -> list[JobReport]:
        """Claim and run jobs; returns what each claimed job came to."""
        while True:
            try:
                report = self.run_one()
            except HubError as exc:
                if self.options.once or not is_transient(exc):
                    raise
                self.log(f"the hub did not answer the claim ({exc}); trying again in {self.options.poll:g} s")
                report = None
            if report is not None:
                self.reports.append(report)
            if self.options.once:
                return self.reports
            if report is None:
                self.sleep(self.options.poll)

    def run_one(self) -> JobReport | None:
        """Claim one job and run it; None when nothing is queued."""
        claim = self.client.claim_training_job(worker=self.options.name, lease_seconds=self.options.lease,
                                               projects=self.options.projects)
        if claim is None:
            return None
        job, lease = dict(claim["job"]), str(claim["lease"])
        if claim.get("checkpoint"):
            job["has_checkpoint"] = True
        return _Job(self, job, lease).run()


class _Job:
    """One claimed job: its folder, heartbeats, uploads and the finish."""

    def __init__(self, worker: TrainWorker, job: dict[str, Any], lease: str) -> None:
        self.worker = worker
        self.client = worker.client
        self.job = job
        self.id = int(job["id"])
        self.project = str(job.get("project") or "")
        self.lease = lease
        self.dir = worker.work_dir / f"job-{self.id}"
        self.log = worker.log
        self.lock = threading.Lock()
        self.lost = threading.Event()
        self.done = threading.Event()
        self.progress: dict[str, Any] | None = job.get("progress")
        self.history: list[dict[str, Any]] = list(job.get("history") or [])
        self.epochs = _epochs(job)
        # Checkpoint uploads: at most one in flight; a newer checkpoint waits for it.
        self.uploaded_digest: str | None = None
        self.upload_pending = False
        self.upload_thread: threading.Thread | None = None
        self.preview_sent = False

    def say(self, line: str) -> None:
        self.log(f"job {self.id} ({self.project}): {line}")

    def run(self) -> JobReport:
        resumed = bool(self.job.get("has_checkpoint"))
        self.say(f"claimed: {self.job.get('base')} on {self.job.get('dataset')} -> {self.job.get('target')}"
                 f" (trainer {self.job.get('trainer')})"
                 + (f"; {self.job.get('attempts')} lease(s) lost before" if self.job.get("attempts") else "")
                 + ("; resuming from its checkpoint" if resumed else ""))
        shutil.rmtree(self.dir, ignore_errors=True)  # what an earlier attempt on this machine left
        self.dir.mkdir(parents=True, exist_ok=True)
        beat = threading.Thread(target=self._heartbeats, name=f"cvflow-train-heartbeat-{self.id}", daemon=True)
        beat.start()  # the lease is renewed while the checkpoint, the packages and the venv come too
        try:
            if resumed:
                self.client.get_training_checkpoint(self.id, self.lease, self.dir / "checkpoint" / CHECKPOINT_FILE)
            result = finetune(
                self.client, self.worker.config.cache(), self.worker.config, str(self.job["base"]),
                str(self.job["dataset"]), str(self.job["target"]), trainer=self.job.get("trainer"),
                hyperparameters=dict(self.job.get("hyperparameters") or {}),
                nproc_per_node=self.worker.options.nproc_per_node, work_dir=self.dir,
                on_event=self._on_event, private=self._private(), verbose=self.worker.options.verbose)
        except LeaseLost:
            return self._lost()
        except (CVFlowError, OSError) as exc:
            if self.lost.is_set():
                return self._lost()
            return self._failed(exc)
        finally:
            self.done.set()
            if beat.is_alive():
                beat.join(10)
        if self.lost.is_set():
            return self._lost()
        self._wait_for_upload()
        return self._finish(result)

    def _private(self) -> bool | None:
        """True when a private project's fine-tune starts its target package (a public one would
        show the names of the private dataset in its lineage). None otherwise: an existing
        package keeps whoever may see it (a publish that says private changes it)."""
        try:
            if not self.client.project(self.project).get("private"):
                return None
            self.client.package(str(self.job["target"]))
        except HubNotFoundError:
            return True  # the target is new (or one this token may not read, which the publish refuses)
        except HubError:
            return None
        return None

    # -- events from the trainer (the runner's thread)

    def _on_event(self, event: dict[str, Any]) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"job {self.id}: the hub gave the job to another worker (this one's lease ran out)")
        kind = event.get("event")
        if kind == "progress":
            with self.lock:
                self.progress = {"step": _count(event.get("step")), "total": _count(event.get("total")),
                                 "epoch": _count(event.get("epoch")), "loss": _finite(event.get("loss"))}
        elif kind == "epoch":
            # What the hub takes: a NaN loss (it happens) must not make every later heartbeat invalid.
            scores = dict(list({str(k): _finite(v) for k, v in dict(event.get("metrics") or {}).items()
                                if _finite(v) is not None and _METRIC_NAME.match(str(k))}.items())[:32])
            entry = {"epoch": _count(event.get("epoch")) or 0, "loss": _finite(event.get("loss")), "metrics": scores}
            with self.lock:
                self.history = [h for h in self.history if h.get("epoch") != entry["epoch"]] + [entry]
            metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in scores.items())
            self.say(f"epoch {entry['epoch']}{'' if self.epochs is None else f'/{self.epochs}'}"
                     f" loss {_fmt(entry['loss'])}" + (f", {metrics}" if metrics else ""))
        elif kind == "checkpoint":
            self._upload_checkpoint()
        elif kind == "preview" and not self.preview_sent:
            self.preview_sent = True
            path = Path(str(event.get("path") or self.dir / "preview.png"))
            try:
                self.client.put_training_preview(self.id, self.lease, path.read_bytes())
            except (HubError, OSError) as exc:
                self._note_lost(exc)
                self.say(f"the preview was not uploaded: {exc}")

    # -- heartbeats (their own thread)

    def _heartbeats(self) -> None:
        lease = self.worker.options.lease
        every = self.worker.options.heartbeat if lease is None else min(self.worker.options.heartbeat, lease / 3)
        while not self.done.wait(max(0.2, every)):
            if not self._beat():
                return
        if not self.lost.is_set():
            self._beat()  # the last epochs and log lines: a short run may end between two beats

    def _beat(self) -> bool:
        """One heartbeat with the progress, the curves and the log tail; False once the lease is lost."""
        with self.lock:
            progress, history = self.progress, list(self.history)
        try:
            self.client.training_heartbeat(self.id, self.lease, progress=progress, history=history,
                                           log_tail=self._log_tail(), lease_seconds=self.worker.options.lease)
        except HubError as exc:
            if self._note_lost(exc):
                self.say("lease lost: the hub gave the job to another worker; stopping")
                return False
            if not is_transient(exc):
                self.say(f"heartbeat refused: {exc}")
        return True

    def _note_lost(self, exc: BaseException) -> bool:
        if isinstance(exc, HubError) and exc.code in ("lease_lost", "job_not_found"):
            self.lost.set()
            return True
        return False

    def _log_tail(self) -> str:
        path = self.dir / "train.log"
        try:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - LOG_TAIL_CHARS))
                return f.read().decode("utf-8", "replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""

    # -- checkpoint uploads

    def _upload_checkpoint(self) -> None:
        with self.lock:
            if self.upload_thread is not None and self.upload_thread.is_alive():
                self.upload_pending = True  # the running upload sends the newest one again when it ends
                return
            self.upload_thread = threading.Thread(target=self._uploads, name=f"cvflow-train-upload-{self.id}",
                                                  daemon=True)
            self.upload_thread.start()

    def _uploads(self) -> None:
        while True:
            with self.lock:
                self.upload_pending = False
            self._upload_once()
            with self.lock:
                if not self.upload_pending or self.lost.is_set():
                    return

    def _upload_once(self) -> None:
        path = self.dir / "checkpoint" / CHECKPOINT_FILE
        try:
            # One open file: the trainer renames a newer checkpoint into place, this one stays whole.
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                digest = hashlib.file_digest(f, "sha256").hexdigest()
                if digest == self.uploaded_digest:
                    return
                f.seek(0)
                self.client.put_training_checkpoint(self.id, self.lease, f, size)
            self.uploaded_digest = digest
        except (HubError, OSError) as exc:
            if not self._note_lost(exc):
                self.say(f"the checkpoint was not uploaded: {exc}")

    def _wait_for_upload(self) -> None:
        thread = self.upload_thread
        if thread is not None:
            thread.join(600)

    # -- endings

    def _finish(self, result: FinetuneResult) -> JobReport:
        self.say(f"published {result.name}@{result.version}: {result.metric} {_fmt(result.value)}"
                 f" (base {_fmt(result.base_value)})")
        lineage = result.lineage
        try:
            doc = self._call(lambda: self.client.finish_training_job(
                self.id, self.lease, state="done", version=result.version, metrics=lineage.metrics,
                base_metrics=lineage.base_metrics, device=lineage.device, seconds=lineage.seconds))
        except HubError as exc:
            if self._note_lost(exc):
                return self._lost()
            return self._failed(exc)  # e.g. invalid_training: the hub refused the version as this job's
        promoted = doc.get("promoted")
        self.say(f"promoted: {doc.get('target') or result.name}=={result.version} now suggests labels"
                 if promoted else "kept: the project's model stays (the fine-tune did not beat it)")
        shutil.rmtree(self.dir, ignore_errors=True)
        return JobReport(self.id, self.project, "done", version=result.version, promoted=bool(promoted))

    def _failed(self, exc: BaseException) -> JobReport:
        code = getattr(exc, "code", None)
        text = str(exc)
        first, _, rest = text.partition("\n")
        message = f"{first} [{code}]" if code and f"[{code}]" not in first else first
        # A refusal before training (no trainer, bad data) has no log worth sending.
        tail = "" if isinstance(exc, TrainingError) and exc.code != "trainer_failed" else self._log_tail()
        self.say(f"failed: {message}")
        try:
            self._call(lambda: self.client.finish_training_job(
                self.id, self.lease, state="failed", message=f"{message}\n{rest}".strip()[:8000],
                log_tail=tail or None))
        except HubError as finish_error:
            if self._note_lost(finish_error):
                return self._lost()
            self.say(f"the hub did not take the failure: {finish_error}")
        return JobReport(self.id, self.project, "failed", message=message)

    def _lost(self) -> JobReport:
        self.say("stopped: its lease went to another worker")
        return JobReport(self.id, self.project, "lost")

    def _call(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A finishing call, tried again while the hub is unreachable (the lease may still hold)."""
        for attempt in range(1, 6):
            try:
                return call()
            except HubError as exc:
                if not is_transient(exc) or attempt == 5:
                    raise
                self.worker.sleep(min(10.0, 0.5 * 2 ** attempt))
        raise AssertionError("unreachable")


def _epochs(job: dict[str, Any]) -> int | None:
    value = (job.get("hyperparameters") or {}).get("epochs")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "?" if value is None else str(value)


def _finite(value: object) -> float | None:
    """A number the hub's JSON takes (finite), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
