"""The shared job table: workers never run a job twice, polls and lost jobs are queued again."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from hub.db import session_scope
from hub.models import IndexJob, Repository, RepositoryTag, User, utcnow
from hub.security import Scopes
from hub.services import repositories as registry
from hub.services.accounts import Principal
from hub.services.jobs import enqueue, enqueue_due_polls, requeue_lost
from indexer.worker import Worker
from tests.conftest import BACKENDS
from tests.indexer._helpers import SOLVER, jobs, make_worker, manifest, published, register


@pytest.fixture
def pg_hub(_indexer_hubs):  # type: ignore[no-untyped-def]
    if "postgres-s3" not in BACKENDS:
        pytest.skip("PostgreSQL is not among CVFLOW_TEST_BACKENDS")
    from tests.indexer.conftest import _fresh

    hub = _fresh(_indexer_hubs("postgres-s3"))
    yield hub
    hub.close_clients()


def _register_many(hub, count: int, url: str = "git://127.0.0.1:9/repo{}") -> list[int]:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    ids = []  # these repositories are never fetched: only their jobs run
    with session_scope(hub.context.engine, write=True) as session:
        alice = session.exec(select(User).where(User.name == "alice")).one()
        who = Principal(user=alice, scopes=Scopes.parse("publish"))
        for i in range(count):
            repo = registry.register(session, hub.context.settings, who, url=url.format(i))
            ids.append(repo.id)
    return ids


def test_two_workers_on_postgres_claim_every_job_exactly_once(pg_hub):
    ids = _register_many(pg_hub, 80)
    ran: list[tuple[str, int]] = []
    running: set[int] = set()
    overlaps: list[int] = []
    guard = threading.Lock()

    def handler(name: str):  # type: ignore[no-untyped-def]
        def run(repository_id: int) -> str:
            with guard:
                if repository_id in running:
                    overlaps.append(repository_id)
                running.add(repository_id)
                first = all(r != repository_id for _, r in ran)
                ran.append((name, repository_id))
            if repository_id % 10 == 0 and first:
                # A webhook arrives while the repository is being indexed: it waits its turn.
                with session_scope(pg_hub.context.engine, write=True) as session:
                    enqueue(session, repository_id, "webhook")
            time.sleep(0.002)
            with guard:
                running.discard(repository_id)
            return "ok"

        return run

    workers = [Worker(pg_hub.context.engine, handler(n), lease=600, poll_interval=0, idle_sleep=0.01, name=n)
               for n in ("w1", "w2")]
    threads = [threading.Thread(target=w.drain) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert overlaps == []
    per_repo = {rid: sum(1 for _, r in ran if r == rid) for rid in ids}
    assert per_repo == {rid: 2 if rid % 10 == 0 else 1 for rid in ids}
    assert {name for name, _ in ran} == {"w1", "w2"}
    assert all(j.state == "done" for j in jobs(pg_hub)) and len(jobs(pg_hub)) == len(ran)


def test_two_real_workers_on_postgres_index_each_tag_once(pg_hub, make_repo, git_daemon):
    alice = pg_hub.user_client("alice")
    names = []
    for i in range(4):
        repo, name = make_repo()
        for version in ("1.0.0", "1.1.0"):
            repo.write({"cvflow.toml": manifest(f"alice/model{i}", version), "solver.py": SOLVER}).commit()
            repo.tag(f"v{version}")
        register(alice, git_daemon.url(name))
        names.append(name)
    pairs = [make_worker(pg_hub, name=f"w{i}") for i in range(2)]
    for _round in range(2):
        threads = [threading.Thread(target=w.drain) for w, _ in pairs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # Every repository is queued again, as a poll would; nothing new may come of it.
        with session_scope(pg_hub.context.engine, write=True) as session:
            for rid in session.exec(select(Repository.id)):
                enqueue(session, rid, "poll")  # type: ignore[arg-type]
    for _, service in pairs:
        service.close()
    with session_scope(pg_hub.context.engine) as session:
        tags = session.exec(select(RepositoryTag)).all()
    assert len(tags) == 8
    for i in range(4):
        assert sorted(published(pg_hub, f"alice/model{i}")) == ["1.0.0", "1.1.0"]
    done = [j for j in jobs(pg_hub) if j.state == "done"]
    assert len(done) == 8 and {j.worker for j in done} <= {"w0", "w1"}


def test_due_polls_are_queued_once_and_lost_jobs_are_retried(one_hub):
    [first, second] = _register_many(one_hub, 2)
    engine = one_hub.context.engine
    Worker(engine, lambda rid: "ok", lease=600, poll_interval=0, idle_sleep=0).drain()
    assert enqueue_due_polls(engine, 3600) == 0  # just registered: polled "now"
    with session_scope(engine, write=True) as session:
        session.exec(sa.update(Repository).where(Repository.id == first)  # type: ignore[call-overload]
                     .values(last_polled_at=utcnow() - timedelta(hours=2)))
    assert enqueue_due_polls(engine, 3600) == 1
    assert enqueue_due_polls(engine, 3600) == 0
    assert [(j.repository_id, j.reason, j.state) for j in jobs(one_hub)][-1] == (first, "poll", "queued")

    # A worker died mid-job: once its lease is over the job fails and the repository is queued again.
    worker = Worker(engine, lambda rid: "ok", lease=600, poll_interval=0, idle_sleep=0)
    with session_scope(engine, write=True) as session:
        enqueue(session, second, "manual")
        session.exec(sa.update(IndexJob).where(IndexJob.state == "queued")  # type: ignore[call-overload]
                     .values(state="running", lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert requeue_lost(engine) == 2
    lost = [j for j in jobs(one_hub) if j.state == "failed"]
    assert {j.repository_id for j in lost} == {first, second} and "lost" in (lost[0].message or "")
    assert worker.drain() == 2


def test_a_running_worker_polls_what_is_due_and_stops_when_asked(one_hub):
    [first, second] = _register_many(one_hub, 2)
    engine = one_hub.context.engine
    ran: list[int] = []
    worker = Worker(engine, lambda rid: ran.append(rid) or "ok", lease=600, poll_interval=3600, idle_sleep=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(ran) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(ran) == [first, second]  # the registrations
        with session_scope(engine, write=True) as session:
            session.exec(sa.update(Repository).where(Repository.id == second)  # type: ignore[call-overload]
                         .values(last_polled_at=utcnow() - timedelta(days=1)))
        while len(ran) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ran[2:] == [second]  # the poll that came due
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert [j.reason for j in jobs(one_hub)] == ["register", "register", "poll"]
