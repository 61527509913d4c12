"""A project's fine-tune loop: its settings, its training view, and queueing jobs.

A job is queued by an owner (:func:`queue_job`) or by the hub itself when a save or an approval
brings the project's accepted items (``done`` or ``approved``) to ``finetune_accepted + every``
(:func:`after_accept`). Either way the accepted labels are published first as a snapshot (a
dataset version, :mod:`hub.services.annotation.snapshots`), and the job names it with the base
model (the project's current suggestion version, resolved as a suggestion worker's claim
resolves it), the trainer and its hyperparameters (checked against the base's ``[[trainers]]``)
and the target package. At most one job per project is queued or running: the partial unique
index on ``training_jobs`` decides between two writers, and the loser is ``job_active``.

The trigger costs a save one indexed count when the setting is on and nothing when it is off.
When the count is due, the save's own transaction moves ``finetune_accepted`` (the one whose
update moves the row wins, so two saves never queue two jobs); once the save has committed, a
thread publishes the snapshot as the project's creator and queues the job. A snapshot that
cannot be published (the creator is gone, no longer an owner, or may not publish to the
dataset package) is recorded as a failed job saying why; nothing in the trigger ever fails the
save, and its errors are logged.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import Pool
from sqlmodel import Session, col, func, select

from cvflow.datasets.images import ImageProblem, read_header_from
from cvflow.errors import CVFlowError
from cvflow.manifest.training import MAX_HYPERPARAMETERS, Trainer, parse_trainer
from cvflow.names import PackageName
from hub.db import session_scope
from hub.errors import HubError
from hub.models import (
    TRAINING_ACTIVE,
    AnnotationItem,
    AnnotationProject,
    Blob,
    Namespace,
    TrainingJob,
    User,
    Version,
    row_id,
    utcnow,
)
from hub.security import Scopes
from hub.services import packages
from hub.services.access import (
    PUBLISHERS,
    can_read_project,
    may_create_in,
    package_role,
    require_project_owner,
    require_project_role,
)
from hub.services.accounts import Principal
from hub.services.annotation import snapshots, suggestions
from hub.services.annotation.projects import get_project
from hub.storage import StorageError

if TYPE_CHECKING:
    from hub.context import HubContext

log = logging.getLogger("cvflow.hub.training")

#: The largest ``every``.
MAX_EVERY = 100_000
#: Jobs a project's training view lists, newest first.
RECENT_JOBS = 20
#: The statuses whose items count as accepted.
ACCEPTED = ("done", "approved")
#: What the hub acts with when it publishes a snapshot for the auto trigger: the creator's own
#: rights as a user (what the website gives a signed-in user), never an administrator's.
_USER_SCOPES = Scopes.parse("read publish annotate")

# --- documents ----------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes (stored as UTC)
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def _ref(package: str, version: str) -> str | None:
    return f"{package}@{version}" if package and version else None


def job_document(job: TrainingJob, project: str, worker: str | None = None) -> dict[str, Any]:
    """A job as the API and the website show it (the shape in docs/training.md); ``project``
    is its project's ``namespace/name``."""
    return {
        "id": job.id, "project": project, "state": job.state, "reason": job.reason,
        "base": _ref(job.base_package, job.base_version), "trainer": job.trainer or None,
        "dataset": _ref(job.dataset_package, job.dataset_version), "target": job.target_package or None,
        "hyperparameters": job.hyperparameters or {}, "accepted": job.accepted,
        "worker": job.worker if worker is None else worker, "attempts": job.attempts,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
        "heartbeat_at": _iso(job.heartbeat_at), "lease_expires_at": _iso(job.lease_expires_at),
        "progress": job.progress, "history": job.history or [], "log_tail": job.log_tail or "",
        "has_checkpoint": job.checkpoint_sha256 is not None, "has_preview": job.preview_sha256 is not None,
        "metric": job.metric, "base_metric": job.base_metric, "result_metric": job.result_metric,
        "result_version": job.result_version, "promoted": job.promoted, "device": job.device,
        "seconds": job.seconds, "message": job.message,
    }


def accepted_count(session: Session, project_id: int) -> int:
    """How many items of the project are ``done`` or ``approved`` (ix_annotation_items_queue answers it)."""
    return int(session.exec(select(func.count()).select_from(AnnotationItem).where(
        AnnotationItem.project_id == project_id, col(AnnotationItem.status).in_(ACCEPTED))).one())


