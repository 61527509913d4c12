"""The indexer's worker loop: claim a job from the shared job table, index, record the outcome.

The job table itself (queueing, claiming with row locks and leases, requeueing lost jobs,
queueing due polls) is hub domain logic in :mod:`hub.services.jobs`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.models import IndexJob
from hub.services.jobs import claim, complete, enqueue_due_polls, requeue_lost

log = logging.getLogger("cvflow.indexer")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims jobs one at a time and runs ``handler(repository_id)`` for each.

    ``handler`` returns a one-line summary for the job row; an exception fails the job.
    """

    def __init__(self, engine: Engine, handler: Callable[[int], str], *, lease: int, poll_interval: int,
                 idle_sleep: float, name: str | None = None) -> None:
        self.engine = engine
        self.handler = handler
        self.lease = lease
        self.poll_interval = poll_interval
        self.idle_sleep = idle_sleep
        self.name = name or worker_name()

    def run_once(self) -> IndexJob | None:
        """Claim and run one job; the job, or None when none was waiting."""
        job = claim(self.engine, self.name, self.lease)
        if job is None:
            return None
        assert job.id is not None
        try:
            summary = self.handler(job.repository_id)
        except Exception as exc:  # one bad job must not stop the worker
            log.exception("index job %s of repository %s failed", job.id, job.repository_id)
            complete(self.engine, job.id, failed=True, message=f"{type(exc).__name__}: {exc}")
            job.state = "failed"
        else:
            complete(self.engine, job.id, failed=False, message=summary)
            job.state = "done"
        return job

    def drain(self) -> int:
        """Run jobs until none is waiting; how many ran."""
        count = 0
        while self.run_once() is not None:
            count += 1
        return count

    def maintain(self) -> None:
        requeue_lost(self.engine)
        enqueue_due_polls(self.engine, self.poll_interval)

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set: poll what is due, run what is queued, sleep when idle."""
        log.info("indexer worker %s started", self.name)
        while not stop.is_set():
            try:
                self.maintain()
                job = self.run_once()
            except sa.exc.SQLAlchemyError as exc:
                # The database went away or a claim lost a race: try again after a pause.
                log.warning("indexer worker %s: database error (%s); retrying", self.name, type(exc).__name__)
                job = None
            if job is None:
                stop.wait(self.idle_sleep)
        log.info("indexer worker %s stopped", self.name)
