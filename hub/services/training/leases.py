"""The worker's side of a training job: claim with a lease, heartbeats, checkpoints, the preview
grid, and finish with promotion.

A claim takes the oldest queued job of a project the caller may read and whose target package
they may publish to (their token's scopes and their role both), with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL and the write lock on SQLite, as :mod:`hub.services.jobs` claims index jobs: two
workers never hold one job. Running jobs whose lease ran out are put back first (their
checkpoint kept, ``attempts`` counting the lost leases); the third lost lease fails the job.

The claim hands the worker a random lease secret, of which only the sha256 is kept. Every
later call proves the lease with it: the same user, the secret, a lease not yet run out, and
the job still running; otherwise ``lease_lost`` (409), and the worker stops. A caller who may
not see the job's project is told ``job_not_found``, as for a job that does not exist.

A checkpoint is a safetensors file (never a pickle: it travels between workers), checked as
it streams in: the 8-byte length and the JSON header within bounds, the tensors' offsets
inside the file, and the trainer's JSON state in the header's ``cvflow_state`` metadata. It is
stored as a blob and named on the job, with its state, for the next worker to resume from.
The preview is a PNG or JPEG whose header passes the rules items' images pass.

``finish`` names the version the worker published; the hub checks its lineage is this job's
(base and dataset) and records the trainer's metric for the base and the fine-tune. A
fine-tune that beats its base becomes the project's suggestion model (``target`` at ``=VERSION``),
and every unsaved item is offered to suggestion workers again.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from cvflow.datasets.images import ImageProblem, read_header_from
from cvflow.errors import CVFlowError
from cvflow.safeparse import loads_json
from cvflow.versions import Version as SemVer
from cvflow.versions import VersionRange
from hub.db import session_scope
from hub.errors import HubError
from hub.models import (
    AnnotationItem,
    AnnotationProject,
    Blob,
    TrainingJob,
    Version,
    VersionLineage,
    utcnow,
)
from hub.redact import redact
from hub.services import packages
from hub.services.access import can_read_project, visible_projects_filter
from hub.services.accounts import Principal
from hub.services.annotation.images import MAX_SIDE
from hub.services.blobs import UploadService
from hub.services.training.loop import job_document, may_publish_to, project_name

#: A job fails after this many lost leases.
MAX_LOST_LEASES = 3
#: The largest checkpoint (the hub's ``max_blob_size`` applies too).
MAX_CHECKPOINT_BYTES = 512 << 20
#: The largest safetensors JSON header, and the largest ``cvflow_state`` in it.
MAX_CHECKPOINT_HEADER = 16 << 20
MAX_STATE_BYTES = 1 << 20
#: The largest preview grid.
MAX_PREVIEW_BYTES = 8 << 20
#: The log tail kept on a job (its last bytes), the epochs of its history, the metrics per epoch.
LOG_TAIL_BYTES = 8 << 10
MAX_HISTORY = 1000
MAX_EPOCH_METRICS = 32
#: Queued jobs a claim looks at before it gives up (older ones the caller may not take are skipped).
_CANDIDATES = 100


@dataclass
class Claimed:
    """A claimed job, its project's name, the lease secret and the checkpoint to resume from."""

    job: TrainingJob
    project: str
    lease: str
    checkpoint: dict[str, Any] | None

    def document(self) -> dict[str, Any]:
        return {"job": job_document(self.job, self.project), "lease": self.lease,
                "lease_expires_at": _iso(self.job.lease_expires_at), "checkpoint": self.checkpoint}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else _aware(value).isoformat()


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def tail(text: str) -> str:
    """The last :data:`LOG_TAIL_BYTES` of a log, credentials redacted."""
    data = redact(text).encode("utf-8", "replace")[-LOG_TAIL_BYTES:]
    return data.decode("utf-8", "ignore")


def requeue_lost(session: Session) -> int:
    """Put back the running jobs whose lease ran out (checkpoint kept); fail those that lost
    :data:`MAX_LOST_LEASES`. How many were put back or failed."""
    now = utcnow()
    lost = session.exec(select(TrainingJob).where(
        TrainingJob.state == "running", col(TrainingJob.lease_expires_at) < now)
        .with_for_update(skip_locked=True)).all()
    for job in lost:
        job.attempts += 1
        job.lease_hash = job.lease_expires_at = None
        if job.attempts >= MAX_LOST_LEASES:
            job.state, job.finished_at = "failed", now
            job.message = (f"the job lost its worker {job.attempts} times (each lease ran out without a heartbeat); "
                           "its last checkpoint is kept")
        else:
            job.state = "queued"
            job.message = f"lease {job.attempts} ran out ({job.worker or 'a worker'}); queued again"
        session.add(job)
    session.flush()
    return len(lost)