def active_job(session: Session, project_id: int) -> int | None:
    """The id of the project's queued or running job, if it has one."""
    return session.exec(select(TrainingJob.id).where(
        TrainingJob.project_id == project_id, col(TrainingJob.state).in_(TRAINING_ACTIVE))).first()


def settings_document(session: Session, project: AnnotationProject) -> dict[str, Any]:
    every = project.finetune_every
    return {"every": every, "target": project.finetune_target, "trainer": project.finetune_trainer,
            "hyperparameters": project.finetune_hyperparameters or {},
            "accepted": accepted_count(session, row_id(project)),
            "accepted_at_last_job": project.finetune_accepted,
            "next_at": None if every is None else project.finetune_accepted + every,
            "model_metric": project.model_metric}


def training_view(session: Session, who: Principal, project: AnnotationProject) -> dict[str, Any]:
    """The project's settings and its :data:`RECENT_JOBS` newest jobs; ``project_not_found``
    for a caller who may not see the project."""
    if not can_read_project(session, who, project):
        raise HubError("project_not_found", f"no project {project.full_name}")
    jobs = session.exec(select(TrainingJob).where(TrainingJob.project_id == project.id)
                        .order_by(col(TrainingJob.id).desc()).limit(RECENT_JOBS)).all()
    return {"settings": settings_document(session, project),
            "jobs": [job_document(j, project.full_name) for j in jobs]}


def job_for_reader(session: Session, who: Principal, job_id: int) -> TrainingJob:
    """The job, if the caller may read its project; ``job_not_found`` otherwise (as for none)."""
    job = session.get(TrainingJob, job_id)
    project = session.get(AnnotationProject, job.project_id) if job is not None else None
    if job is None or project is None or not can_read_project(session, who, project):
        raise HubError("job_not_found", f"no training job {job_id}")
    return job


def project_name(session: Session, job: TrainingJob) -> str:
    project = session.get(AnnotationProject, job.project_id)
    return project.full_name if project is not None else ""


def preview_bytes(context: HubContext, who: Principal, job_id: int) -> bytes:
    """The job's preview grid (a PNG or a JPEG, at most 8 MiB), for readers of its project.

    Raises ``job_not_found`` (also when the job has no preview yet) and ``storage_unavailable``.
    """
    with session_scope(context.engine) as session:
        job = job_for_reader(session, who, job_id)
        digest = job.preview_sha256
        blob = session.get(Blob, digest) if digest is not None else None
    if digest is None or blob is None:
        raise HubError("job_not_found", f"training job {job_id} has no preview yet")
    try:
        return b"".join(context.store.open_range(digest, 0, blob.size))
    except StorageError as exc:
        raise HubError("storage_unavailable", "the blob store could not be read") from exc


def image_type(data: bytes) -> str:
    """``image/png`` or ``image/jpeg`` from the bytes' header (checked when they were stored)."""
    try:
        header = read_header_from(io.BytesIO(data), len(data), where="preview")
    except ImageProblem:
        return "application/octet-stream"
    return "image/png" if header.format == "png" else "image/jpeg"


# --- settings -----------------------------------------------------------------------------------

_UNSET: Any = object()


def may_publish_to(session: Session, who: Principal, name: str, *, scoped: bool) -> bool:
    """Whether ``who`` may publish to the package ``name`` or create it: by their role as a user,
    and (``scoped``) by their token's scopes too."""
    user = who.user
    if user is None or "/" not in name:
        return False
    ns_name, pkg_name = name.split("/", 1)
    if scoped and (who.scopes is None or not who.scopes.can_publish(ns_name, pkg_name)):
        return False
    package = packages.find_package(session, ns_name, pkg_name)
    if package is not None:
        return who.is_admin or package_role(session, package, user) in PUBLISHERS
    ns = session.exec(select(Namespace).where(Namespace.name == ns_name)).first()
    return ns is not None and (who.is_admin or may_create_in(session, user, ns))


