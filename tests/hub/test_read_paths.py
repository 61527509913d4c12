"""The hub's hot read paths: downloads counted in memory and written in batches, files resolved
from an in-process cache, and expired package documents refreshed off the event loop.

Every test runs a real hub over a real socket, on SQLite and on PostgreSQL. "Another replica"
is a write made on the database without this process's ORM (what a second replica's commit
looks like from here): this replica may only learn of it when its cache entries expire.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hub.app import create_app
from hub.context import HubContext, MetadataCache, PublicFile, PublicVersion, build_context
from hub.db import session_scope
from hub.models import DownloadCount, Package, Version
from hub.settings import Settings
from tests.conftest import BACKENDS, ServerThread, scratch_pg_database
from tests.helpers import LiveHub, error_code, publish

DATABASES = sorted({b.split("-")[0] for b in BACKENDS})
TTL = 0.5
FILE = "/api/v1/packages/alice/detector/versions/1.0.0/files/solver.py"
MANIFEST = "/api/v1/packages/alice/detector/versions/1.0.0/files/cvflow.toml"


@contextlib.contextmanager
def own_hub(database: str, data_dir: Path, *, interval: float = 1.0,
            ttl: float = TTL) -> Iterator[tuple[LiveHub, ServerThread]]:
    """A hub of the test's own (its own database), with a short metadata TTL."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(scratch_pg_database("cvflow_reads")) if database == "postgres" else None
        settings = Settings.create(data_dir=data_dir, database_url=url, environ={}, auto_migrate=True,
                                   argon2_time_cost=1, argon2_memory_cost=1024, metadata_cache_ttl=ttl)
        context = build_context(settings)
        context.downloads.interval = interval  # before the app's lifespan starts the writer thread
        server = ServerThread(create_app(settings, context=context)).__enter__()
        live = LiveHub(f"http://127.0.0.1:{server.port}", context)
        try:
            yield live, server
        finally:
            live.close_clients()
            server.__exit__()
            context.engine.dispose()


