"""Database engines, sessions and migrations.

SQLite is the embedded default (WAL, a busy timeout and foreign keys on); PostgreSQL through
psycopg 3 is for production. The schema is created and changed only by Alembic.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from hub.errors import HubError

if TYPE_CHECKING:
    from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def _migrations_dir() -> Path:
    import migrations

    return Path(migrations.__file__).resolve().parent


#: Seconds a new PostgreSQL connection may take (``?connect_timeout=`` in the URL overrides it).
_CONNECT_TIMEOUT = 5


def create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16,
            max_overflow=16,
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:  # a DB-API connection: untyped
            # Take transaction control from pysqlite so SAVEPOINT and BEGIN IMMEDIATE work.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # A deferred transaction that reads and then writes fails at once with
            # SQLITE_BUSY when another writer committed in between (WAL snapshots);
            # writers therefore take the write lock up front and wait their turn.
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}")

        return engine
    # pool_pre_ping: a connection the server closed (a restart, a failover) is replaced when it is
    # checked out, so the hub recovers by itself. A server that does not answer at all (a host
    # gone, a hung server) fails a new connection after connect_timeout, not the OS's minutes.
    connect_args = {} if "connect_timeout" in sa.engine.make_url(url).query else {"connect_timeout": _CONNECT_TIMEOUT}
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args)


def writer(engine: Engine) -> Engine:
    """The engine to use for transactions that write (``BEGIN IMMEDIATE`` on SQLite)."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


#: SQLite writers of one process queue on this lock before ``BEGIN IMMEDIATE``. SQLite's own
#: busy handler makes a waiting writer sleep in growing steps (up to 100 ms) instead of waking
#: it when the lock frees, which put 200-470 ms tails on concurrent annotation saves that each
#: cost 10 ms (bench/annotate_page.py). Writers in other processes still meet the busy handler.
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SQLITE_WRITERS_GUARD = threading.Lock()
#: A writer that waited this long goes on to SQLite's own wait (and its 30 s busy timeout).
_WRITER_WAIT = 30.0


def _writer_lock(engine: Engine) -> threading.RLock | None:
    if engine.dialect.name != "sqlite":
        return None
    with _SQLITE_WRITERS_GUARD:
        lock = _SQLITE_WRITERS.get(engine)
        if lock is None:
            lock = _SQLITE_WRITERS[engine] = threading.RLock()
        return lock


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    lock = _writer_lock(engine) if write else None
    held = lock.acquire(timeout=_WRITER_WAIT) if lock is not None else False
    try:
        with Session(writer(engine) if write else engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        if held:
            assert lock is not None
            lock.release()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini")) if (ROOT / "alembic.ini").exists() else Config()
    cfg.set_main_option("script_location", str(_migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision``."""
    from alembic import command

    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


def check(engine: Engine, head: str) -> None:
    """Readiness: the database answers and its schema is at ``head``.

    Raises ``database_unavailable`` otherwise, saying to run ``cvflow-hub migrate``.
    """
    try:
        with engine.connect() as conn:
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.SQLAlchemyError as exc:
        raise HubError("database_unavailable", f"database unavailable or not migrated: {type(exc).__name__}; "
                       "run `cvflow-hub migrate`") from exc
    if current != head:
        raise HubError("database_unavailable",
                       f"the database schema is at {current}, this hub needs {head}: run `cvflow-hub migrate`")