def claim(engine: Engine, who: Principal, *, worker: str, lease_seconds: int,
          projects: list[str] | None = None) -> Claimed | None:
    """Take the oldest queued job the caller may run (see the module's text); None when none is left."""
    user = who.require_user()
    with session_scope(engine, write=True) as session:
        requeue_lost(session)
        query = (select(TrainingJob).join(AnnotationProject, col(AnnotationProject.id) == TrainingJob.project_id)
                 .where(TrainingJob.state == "queued", visible_projects_filter(who)))
        if projects is not None:
            query = query.where(col(AnnotationProject.full_name).in_([p.lower() for p in projects]))
        candidates = session.exec(query.order_by(col(TrainingJob.id)).limit(_CANDIDATES)
                                  .with_for_update(skip_locked=True, of=TrainingJob)).all()
        for job in candidates:
            project = session.get(AnnotationProject, job.project_id)
            if project is None or not can_read_project(session, who, project):
                continue
            if not may_publish_to(session, who, job.target_package, scoped=True):
                continue
            secret = secrets.token_urlsafe(32)
            now = utcnow()
            job.state, job.claimed_by, job.worker = "running", user.id, worker[:200]
            job.lease_hash, job.lease_expires_at = _hash(secret), now + timedelta(seconds=lease_seconds)
            job.heartbeat_at = now
            job.started_at = job.started_at or now
            session.add(job)
            session.flush()
            checkpoint = None
            if job.checkpoint_sha256 is not None:
                blob = session.get(Blob, job.checkpoint_sha256)
                checkpoint = {"sha256": job.checkpoint_sha256, "size": blob.size if blob else None,
                              "state": job.checkpoint_state}
            return Claimed(job, project.full_name, secret, checkpoint)
        return None


def held_job(session: Session, who: Principal, job_id: int, lease: str | None) -> TrainingJob:
    """The job, its row locked, if the caller holds its lease; ``job_not_found`` or ``lease_lost``."""
    job = session.get(TrainingJob, job_id, with_for_update=True, populate_existing=True)
    project = session.get(AnnotationProject, job.project_id) if job is not None else None
    if job is None or project is None or not can_read_project(session, who, project):
        raise HubError("job_not_found", f"no training job {job_id}")
    held = (job.state == "running" and who.user is not None and job.claimed_by == who.user.id
            and job.lease_hash is not None and lease is not None
            and hmac.compare_digest(_hash(lease), job.lease_hash)
            and job.lease_expires_at is not None and _aware(job.lease_expires_at) > utcnow())
    if not held:
        raise HubError("lease_lost", f"you do not hold the lease of training job {job_id} (it is {job.state})")
    return job


def heartbeat(session: Session, who: Principal, job_id: int, lease: str, *, progress: dict[str, Any] | None = None,
              history: list[dict[str, Any]] | None = None, log_tail: str | None = None,
              lease_seconds: int | None = None) -> dict[str, Any]:
    """Record the worker's progress, the epochs' curves (the whole list, at most
    :data:`MAX_HISTORY`) and its log tail (redacted, the last 8 KiB); extend the lease by
    ``lease_seconds`` (the claim's length unless given). ``{"lease_expires_at"}``."""
    job = held_job(session, who, job_id, lease)
    now = utcnow()
    if lease_seconds is None:
        assert job.lease_expires_at is not None and job.heartbeat_at is not None
        lease_seconds = max(int((_aware(job.lease_expires_at) - _aware(job.heartbeat_at)).total_seconds()), 10)
    if progress is not None:
        job.progress = progress
    if history is not None:
        job.history = history[-MAX_HISTORY:]
    if log_tail is not None:
        job.log_tail = tail(log_tail)
    job.heartbeat_at, job.lease_expires_at = now, now + timedelta(seconds=lease_seconds)
    session.add(job)
    session.flush()
    return {"lease_expires_at": _iso(job.lease_expires_at)}


# --- checkpoints and previews --------------------------------------------------------------------