def update_settings(session: Session, who: Principal, project: AnnotationProject, *, every: Any = _UNSET,
                    target: Any = _UNSET, trainer: Any = _UNSET, hyperparameters: Any = _UNSET) -> dict[str, Any]:
    """Change the fine-tune settings given (owners); the training view after.

    ``every``: 1 to :data:`MAX_EVERY`, or None (off). ``target``: a package the owner may publish
    to or create, or None (the suggestion package). ``trainer``: a trainer's name, or None (the
    base's first for the project's task). ``hyperparameters``: an object of numbers, booleans and
    short strings. The trainer and the hyperparameters are checked against the base's
    ``[[trainers]]`` when a job is queued, since the base may change in between.

    Raises as :func:`hub.services.access.require_project_role` (``manage``) and ``invalid_training``.
    """
    user = require_project_role(session, who, project, "manage")
    problems: list[str] = []
    if every is not _UNSET and every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= MAX_EVERY):
        problems.append(f"every must be 1 to {MAX_EVERY}, or null")
    if target is not _UNSET and target is not None:
        try:
            target = str(PackageName.parse(target))
        except (CVFlowError, TypeError, AttributeError):
            problems.append("target must be a package name, namespace/name")
        else:
            if not may_publish_to(session, Principal(user=user, scopes=_USER_SCOPES), target, scoped=False) \
                    and not who.is_admin:
                problems.append(f"you may not publish to {target} (nor create it)")
    if trainer is not _UNSET and trainer is not None and not (
            isinstance(trainer, str) and parse_trainer({"name": trainer, "class": "m:C", "task": "detection"},
                                                       "trainer")[0] is not None):
        problems.append("trainer must be a trainer's name: 1 to 64 of a-z, 0-9, '_' and '-'")
    if hyperparameters is not _UNSET and hyperparameters is not None and not _scalars(hyperparameters):
        problems.append(f"hyperparameters must be an object of at most {MAX_HYPERPARAMETERS} numbers, booleans "
                        "or strings of at most 256 characters")
    if problems:
        raise HubError("invalid_training", "; ".join(problems), details={"problems": problems})
    if every is not _UNSET:
        project.finetune_every = every
    if target is not _UNSET:
        project.finetune_target = target
    if trainer is not _UNSET:
        project.finetune_trainer = trainer
    if hyperparameters is not _UNSET:
        project.finetune_hyperparameters = dict(hyperparameters or {})
    project.updated_at = utcnow()
    session.add(project)
    session.flush()
    return training_view(session, who, project)


def _scalars(value: object) -> bool:
    if not isinstance(value, dict) or len(value) > MAX_HYPERPARAMETERS:
        return False
    return all(isinstance(k, str) and 0 < len(k) <= 64 and (
        isinstance(v, bool | int) or (isinstance(v, float) and v == v and abs(v) != float("inf"))
        or (isinstance(v, str) and len(v) <= 256)) for k, v in value.items())


# --- what a job trains ---------------------------------------------------------------------------


class Spec:
    """What a job will train: the base version, the trainer, its hyperparameters, the target."""

    def __init__(self, base_package: str, base_version: str, trainer: Trainer, hyperparameters: dict[str, Any],
                 target: str) -> None:
        self.base_package, self.base_version = base_package, base_version
        self.trainer, self.hyperparameters, self.target = trainer, hyperparameters, target


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def job_spec(session: Session, who: Principal, project: AnnotationProject) -> Spec:
    """The base, trainer and target a job of the project would use now.

    Raises ``no_suggestion_model`` (no base to fine-tune), ``no_trainer`` (the base declares
    none for the project's task, or none of the chosen name) and ``invalid_training``
    (hyperparameters its trainer refuses).
    """
    model = suggestions.resolve_model(session, who, project)
    package = packages.find_package(session, *model.package.split("/", 1))
    manifest_json = session.exec(select(Version.manifest).where(
        Version.package_id == (package.id if package else -1), Version.version == model.version)).first()
    entries = (json.loads(manifest_json).get("trainers") or []) if manifest_json else []
    chosen: Trainer | None = None
    for i, entry in enumerate(e for e in entries if isinstance(e, dict)):
        trainer, _ = parse_trainer(_drop_none(entry), f"trainers[{i}]")
        if trainer is None:
            continue
        if project.finetune_trainer is not None and trainer.name != project.finetune_trainer:
            continue
        if trainer.task == project.task:
            chosen = trainer
            break
    if chosen is None:
        which = f"no trainer {project.finetune_trainer!r}" if project.finetune_trainer else "no trainer"
        raise HubError("no_trainer", f"{model.package}@{model.version} declares {which} for {project.task}")
    try:
        hyperparameters = chosen.resolve(dict(project.finetune_hyperparameters or {}))
    except ValueError as exc:
        raise HubError("invalid_training", f"the project's hyperparameters: {exc}") from exc
    return Spec(model.package, model.version, chosen, dict(hyperparameters),
                project.finetune_target or model.package)


