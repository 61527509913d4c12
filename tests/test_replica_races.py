"""What two replicas on one PostgreSQL do at the same moment, found by ``bench/soak.py``.

A publish or a yank recomputes the package's summary (latest version, tags). Two of them in one
package at once, on two replicas, both deleted the tags and inserted the same ones: the later
insert failed on ``package_tags_pkey`` and the client got a 500.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlmodel import Session, select

from hub.db import session_scope
from hub.models import Package, PackageTag, row_id
from hub.services import packages
from hub.settings import Settings
from tests.conftest import PG_ADMIN_URL, running_hub, scratch_pg_database
from tests.helpers import LiveHub, publish


@pytest.fixture
def pg_hub(tmp_path: Path) -> Iterator[tuple[LiveHub, str]]:
    with scratch_pg_database("cvflow_races") as url:
        settings = Settings.create(data_dir=tmp_path, database_url=url, environ={}, auto_migrate=True,
                                   argon2_time_cost=1, argon2_memory_cost=1024)
        with running_hub(settings) as live:
            yield live, url.rsplit("/", 1)[1]


def _wait_for_a_lock_wait(name: str) -> None:
    """Until a backend of database ``name`` waits for a lock another transaction holds."""
    deadline = time.monotonic() + 30
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        while time.monotonic() < deadline:
            waiting = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                    "AND wait_event_type = 'Lock'", [name]).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second transaction never waited for the first")


def test_two_transactions_recomputing_one_package_take_turns(pg_hub: tuple[LiveHub, str]) -> None:
    live, name = pg_hub
    assert publish(live.user_client("alice"), "alice/detector", "1.0.0", tags=("a", "b")).status_code == 201
    engine = live.context.engine
    found = select(Package).where(Package.full_name == "alice/detector")
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            with session_scope(engine, write=True) as session:
                packages.apply_latest(session, session.exec(found).one())
            outcome["done"] = True
        except Exception as exc:  # what the replica's request would have turned into a 500
            outcome["error"] = exc

    with Session(engine) as first:
        packages.apply_latest(first, first.exec(found).one())
        first.flush()  # its tags are rewritten, not committed
        thread = threading.Thread(target=second)
        thread.start()
        _wait_for_a_lock_wait(name)
        first.commit()
    thread.join(30)
    assert outcome == {"done": True}
    with Session(engine) as session:
        assert sorted(session.exec(select(PackageTag.tag)).all()) == ["a", "b"]


def test_two_publishes_in_one_package_do_not_deadlock(pg_hub: tuple[LiveHub, str]) -> None:
    # Each publish first writes rows that refer to the package (its version: a key-share lock on
    # the package row), then recomputes the package. A lock there that waits for key-share locks
    # (FOR UPDATE) made two of them wait for each other until PostgreSQL killed one.
    live, _ = pg_hub
    assert publish(live.user_client("alice"), "alice/detector", "1.0.0").status_code == 201
    engine = live.context.engine
    found = select(Package).where(Package.full_name == "alice/detector")
    outcome: dict[str, object] = {}

    def refer(session: Session, tag: str) -> Package:
        package = session.exec(found).one()
        session.add(PackageTag(package_id=row_id(package), tag=tag))  # its foreign key is the package
        session.flush()
        return package

    def second() -> None:
        try:
            with session_scope(engine, write=True) as session:
                packages.apply_latest(session, refer(session, "second"))
            outcome["second"] = "done"
        except Exception as exc:
            outcome["second"] = exc

    with Session(engine) as first:
        package = refer(first, "first")
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(15)  # it finishes unless it waits for this transaction's key-share lock
        try:
            packages.apply_latest(first, package)
            first.commit()
            outcome["first"] = "done"
        except Exception as exc:
            outcome["first"] = exc
    thread.join(30)
    assert (outcome["first"], outcome["second"]) == ("done", "done")