class _Safetensors:
    """The pieces of an upload, passed on while the safetensors layout is checked: the header's
    length and JSON first, then that the file ends where the tensors' offsets say it does."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self.pieces = pieces
        self.state: dict[str, Any] | None = None

    @staticmethod
    def _bad(message: str) -> HubError:
        return HubError("invalid_training", f"the checkpoint is not a safetensors file: {message}")

    def _header(self, raw: bytes) -> int:
        """Check the JSON header; the size of the tensors' data that follows it."""
        try:
            header = loads_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._bad(f"its header is not JSON ({exc})") from None
        if not isinstance(header, dict):
            raise self._bad("its header is not a JSON object")
        end = 0
        for name, entry in header.items():
            if name == "__metadata__":
                if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                    raise self._bad("__metadata__ must map names to strings")
                self.state = self._state(entry.get("cvflow_state"))
                continue
            offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and isinstance(shape, list)
                    and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
                    and isinstance(offsets, list) and len(offsets) == 2
                    and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                    and 0 <= offsets[0] <= offsets[1]):
                raise self._bad(f"tensor {str(name)[:64]!r} has no valid dtype, shape and data_offsets")
            end = max(end, offsets[1])
        return end

    def _state(self, text: object) -> dict[str, Any] | None:
        if text is None:
            return None
        if not isinstance(text, str) or len(text) > MAX_STATE_BYTES:
            raise self._bad(f"cvflow_state must be JSON text of at most {MAX_STATE_BYTES} bytes")
        try:
            state = loads_json(text)
        except ValueError:
            raise self._bad("cvflow_state is not JSON") from None
        if not isinstance(state, dict):
            raise self._bad("cvflow_state must be a JSON object")
        return state

    def __iter__(self) -> Iterator[bytes]:
        head = bytearray()
        expected: int | None = None
        total = 0
        for piece in self.pieces:
            total += len(piece)
            if expected is None:
                head += piece
                if len(head) >= 8:
                    (length,) = struct.unpack("<Q", bytes(head[:8]))
                    if not 2 <= length <= MAX_CHECKPOINT_HEADER:
                        raise self._bad(f"its header length ({length}) is not 2 to {MAX_CHECKPOINT_HEADER} bytes")
                    if len(head) >= 8 + length:
                        expected = 8 + length + self._header(bytes(head[8 : 8 + length]))
            if expected is not None and total > expected:
                raise self._bad("it goes on past its last tensor")
            yield piece
        if expected is None:
            raise self._bad("it ends inside its header")
        if total != expected:
            raise self._bad(f"it ends at byte {total}, its tensors at byte {expected}")


def store_checkpoint(uploads: UploadService, pieces: Iterable[bytes], *, limit: int = MAX_CHECKPOINT_BYTES,
                     size: int | None = None) -> tuple[str, int, dict[str, Any] | None]:
    """Store a checkpoint's bytes as a blob, checked as they stream (outside any session);
    ``(sha256, size, state)``. Raises ``invalid_training``, ``upload_too_large``,
    ``size_mismatch`` and ``storage_unavailable``; then nothing is stored."""
    checked = _Safetensors(pieces)
    digest, total = uploads.put_stream(iter(checked), size, grant_to=None, max_size=limit)
    return digest, total, checked.state


def store_preview(uploads: UploadService, data: bytes) -> str:
    """Store a preview grid (a PNG or JPEG within the items' limits, at most 8 MiB); its sha256."""
    if len(data) > MAX_PREVIEW_BYTES:
        raise HubError("body_too_large", f"a preview may be at most {MAX_PREVIEW_BYTES} bytes")
    try:
        header = read_header_from(io.BytesIO(data), len(data), where="preview")
    except ImageProblem as exc:
        raise HubError("invalid_image", f"the preview is not an image the hub accepts: {exc.problem.message}") from None
    if max(header.width, header.height) > MAX_SIDE:
        raise HubError("invalid_image", f"the preview is {header.width}x{header.height} pixels, over {MAX_SIDE} a side")
    return uploads.put_small(data, grant_to=None)


def record_checkpoint(session: Session, who: Principal, job_id: int, lease: str, digest: str, size: int,
                      state: dict[str, Any] | None) -> dict[str, Any]:
    """Name the stored checkpoint on the job (its lease still held); ``{"sha256", "size", "state"}``."""
    job = held_job(session, who, job_id, lease)
    job.checkpoint_sha256, job.checkpoint_state = digest, state
    session.add(job)
    session.flush()
    return {"sha256": digest, "size": size, "state": state}


def record_preview(session: Session, who: Principal, job_id: int, lease: str, digest: str) -> None:
    job = held_job(session, who, job_id, lease)
    job.preview_sha256 = digest
    session.add(job)
    session.flush()


def checkpoint_blob(session: Session, who: Principal, job_id: int, lease: str) -> tuple[str, int]:
    """The job's checkpoint for its lease's holder, ``(sha256, size)``; ``not_found`` without one."""
    job = held_job(session, who, job_id, lease)
    blob = session.get(Blob, job.checkpoint_sha256) if job.checkpoint_sha256 else None
    if blob is None:
        raise HubError("not_found", f"training job {job_id} has no checkpoint yet")
    return blob.sha256, blob.size


# --- finish ------------------------------------------------------------------------------------