# --- queueing --------------------------------------------------------------------------------


def _insert(session: Session, job: TrainingJob) -> TrainingJob:
    """Insert the job; ``job_active`` when the project has one queued or running (the index decides)."""
    if active_job(session, job.project_id) is not None:
        raise HubError("job_active", "the project already has a training job queued or running")
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except sa.exc.IntegrityError as exc:
        raise HubError("job_active", "the project already has a training job queued or running") from exc
    return job


def _queue(context: HubContext, who: Principal, project_id: int, *, reason: str, owner_check: bool) -> dict[str, Any]:
    """Snapshot the project's accepted labels as ``who`` and queue a job on them; the job's document."""
    def prepare(session: Session) -> tuple[Spec, snapshots.Plan]:
        project = session.get(AnnotationProject, project_id)
        if project is None:
            raise HubError("project_not_found", "the project is gone")
        if owner_check:
            require_project_owner(session, who, project)
        if active_job(session, project_id) is not None:
            raise HubError("job_active", f"{project.full_name} already has a training job queued or running")
        spec = job_spec(session, who, project)  # before the snapshot: nothing is published for a job refused
        return spec, snapshots.plan(session, who, project, version=None, package=None)

    with session_scope(context.engine) as session:
        spec, plan = prepare(session)
    snapshots.store(context.uploads, who, plan)
    with session_scope(context.engine, write=True) as session:
        project = session.get(AnnotationProject, project_id, with_for_update=True, populate_existing=True)
        if project is None:
            raise HubError("project_not_found", "the project is gone")
        snapshot = snapshots.publish(session, context.settings, who, project, plan)
        accepted = accepted_count(session, project_id)
        job = _insert(session, TrainingJob(
            project_id=project_id, reason=reason, base_package=spec.base_package, base_version=spec.base_version,
            trainer=spec.trainer.name, dataset_package=snapshot.package, dataset_version=snapshot.version,
            target_package=spec.target, hyperparameters=spec.hyperparameters, accepted=accepted,
            created_by=who.user.id if who.user else None, metric=spec.trainer.metric))
        project.finetune_accepted = max(project.finetune_accepted, accepted)
        session.add(project)
        session.flush()
        return job_document(job, project.full_name)


def queue_job(context: HubContext, who: Principal, project_full_name: str, *, reason: str = "manual") -> dict[str, Any]:
    """Queue a training job now (project owners): snapshot the accepted labels, then the job.

    The snapshot is published with the caller's own rights as a user (the job needs the
    ``annotate`` scope, as the automatic trigger that any save may set off does).
    Raises ``project_not_found``, ``forbidden``, ``job_active``, ``no_suggestion_model``,
    ``no_trainer``, ``invalid_training``, ``nothing_to_snapshot`` and what a snapshot's publish raises.
    """
    ns, _, name = project_full_name.partition("/")
    with session_scope(context.engine) as session:
        project = get_project(session, who, ns, name)
        require_project_role(session, who, project, "manage")
        project_id = row_id(project)
    user = who.require_user()
    acting = Principal(user=user, scopes=Scopes(who.scopes.items | _USER_SCOPES.items) if who.scopes else _USER_SCOPES)
    return _queue(context, acting, project_id, reason=reason, owner_check=True)


# --- the automatic trigger ---------------------------------------------------------------------

#: The hub context of each engine's pool, so a save (which knows its session only) finds the
#: blob store and settings that a snapshot needs (:func:`attach`, from ``hub.app.create_app``).
_CONTEXTS: weakref.WeakKeyDictionary[Pool, HubContext] = weakref.WeakKeyDictionary()


def attach(context: HubContext) -> None:
    """Let saves on ``context``'s engine set off automatic fine-tunes (called by the app)."""
    _CONTEXTS[context.engine.pool] = context


