"""The change feed: every publish, yank, unyank, deletion and visibility change, numbered by a serial.

A writer takes the next serial with an upsert on the ``feed_counters`` row, in the same
transaction as the change itself. The row stays locked until that transaction ends, so
serials are handed out one writer at a time: a rolled-back change gives its serial back
(no gaps), and serial N+1 cannot commit before N (a reader that sees N+1 has seen N). A
mirror can therefore treat any hole in what it reads as an error, never as "not yet".

Readers see events of packages they may not read as ``{"serial": N, "action": "hidden"}``:
the numbering stays whole, the names stay private.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.models import ChangeAction, ChangeEvent, FeedCounter, Package, utcnow
from hub.services.accounts import Principal

COUNTER = "changes"
ACTIONS: tuple[ChangeAction, ...] = get_args(ChangeAction)
MAX_PAGE = 1000
SERIAL_HEADER = "X-CVFlow-Serial"


def emit(session: Session, action: ChangeAction, package: str, version: str | None = None,
         data: dict[str, Any] | None = None) -> int:
    """Record a change in the caller's transaction; returns its serial.

    Call it last in the transaction: the counter row stays locked until the commit.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown change action {action!r}")
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(FeedCounter).values(name=COUNTER, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={"value": FeedCounter.value + 1})
    serial = int(session.exec(stmt.returning(col(FeedCounter.value))).scalar_one())
    session.add(ChangeEvent(serial=serial, action=action, package=package, version=version,
                            data=json.dumps(data, sort_keys=True) if data else None, created_at=utcnow()))
    session.flush()
    return serial


def deleted_versions(session: Session, package: str) -> list[str]:
    """The versions of ``package`` an administrator took down: the feed is their permanent record."""
    return [v for v in session.exec(select(ChangeEvent.version).where(
        ChangeEvent.package == package, ChangeEvent.action == "delete")) if v]


def current_serial(session: Session) -> int:
    value = session.exec(select(FeedCounter.value).where(FeedCounter.name == COUNTER)).first()
    return int(value or 0)


def event_json(event: ChangeEvent) -> dict[str, Any]:
    return {"serial": event.serial, "action": event.action, "package": event.package, "version": event.version,
            "at": event.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": json.loads(event.data) if event.data else {}}


def changes(session: Session, principal: Principal, since: int, limit: int) -> dict[str, Any]:
    """Events after ``since``, oldest first, at most ``limit``; with the current serial."""
    from hub.services.access import visible_filter

    serial = current_serial(session)
    rows = session.exec(
        select(ChangeEvent).where(col(ChangeEvent.serial) > since).order_by(col(ChangeEvent.serial)).limit(limit)
    ).all()
    names = sorted({r.package for r in rows})
    visible: set[str] = set()
    for i in range(0, len(names), 500):
        visible.update(session.exec(select(Package.full_name).where(
            col(Package.full_name).in_(names[i : i + 500]), visible_filter(session, principal))).all())
    events = [event_json(r) if r.package in visible else {"serial": r.serial, "action": "hidden"} for r in rows]
    last = rows[-1].serial if rows else since
    return {"since": since, "serial": serial, "events": events, "next": last, "more": last < serial}


class SerialTracker:
    """This replica's idea of the current serial, for the ``X-CVFlow-Serial`` header.

    Refreshed after every write request this replica serves and at most ``interval``
    seconds old otherwise (writes by other replicas or by ``mirror sync``), so read
    requests do not query the database.
    """

    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self.value = 0
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self._refreshing = False  # a refresh_soon thread runs (read and set on the event loop only)

    def stale(self) -> bool:
        return time.monotonic() - self._checked > self.interval

    def refresh(self) -> int:
        with self._lock:
            try:
                with Session(self.engine) as session:
                    self.value = current_serial(session)
            except sa.exc.SQLAlchemyError:
                pass  # keep the last value; readiness probes report the database
            self._checked = time.monotonic()
            return self.value

    def loaded(self) -> bool:
        return self._checked != float("-inf")

    def refresh_soon(self) -> None:
        """Refresh in a thread of its own, unless one already runs; readers keep the current
        value meanwhile, so no request waits on the database for a header (called on the loop)."""
        if self._refreshing:
            return
        self._refreshing = True

        def run() -> None:
            try:
                self.refresh()
            finally:
                self._refreshing = False

        threading.Thread(target=run, name="cvflow-serial", daemon=True).start()

    def mark_stale(self) -> None:
        self._checked = float("-inf")