def _lineage(session: Session, row: Version) -> tuple[str | None, str | None, dict[str, Any]]:
    """``(base, dataset, the manifest's [lineage])`` of a version: the recorded row when the
    publish wrote one, else the manifest's table."""
    table = json.loads(row.manifest).get("lineage") or {}
    recorded = session.get(VersionLineage, row.id)
    if recorded is not None:
        return (f"{recorded.base_package}@{recorded.base_version}",
                f"{recorded.dataset_package}@{recorded.dataset_version}", table)
    base, dataset = table.get("base"), table.get("dataset")
    return (base if isinstance(base, str) else None, dataset if isinstance(dataset, str) else None, table)


def _metric(name: str, *tables: object) -> float | None:
    for table in tables:
        value = table.get(name) if isinstance(table, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def finish(session: Session, who: Principal, job_id: int, lease: str, *, state: Literal["done", "failed"],
           version: str | None = None, metrics: dict[str, float] | None = None,
           base_metrics: dict[str, float] | None = None, device: str | None = None, seconds: float | None = None,
           message: str | None = None, log_tail: str | None = None) -> dict[str, Any]:
    """End the job (its lease's holder); the job's document.

    ``failed`` records the message and the log tail. ``done`` names the version the worker
    published to the target: it must exist and its lineage name this job's base and dataset
    (``invalid_training`` otherwise, and the job keeps running). The trainer's metric is taken
    from the version's ``[lineage]`` (the report's ``metrics`` and ``base_metrics`` where the
    lineage lacks it); the version is promoted when it beats the base.
    """
    job = held_job(session, who, job_id, lease)
    project = session.get(AnnotationProject, job.project_id, with_for_update=True, populate_existing=True)
    assert project is not None  # held_job found it
    now = utcnow()
    if state == "done":
        if version is None:
            raise HubError("invalid_training", "a finished job names the version it published")
        try:
            version = str(SemVer.parse(version))
        except CVFlowError as exc:
            raise HubError("invalid_training", f"{version!r} is not a version: {exc}") from exc
        package = packages.find_package(session, *job.target_package.split("/", 1))
        row = session.exec(select(Version).where(Version.package_id == package.id, Version.version == version)
                           ).first() if package is not None else None
        if row is None:
            raise HubError("invalid_training", f"{job.target_package}@{version} is not published")
        base, dataset, table = _lineage(session, row)
        want_base, want_dataset = f"{job.base_package}@{job.base_version}", f"{job.dataset_package}@{job.dataset_version}"
        if (base, dataset) != (want_base, want_dataset):
            raise HubError("invalid_training", f"{job.target_package}@{version} was not trained by this job: its "
                           f"lineage names {base or 'no base'} on {dataset or 'no dataset'}, the job {want_base} "
                           f"on {want_dataset}")
        name = job.metric or ("accuracy" if project.task == "classification" else "map50")
        result = _metric(name, table.get("metrics"), metrics)
        before = _metric(name, table.get("base_metrics"), base_metrics)
        if result is None or before is None:
            raise HubError("invalid_training", f"the report needs the trainer's metric {name!r} for the fine-tune "
                                               "and for the base")
        job.metric, job.result_metric, job.base_metric, job.result_version = name, result, before, version
        job.promoted = result > before
        if job.promoted:
            _promote(session, project, job.target_package, version)
        project.model_metric = result if job.promoted else before
        project.updated_at = now
        session.add(project)
    else:
        job.message = redact(message or "the worker reported a failure")[:2000]
    if log_tail is not None:
        job.log_tail = tail(log_tail)
    job.state, job.finished_at = state, now
    job.device = device[:64] if device else job.device
    job.seconds = seconds if seconds is not None else job.seconds
    job.lease_hash = job.lease_expires_at = None
    session.add(job)
    session.flush()
    return job_document(job, project_name(session, job))


def _promote(session: Session, project: AnnotationProject, target: str, version: str) -> None:
    """The project's suggestion model becomes ``target==version``; suggestion workers offer
    every unsaved ``todo`` item again (a claim does when the resolved version changes; when the
    package changes, the version may be the same string, so the items' marks are cleared)."""
    wanted = f"={version}"  # an exact version (cvflow.versions writes it with one "=")
    try:
        VersionRange.parse(wanted)
    except CVFlowError as exc:
        raise HubError("invalid_training", f"{wanted!r} is not a version range: {exc}") from exc
    if project.suggest_package != target:
        session.exec(sa.update(AnnotationItem).where(
            col(AnnotationItem.project_id) == project.id, col(AnnotationItem.status) == "todo")
            .values(suggestion_version=None).execution_options(synchronize_session=False))
    project.suggest_package, project.suggest_range = target, wanted
    project.model_version = None  # the next claim resolves the new model
