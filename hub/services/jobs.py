"""The job table that indexer workers share: queueing, claiming and finishing index jobs.

The worker loop that claims and runs jobs is :class:`indexer.worker.Worker`.

A job is claimed in one short transaction that moves it from ``queued`` to ``running``. On
PostgreSQL the claim is ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent workers each get
a different job without waiting on each other; on SQLite the claim transaction takes the write
lock up front (``BEGIN IMMEDIATE``), which serialises claims. Either way one job runs once.

At most one job per repository waits at a time (a partial unique index), and a job is not
claimed while another job of its repository runs, so one repository is indexed by one worker
at a time. A running job carries a lease; a job whose lease ran out lost its worker, and is
marked failed and queued again.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from hub.db import session_scope
from hub.models import IndexJob, JobReason, Repository, utcnow
from hub.services.urls import redact

REASONS = ("register", "webhook", "poll", "manual", "retry")


def enqueue(session: Session, repository_id: int, reason: JobReason) -> int:
    """Queue an index of the repository, unless one already waits; the waiting job's id."""
    waiting = session.exec(
        select(IndexJob.id).where(IndexJob.repository_id == repository_id, IndexJob.state == "queued")
    ).first()
    if waiting is not None:
        return waiting
    job = IndexJob(repository_id=repository_id, reason=reason)
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except sa.exc.IntegrityError:
        # Another trigger queued one a moment ago (the partial unique index decided).
        waiting = session.exec(
            select(IndexJob.id).where(IndexJob.repository_id == repository_id, IndexJob.state == "queued")
        ).first()
        assert waiting is not None
        return waiting
    assert job.id is not None
    return job.id


def claim(engine: Engine, worker: str, lease: int) -> IndexJob | None:
    """Take the oldest queued job whose repository no other job is indexing; None if there is none."""
    other = aliased(IndexJob)
    busy = sa.exists().where(col(other.repository_id) == IndexJob.repository_id, col(other.state) == "running")
    with session_scope(engine, write=True) as session:
        job = session.exec(
            select(IndexJob).where(IndexJob.state == "queued", ~busy).order_by(col(IndexJob.id))
            .limit(1).with_for_update(skip_locked=True, of=IndexJob)
        ).first()
        if job is None:
            return None
        now = utcnow()
        job.state, job.started_at, job.worker = "running", now, worker[:200]
        job.lease_expires_at = now + timedelta(seconds=lease)
        session.add(job)
        session.flush()
        session.expunge(job)
        return job


def complete(engine: Engine, job_id: int, *, failed: bool, message: str) -> None:
    with session_scope(engine, write=True) as session:
        session.exec(sa.update(IndexJob).where(col(IndexJob.id) == job_id).values(
            state="failed" if failed else "done", finished_at=utcnow(), message=redact(message)[:1000]))


def requeue_lost(engine: Engine) -> int:
    """Fail the running jobs whose lease ran out, and queue their repositories again."""
    with session_scope(engine, write=True) as session:
        lost = session.exec(
            select(IndexJob).where(IndexJob.state == "running", col(IndexJob.lease_expires_at) < utcnow())
            .with_for_update(skip_locked=True)
        ).all()
        for job in lost:
            job.state, job.finished_at, job.message = "failed", utcnow(), "the worker running this job was lost"
            session.add(job)
        session.flush()
        for job in lost:
            enqueue(session, job.repository_id, "retry")
        return len(lost)


def enqueue_due_polls(engine: Engine, interval: int, *, limit: int = 100) -> int:
    """Queue a poll of each repository not polled for ``interval`` seconds; how many were queued."""
    if interval <= 0:
        return 0
    cutoff = utcnow() - timedelta(seconds=interval)
    due_clause = sa.or_(col(Repository.last_polled_at).is_(None), col(Repository.last_polled_at) < cutoff)
    queued = 0
    with session_scope(engine, write=True) as session:
        due = session.exec(select(Repository.id).where(due_clause).order_by(col(Repository.id)).limit(limit)).all()
        for repository_id in due:
            # Of several workers polling at once, the one whose update moves the row queues the job.
            moved = session.exec(sa.update(Repository).where(col(Repository.id) == repository_id, due_clause)
                                 .values(last_polled_at=utcnow())).rowcount
            if moved == 1:
                assert repository_id is not None
                enqueue(session, repository_id, "poll")
                queued += 1
    return queued