def as_another_replica(context: HubContext, sql: str, **params: object) -> None:
    """A change this process's ORM does not see, as a commit on another replica would be."""
    with context.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def within(seconds: float, check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def stored_counts(context: HubContext) -> tuple[int, int, int]:
    """(the version's, the package's, the sum of the per-day) download counts in the database."""
    with session_scope(context.engine) as session:
        version = session.exec(sa.select(sa.func.sum(Version.downloads))).one()[0] or 0  # type: ignore[call-overload]
        package = session.exec(sa.select(sa.func.sum(Package.downloads))).one()[0] or 0  # type: ignore[call-overload]
        days = session.exec(sa.select(sa.func.sum(DownloadCount.count))).one()[0] or 0  # type: ignore[call-overload]
    return int(version), int(package), int(days)


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- download counts ------------------------------------------------------------------------


def test_downloads_reach_the_database_soon_without_a_flush_call(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201
        anon = live.client()
        for _ in range(5):
            assert anon.get(MANIFEST).status_code == 200
        assert anon.get(FILE).status_code == 200  # not a download of the version: only its manifest counts
        # Written by the hub's own writer thread, about every second: nothing here flushes.
        assert within(10, lambda: stored_counts(live.context) == (5, 5, 5)), stored_counts(live.context)
        doc = anon.get("/api/v1/packages/alice/detector/versions/1.0.0").json()
        assert doc["downloads"] == 5
        history = anon.get("/api/v1/packages/alice/detector/downloads").json()
        assert history["total"] == 5 and [d["downloads"] for d in history["days"]] == [5]


def test_downloads_counted_before_shutdown_are_written_at_shutdown(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path, interval=3600) as (live, server):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201
        anon = live.client()
        for _ in range(3):
            assert anon.get(MANIFEST).status_code == 200
        assert live.context.downloads.pending() == 3
        assert stored_counts(live.context) == (0, 0, 0)  # the hour-long batch has not been written
        live.close_clients()
        server.__exit__()  # uvicorn runs the app's lifespan shutdown: the last batch is written
        assert live.context.downloads.pending() == 0
        assert stored_counts(live.context) == (3, 3, 3)


def test_counts_of_a_version_deleted_before_the_batch_are_dropped(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path, interval=3600) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201 and publish(alice, version="2.0.0").status_code == 201
        anon = live.client()
        assert anon.get(MANIFEST).status_code == 200
        assert anon.get(MANIFEST.replace("1.0.0", "2.0.0")).status_code == 200
        root = live.user_client("root", admin=True)
        r = root.request("DELETE", "/api/v1/packages/alice/detector/versions/1.0.0", json={"reason": "legal"})
        assert r.status_code == 200, r.text
        assert live.context.downloads.flush() == 2  # the batch goes through; the gone version's count is dropped
        assert stored_counts(live.context) == (1, 1, 1)


# --- the file cache: access stays exact -------------------------------------------------------


def test_a_private_file_is_never_served_from_the_cache(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice, private=True).status_code == 201
        assert alice.get(FILE).status_code == 200
        assert alice.get(FILE).status_code == 200  # the owner's reads do not fill the cache for others
        anon, mallory = live.client(), live.user_client("mallory")
        for client in (anon, mallory):
            r = client.get(FILE)
            assert r.status_code == 404 and error_code(r) == "package_not_found"


def test_a_file_made_private_here_stops_being_served_at_once(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201
        anon = live.client()
        assert anon.get(FILE).status_code == 200 and anon.get(FILE).status_code == 200  # cached now
        assert alice.patch("/api/v1/packages/alice/detector", json={"private": True}).status_code == 200
        r = anon.get(FILE)
        assert r.status_code == 404 and error_code(r) == "package_not_found"
        assert alice.get(FILE).status_code == 200


def test_a_version_deleted_here_stops_being_served_at_once(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201
        anon = live.client()
        assert anon.get(FILE).status_code == 200 and anon.get(FILE).status_code == 200
        root = live.user_client("root", admin=True)
        r = root.request("DELETE", "/api/v1/packages/alice/detector/versions/1.0.0", json={"reason": "legal"})
        assert r.status_code == 200, r.text
        r = anon.get(FILE)
        assert r.status_code == 404 and error_code(r) == "version_not_found"


def test_any_catalog_commit_in_this_process_clears_the_cache(database: str, tmp_path: Path) -> None:
    """Not only the API's writes: the website, the indexer and CLI commands commit through the ORM."""
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201
        anon = live.client()
        assert anon.get(FILE).status_code == 200 and anon.get(FILE).status_code == 200
        with session_scope(live.context.engine, write=True) as session:
            package = session.exec(sa.select(Package)).scalars().one()  # type: ignore[call-overload]
            package.private = True
            session.add(package)
        assert anon.get(FILE).status_code == 404
        assert anon.get("/api/v1/packages/alice/detector").status_code == 404


def test_another_replicas_changes_stop_cached_files_within_the_ttl(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201 and publish(alice, "alice/other").status_code == 201
        anon = live.client()
        other = FILE.replace("alice/detector", "alice/other")
        assert anon.get(FILE).status_code == 200 and anon.get(other).status_code == 200
        as_another_replica(live.context, "UPDATE packages SET private = :yes WHERE full_name = 'alice/detector'", yes=True)
        as_another_replica(live.context, "DELETE FROM files WHERE version_id IN (SELECT v.id FROM versions v "
                           "JOIN packages p ON p.id = v.package_id WHERE p.full_name = 'alice/other')")
        assert within(TTL + 3, lambda: anon.get(FILE).status_code == 404)
        assert within(TTL + 3, lambda: anon.get(other).status_code == 404)
        assert alice.get(FILE).status_code == 200


def test_a_pull_of_a_public_version_reads_its_file_list_once(database: str, tmp_path: Path) -> None:
    """16 readers fetch every file of a cold public version at once, as `cvflow pull -j 16` does:
    one request reads the version's files, the others wait for it, and none reads them again."""
    images = {f"images/{i:03d}.png": f"image {i}".encode() for i in range(96)}
    with own_hub(database, tmp_path, ttl=60) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice, files={"solver.py": b"class Detector: pass\n", **images}).status_code == 201
        reads: list[str] = []

        def note(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
            if re.search(r"\bFROM files\b", statement):
                reads.append(statement)

        sa.event.listen(live.context.engine, "before_cursor_execute", note)
        try:
            base = FILE.rsplit("/", 1)[0]
            with httpx.Client(base_url=live.url, limits=httpx.Limits(max_connections=16)) as client, \
                    concurrent.futures.ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda path: client.get(f"{base}/{path}"), images))
                assert len(reads) == 1, reads
                # a path the cached list lacks is asked of the database, and answered as before
                missing = client.get(f"{base}/images/none.png")
        finally:
            sa.event.remove(live.context.engine, "before_cursor_execute", note)
        assert [(a.status_code, a.content) for a in answers] == [(200, body) for body in images.values()]
        assert missing.status_code == 404 and error_code(missing) == "file_not_found"


def test_a_cached_document_is_answered_early_with_the_endpoints_bytes_and_headers(database: str,
                                                                                 tmp_path: Path) -> None:
    """hub.app.CachedDocumentMiddleware answers an anonymous GET of a cached document before the
    router: the same status, body and headers (serial and security headers included) as the
    endpoint's answer; a token, a query string or another method still reach the endpoint."""
    with own_hub(database, tmp_path, ttl=60) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice).status_code == 201
        doc = "/api/v1/packages/alice/detector"
        anon = live.client()
        import hub.app

        real = hub.app.cached_document
        answered: list[int] = []

        def noted(*args: Any) -> Any:
            answer = real(*args)
            answered.append(0 if answer is None else answer.status_code)
            return answer

        hub.app.cached_document = noted  # type: ignore[assignment]  # looked up per request
        try:
            first = anon.get(doc)  # the endpoint's answer, which fills the cache
            early = anon.get(doc)  # from the cache, before the router
            etag = first.headers["etag"]
            not_modified = anon.get(doc, headers={"if-none-match": etag})
        finally:
            hub.app.cached_document = real
        assert answered == [0, 200, 304]

        def comparable(r: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
            return r.status_code, r.content, {k: v for k, v in r.headers.items() if k not in ("date", "server")}

        assert comparable(early) == comparable(first)
        assert not_modified.status_code == 304 and not_modified.headers["etag"] == etag
        assert "x-cvflow-serial" in early.headers and "x-content-type-options" in early.headers
        # still the endpoint's (and the middlewares') to answer:
        assert alice.get(doc).status_code == 200  # a token: who asks matters
        refused = anon.get(doc, params={"token": "cvf_abcdefgh12345678"})
        assert refused.status_code == 400 and error_code(refused) == "token_in_query"
        assert anon.head(doc).status_code == 200 and anon.head(doc).content == b""
        assert anon.get(doc + "/").status_code == 404


def test_no_other_endpoint_has_the_package_documents_path_shape() -> None:
    from hub import api

    shaped = [(r.path, sorted(getattr(r, "methods", None) or ())) for r in api.routes()
              if re.fullmatch(r"/api/v1/packages/[^/]+/[^/]+", getattr(r, "path", ""))]
    assert shaped == [("/api/v1/packages/{namespace}/{name}", ["GET", "HEAD", "PATCH"])]


def test_a_read_that_raced_an_invalidation_is_not_cached() -> None:
    cache = MetadataCache(ttl=60)
    key, file = ("alice", "detector", "1.0.0", "solver.py"), PublicFile("0" * 64, 1, "solver.py", 1, 1)
    version = PublicVersion(1, 1, {"solver.py": ("0" * 64, 1)})
    generation = cache.generation  # a reader takes this, then queries...
    cache.invalidate("pkg:alice/")  # ...while a commit makes the package private
    cache.put_version(key[:3], version, generation=generation)
    cache.put("pkg:alice/detector", b"{}", '"e"', generation=generation)
    assert cache.get_file(key) is None and cache.get("pkg:alice/detector") is None
    cache.put_version(key[:3], version, generation=cache.generation)
    assert cache.get_file(key) == file
    assert cache.get_file((*key[:3], "other.py")) is None


# --- the package document: an expired entry is refreshed off the event loop ------------------


def test_an_expired_document_follows_another_replicas_changes(database: str, tmp_path: Path) -> None:
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        for version in ("1.0.0", "2.0.0"):
            assert publish(alice, version=version).status_code == 201
        anon = live.client()
        doc = "/api/v1/packages/alice/detector"

        def versions() -> list[str]:
            r = anon.get(doc)
            return [v["version"] for v in r.json()["versions"]] if r.status_code == 200 else []

        assert versions() == ["2.0.0", "1.0.0"]
        as_another_replica(live.context, "UPDATE versions SET yanked = :yes WHERE version = '2.0.0'", yes=True)
        assert within(TTL + 3, lambda: anon.get(doc).json()["versions"][0]["yanked"] is True)
        # Made private elsewhere: the refresh finds no package and the entry goes; never served on.
        as_another_replica(live.context, "UPDATE packages SET private = :yes", yes=True)
        assert within(TTL + 3, lambda: anon.get(doc).status_code == 404)
        time.sleep(TTL * 2.5)
        r = anon.get(doc)
        assert r.status_code == 404 and error_code(r) == "package_not_found"


def test_documents_and_files_answer_under_concurrent_readers(database: str, tmp_path: Path) -> None:
    """Many readers across expiries: every answer is whole and right (the refresh is shared)."""
    with own_hub(database, tmp_path) as (live, _):
        alice = live.user_client("alice")
        assert publish(alice, files={"solver.py": b"x" * 3000}).status_code == 201

        def read(n: int) -> tuple[int, int]:
            with httpx.Client(base_url=live.url) as client:
                doc = client.get("/api/v1/packages/alice/detector")
                part = client.get(FILE, headers={"range": "bytes=10-19"})
                return doc.status_code, len(part.content) if part.status_code == 206 else -1

        deadline = time.monotonic() + 3 * TTL
        answers = []
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while time.monotonic() < deadline:
                answers += list(pool.map(read, range(16)))
        assert answers and set(answers) == {(200, 10)}