def after_accept(session: Session, project: AnnotationProject) -> None:
    """Called by a save or an approval, in its transaction: queue a fine-tune once it commits,
    if this brings the accepted count to the next multiple of ``every``.

    One indexed count when the setting is on, nothing when it is off. Never raises: an error
    here is logged and the save goes on (a savepoint keeps it whole).
    """
    every = project.finetune_every
    if every is None:
        return
    try:
        with session.begin_nested():
            _claim_due(session, project, every)
    except Exception:  # the save must not fail for the trigger
        log.exception("fine-tune trigger for %s failed", project.full_name)


def _claim_due(session: Session, project: AnnotationProject, every: int) -> None:
    project_id = row_id(project)
    accepted = accepted_count(session, project_id)
    before = project.finetune_accepted
    if accepted < before + every or active_job(session, project_id) is not None:
        return
    bind = session.get_bind()
    context = _CONTEXTS.get(bind.pool) if isinstance(bind, sa.Engine) else None
    if context is None:
        log.warning("fine-tune for %s is due, but no hub context is attached to this engine", project.full_name)
        return
    # The writer whose update moves the row queues the job; a concurrent save finds it moved.
    moved = session.exec(sa.update(AnnotationProject).where(
        col(AnnotationProject.id) == project_id, col(AnnotationProject.finetune_accepted) == before)
        .values(finetune_accepted=accepted).execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        return
    project.finetune_accepted = accepted
    started: list[bool] = []

    def start(committed: Session) -> None:
        # after_commit fires for savepoints too (this one among them): act on the save's own commit only.
        if not started and committed.get_nested_transaction() is None:
            started.append(True)
            _start(context, project_id)

    event.listen(session, "after_commit", start)


def _start(context: HubContext, project_id: int) -> None:
    threading.Thread(target=auto_queue, args=(context, project_id), name=f"cvflow-finetune-{project_id}",
                     daemon=True).start()


def auto_queue(context: HubContext, project_id: int) -> TrainingJob | None:
    """Snapshot and queue a job as the project's creator (the trigger's thread runs this). A
    snapshot or a base that fails is recorded as a failed job saying why; None then, or when
    a job was queued meanwhile."""
    try:
        with session_scope(context.engine) as session:
            project = session.get(AnnotationProject, project_id)
            creator = session.get(User, project.created_by) if project and project.created_by else None
        if project is None:
            return None
        if creator is None or not creator.is_active:
            raise HubError("forbidden", "the project's creator, whose rights publish its snapshots, is gone")
        doc = _queue(context, Principal(user=creator, scopes=_USER_SCOPES), project_id, reason="auto",
                     owner_check=False)
        with session_scope(context.engine) as session:
            return session.get(TrainingJob, doc["id"])
    except HubError as exc:
        if exc.code == "job_active" or _has_active(context, project_id):
            return None  # queued meanwhile (by an owner, or by a trigger that won a race with this one)
        return _failed(context, project_id, f"the automatic fine-tune could not start: {exc.message}")
    except Exception:
        log.exception("the automatic fine-tune of project %s failed", project_id)
        return _failed(context, project_id, "the automatic fine-tune could not start: an unexpected error "
                                            "(the hub logged it)")


def _has_active(context: HubContext, project_id: int) -> bool:
    with session_scope(context.engine) as session:
        return active_job(session, project_id) is not None


def _failed(context: HubContext, project_id: int, message: str) -> TrainingJob | None:
    """Record a job that failed before it was queued, so the project's page says why."""
    try:
        with session_scope(context.engine, write=True) as session:
            project = session.get(AnnotationProject, project_id)
            if project is None:
                return None
            now = utcnow()
            job = TrainingJob(project_id=project_id, state="failed", reason="auto",
                              base_package=project.suggest_package or "", base_version=project.model_version or "",
                              trainer=project.finetune_trainer or "", dataset_package=project.dataset_package,
                              dataset_version="", target_package=project.finetune_target or project.suggest_package or "",
                              accepted=project.finetune_accepted, created_at=now, finished_at=now, message=message[:2000])
            session.add(job)
            session.flush()
            log.warning("fine-tune of %s: %s", project.full_name, message)
            return job
    except Exception:
        log.exception("could not record the failed fine-tune of project %s", project_id)
        return None
