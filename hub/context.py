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

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from hub.db import session_scope
from hub.settings import Settings
from hub.storage import BlobStore

if TYPE_CHECKING:
    from hub.services.blobs import UploadService

T = TypeVar("T")


class MetadataCache:
    """Rendered public documents for a short time, so hot reads skip the database.

    Writes on this replica invalidate at once; other replicas expire entries after ``ttl``.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, bytes, str]] = {}

    def get(self, key: str) -> tuple[bytes, str] | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1], item[2]

    def put(self, key: str, body: bytes, etag: str) -> None:
        if self.ttl > 0:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, body, etag)

    def invalidate(self, prefix: str) -> None:
        for key in [k for k in self._items if k.startswith(prefix)]:
            self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


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
    return HubContext(
        settings=settings,
        engine=engine,
        store=store,
        hasher=security.password_hasher(settings.argon2_time_cost, settings.argon2_memory_cost),
        uploads=UploadService(engine, store, settings),
        cache=MetadataCache(settings.metadata_cache_ttl),
        schema_head=db.head_revision(),
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
