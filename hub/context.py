"""The hub context: the collaborators every request uses, and a request's unit of work.

:class:`HubContext` is built once per process (:func:`build_context`) from settings and reached
from a request with :func:`ctx`. What it holds lives as long as the app: the database engine,
the blob store, the password hasher, the upload service and the metadata cache. The app's other
resources (the upstream pool, the login limiter) are opened and closed by the app's lifespan
(``hub.app``).

A request's database work is **one unit of work**: :func:`in_session` runs a function of a
session in the threadpool inside one :func:`hub.db.session_scope`, which commits once at the end
or rolls everything back. A handler collects what it needs from the request first (principal,
body, query), then hands its reads and writes to one ``in_session`` call, and renders or streams
after the session has closed: no session is held while a body streams in or a file streams out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from hub.db import session_scope
from hub.models import utcnow
from hub.settings import Settings
from hub.storage import BlobStore

if TYPE_CHECKING:
    from hub.services.blobs import UploadService

T = TypeVar("T")
log = logging.getLogger(__name__)


class MetadataCache:
    """Rendered public documents, and where public files' bytes are, for a short time, so hot
    reads skip the database.

    Writes on this replica invalidate at once: the endpoints that write call :meth:`invalidate`,
    and every commit in this process that changes a package, a version, a file, a namespace or
    the change feed clears the whole cache (:func:`watch_catalog`), whatever code path made it.
    Other replicas expire entries after ``ttl``. A read that started before an invalidation
    never stores what it read (:attr:`generation`), so a package made private, or a version
    taken down, mid-read is not cached as it was.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        #: Bumped by every invalidation; a reader takes it before its query and passes it to put.
        self.generation = 0
        self._items: dict[str, tuple[float, bytes, str]] = {}
        self._versions: dict[tuple[str, str, str], tuple[float, PublicVersion]] = {}
        self._refreshing: set[str] = set()
        self._loading: dict[tuple[str, str, str], asyncio.Event] = {}  # event loop only
        self._lock = threading.Lock()  # invalidations come from worker threads (watch_catalog)

    def get(self, key: str) -> tuple[bytes, str] | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1], item[2]

    def get_stale(self, key: str) -> tuple[bytes, str, bool] | None:
        """The entry and whether it expired; an expired one is dropped after ``ttl`` more seconds.

        A caller may answer with an expired entry while one refresh runs (:meth:`begin_refresh`):
        invalidations remove entries outright, so only an entry nothing on this replica changed
        is ever served past its time, and for no longer than one refresh.
        """
        item = self._items.get(key)
        if item is None:
            return None
        now = time.monotonic()
        if item[0] + self.ttl < now:
            return None
        return item[1], item[2], item[0] < now

    def begin_refresh(self, key: str) -> bool:
        """True for the one caller that should refresh ``key`` now; it calls :meth:`end_refresh`."""
        if key in self._refreshing:
            return False
        self._refreshing.add(key)
        return True

    def end_refresh(self, key: str) -> None:
        self._refreshing.discard(key)

    def put(self, key: str, body: bytes, etag: str, *, generation: int | None = None) -> None:
        with self._lock:
            if self.ttl > 0 and (generation is None or generation == self.generation):
                if len(self._items) > 10_000:
                    self._items = {}
                self._items[key] = (time.monotonic() + self.ttl, body, etag)

    def get_file(self, key: tuple[str, str, str, str]) -> PublicFile | None:
        """A public, live version's file by ``(namespace, name, version, path)`` as requested."""
        item = self._versions.get(key[:3])
        if item is None or item[0] < time.monotonic():
            return None
        version = item[1]
        found = version.files.get(key[3])
        if found is None:
            return None
        return PublicFile(found[0], found[1], key[3], version.version_id, version.package_id)

    def put_version(self, key: tuple[str, str, str], version: PublicVersion, *, generation: int) -> None:
        """Every file of a public package's live version, read after ``generation`` was taken,
        under ``(namespace, name, version)`` as requested."""
        with self._lock:
            if self.ttl > 0 and generation == self.generation:
                # Counted once per version loaded (not per download): at most 200,000 files held.
                held = sum(len(v.files) for k, (_, v) in self._versions.items() if k != key)
                if held + len(version.files) > 200_000:
                    self._versions = {}
                self._versions[key] = (time.monotonic() + self.ttl, version)

    def loading(self, key: tuple[str, str, str]) -> asyncio.Event | None:
        """Single flight for a version's file map, on the event loop: None for the caller that
        should load it (and then call :meth:`loaded`), else the event that load sets.

        A pull of a version's 10,000 files starts with a burst of misses; one of them reads the
        version's files, the others wait for it rather than read them too.
        """
        event = self._loading.get(key)
        if event is None:
            self._loading[key] = asyncio.Event()
        return event

    def loaded(self, key: tuple[str, str, str]) -> None:
        event = self._loading.pop(key, None)
        if event is not None:
            event.set()

    def invalidate(self, prefix: str) -> None:
        with self._lock:
            self.generation += 1
            # Which versions a look-alike spelling reached is not known here: every file map goes.
            self._versions = {}
            self._items = {k: v for k, v in self._items.items() if not k.startswith(prefix)}

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._versions = {}
            self._items = {}


class SmallBlobs:
    """The bytes of small blobs, by digest, so sending one takes no file system call.

    A blob never changes under its digest, so an entry is never stale; whoever asks has passed
    the access check for a file with that digest first. At most ``budget`` bytes, each blob at
    most ``largest``; when full, the lot is dropped and refills with what is asked for.
    """

    def __init__(self, largest: int = 64 << 10, budget: int = 32 << 20) -> None:
        self.largest = largest
        self.budget = budget
        self._items: dict[str, bytes] = {}
        self._bytes = 0

    def get(self, digest: str) -> bytes | None:
        return self._items.get(digest)

    def put(self, digest: str, data: bytes) -> None:
        if len(data) > self.largest:
            return
        if self._bytes + len(data) > self.budget:
            self._items, self._bytes = {}, 0
        if digest not in self._items:
            self._items[digest] = data
            self._bytes += len(data)


@dataclass(frozen=True, slots=True)
class PublicVersion:
    """Every file of a public package's live version: ``files`` maps a path to (sha256, size)."""

    version_id: int
    package_id: int
    files: Mapping[str, tuple[str, int]]


@dataclass(frozen=True, slots=True)
class PublicFile:
    """Where a public file's bytes are, and what a download of it counts."""

    sha256: str
    size: int
    path: str
    version_id: int
    package_id: int


#: The tables whose changes can change what a cached document or file says, or who may read it.
_CATALOG_TABLES = frozenset({"packages", "versions", "files", "dependencies", "namespaces", "package_tags",
                             "package_roles", "package_origins", "change_events"})
_WATCHED: dict[str, weakref.WeakSet[MetadataCache]] = {}
_WATCHED_GUARD = threading.Lock()


def watch_catalog(engine: Engine, cache: MetadataCache) -> None:
    """Clear ``cache`` after every commit in this process, on ``engine``'s database, that changed
    the catalog through the ORM (the website, the indexer, mirrors and CLI commands included)."""
    with _WATCHED_GUARD:
        _WATCHED.setdefault(_db_key(engine), weakref.WeakSet()).add(cache)


def _db_key(bind: Any) -> str:
    url = getattr(bind, "url", None) or bind.engine.url  # an Engine, an OptionEngine or a Connection
    return str(url)


@sa.event.listens_for(OrmSession, "after_flush")
def _note_catalog_change(session: OrmSession, _context: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        table = getattr(obj, "__tablename__", None)
        if table in _CATALOG_TABLES:
            session.info["catalog_changed"] = True
            return


@sa.event.listens_for(OrmSession, "after_commit")
def _clear_after_catalog_change(session: OrmSession) -> None:
    if not session.info.pop("catalog_changed", False) or not _WATCHED:
        return
    try:
        key = _db_key(session.get_bind())
    except Exception:  # a session without one bind: clear every cache rather than none
        log.warning("a catalog commit on an unknown database; clearing every metadata cache", exc_info=True)
        key = None
    with _WATCHED_GUARD:
        caches = [c for k, group in _WATCHED.items() if key in (None, k) for c in group]
    for cache in caches:
        cache.clear()


@sa.event.listens_for(OrmSession, "after_rollback")
def _forget_catalog_change(session: OrmSession) -> None:
    session.info.pop("catalog_changed", None)


class DownloadCounter:
    """Downloads counted in memory and written in batches, so a download writes nothing.

    :meth:`add` is a dict update on the event loop. A thread of its own (:meth:`start`) writes
    what was counted every ``interval`` seconds in one transaction (per version, per package and
    per day: :func:`hub.services.catalog.record_downloads`), and :meth:`stop` writes the rest at
    shutdown; a crash loses at most the last ``interval`` seconds of counts. A batch the
    database refuses is kept and tried again with the next one.
    """

    thread_name = "cvflow-download-counts"

    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self._counts: dict[tuple[int, int, date], int] = {}
        self._counts_lock = threading.Lock()  # held for a dict update or swap, never for I/O
        self._flush_lock = threading.RLock()  # one flush at a time: the thread's, stop's, a test's
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._day = utcnow().date()
        self._day_ends = 0.0

    def add(self, version_id: int, package_id: int, n: int = 1) -> None:
        now = time.time()
        if now >= self._day_ends:  # the day (UTC) changes once a day: not worth a datetime per download
            self._day = utcnow().date()
            self._day_ends = (now // 86400 + 1) * 86400
        key = (version_id, package_id, self._day)
        with self._counts_lock:
            self._counts[key] = self._counts.get(key, 0) + n
        if self._thread is None:  # an app served without lifespan events still writes its counts
            self.start()

    def pending(self) -> int:
        return sum(self._counts.values())

    def flush(self) -> int:
        """Write what was counted so far; returns how many downloads were written."""
        from hub.services.catalog import record_downloads

        with self._flush_lock:
            with self._counts_lock:
                batch, self._counts = self._counts, {}
            if not batch:
                return 0
            try:
                with session_scope(self.engine, write=True) as session:
                    record_downloads(session, batch)
            except BaseException:
                with self._counts_lock:  # the batch goes back, next to what was counted since
                    for key, n in batch.items():
                        self._counts[key] = self._counts.get(key, 0) + n
                raise
            return sum(batch.values())

    def discard(self) -> None:
        """Forget what was counted and not yet written (a test that empties the database)."""
        with self._flush_lock, self._counts_lock:
            self._counts = {}

    @contextmanager
    def held(self) -> Iterator[None]:
        """No batch is written while held: one being written is waited for first.

        For a caller that empties or locks the tables the batches write (a test's reset; a
        TRUNCATE beside a batch's transaction deadlocks on PostgreSQL).
        """
        with self._flush_lock:
            yield

    def start(self) -> None:
        if self._thread is None:
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is left."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._wake.set()
            thread.join(30)
        self._flush_logged()

    def _run(self) -> None:
        while not self._wake.wait(self.interval):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # the database is away: the counts wait for the next batch
            log.warning("could not write %d download counts; will retry", self.pending(), exc_info=True)


@dataclass
class HubContext:
    """What every request of one hub process shares; built by :func:`build_context`."""

    settings: Settings
    engine: Engine
    store: BlobStore
    hasher: PasswordHasher
    uploads: UploadService
    cache: MetadataCache
    schema_head: str
    #: Downloads counted in memory; the app's lifespan starts and stops its writer thread.
    downloads: DownloadCounter
    #: Small blobs' bytes, sent from memory (hub.api.downloads.blob_response).
    small_blobs: SmallBlobs = field(default_factory=SmallBlobs)

    def close(self) -> None:
        """Release the database connections (the engine's pool). The store holds none."""
        self.engine.dispose()


def build_context(settings: Settings, *, store: BlobStore | None = None) -> HubContext:
    """The collaborators every request uses; migrates first when the settings say so."""
    from hub import db, security
    from hub.services.blobs import UploadService
    from hub.storage import open_store

    if settings.auto_migrate:
        db.migrate(settings.database_url)
    engine = db.create_engine(settings.database_url)
    store = store or open_store(settings.storage_url, s3_endpoint_url=settings.s3_endpoint_url,
                                s3_region=settings.s3_region, s3_presign=settings.s3_presign)
    cache = MetadataCache(settings.metadata_cache_ttl)
    watch_catalog(engine, cache)
    return HubContext(
        settings=settings,
        engine=engine,
        store=store,
        hasher=security.password_hasher(settings.argon2_time_cost, settings.argon2_memory_cost),
        uploads=UploadService(engine, store, settings),
        cache=cache,
        schema_head=db.head_revision(),
        downloads=DownloadCounter(engine),
    )


def ctx(request: HTTPConnection) -> HubContext:
    """The context of the app serving ``request``."""
    hub: HubContext = request.app.state.hub  # app.state is untyped
    return hub


async def run_sync(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in the threadpool: blocking work off the event loop."""
    return await run_in_threadpool(partial(func, *args, **kwargs))


async def in_session(request: HTTPConnection, fn: Callable[..., T], /, *args: Any, write: bool = False,
                     **kwargs: Any) -> T:
    """The request's unit of work: ``fn(session, *args, **kwargs)`` in the threadpool, in one
    transaction that commits once when ``fn`` returns and rolls back if it raises.

    ``write=True`` for work that writes: on SQLite the transaction takes the write lock when it
    begins (``BEGIN IMMEDIATE``, see :func:`hub.db.session_scope`), so a read followed by a write
    waits its turn instead of failing. Keep ``fn`` to database work: no network calls and no
    streaming inside it, since the session holds a connection (and on SQLite, for writes, the
    lock) until it returns. Rows returned stay usable afterwards (``expire_on_commit=False``).
    """
    engine = ctx(request).engine

    def work() -> T:
        with session_scope(engine, write=write) as session:
            return fn(session, *args, **kwargs)

    return await run_in_threadpool(work)
