"""Shared fixtures: real hubs over real sockets, on SQLite + files and PostgreSQL + S3.

Every test that takes ``hub`` runs once per backend in ``CVFLOW_TEST_BACKENDS``
(default ``sqlite-file,postgres-s3``). Each backend has one hub server for the session,
listening on a loopback port; between tests its tables are emptied, its blob store wiped
and its caches cleared, so tests see a fresh hub without paying for a new server.

PostgreSQL is the machine's server at 127.0.0.1:5432 (a database per test session is
created and dropped); S3 is moto's threaded server, real S3 HTTP over a loopback socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

import boto3
import httpx
import psycopg
import pytest
import sqlalchemy as sa
import uvicorn
from moto.server import ThreadedMotoServer
from sqlmodel import SQLModel

from hub.app import create_app
from hub.context import build_context
from hub.settings import Settings
from hub.storage import FileBlobStore
from tests.helpers import LiveHub

PG_ADMIN_URL = os.environ.get("CVFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = [b for b in os.environ.get("CVFLOW_TEST_BACKENDS", "sqlite-file,postgres-s3").split(",") if b]
REGION = "us-east-1"

# One uv wheel cache for every venv the tests build, in this session and the next: each torch
# venv after the first hard-links torch's files from it instead of unpacking the wheel again
# (cvflow.install.venv). On the file system of pytest's temporary folders, where the venvs go.
os.environ.setdefault("UV_CACHE_DIR", os.path.join(tempfile.gettempdir(), "cvflow-test-uv-cache"))


# --- services -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aws_credentials() -> Iterator[None]:
    """Dummy credentials for boto3; moto accepts any. Nothing of the user's AWS setup is read."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        yield


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _new_bucket(endpoint: str) -> str:
    name = f"cvflow-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=name)
    return name


@contextlib.contextmanager
def scratch_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards; its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; its URL."""
    name = f"cvflow_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); start it with scripts/services")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def make_settings(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Settings for a backend: ``make_settings("postgres-s3", max_blob_size=...)``."""

    def make(backend: str, **overrides: object) -> Settings:
        data = tmp_path_factory.mktemp(backend)
        db_kind, store_kind = backend.split("-")
        database_url = None
        if db_kind == "postgres":
            database_url = request.getfixturevalue("pg_database")
        storage_url = None
        if store_kind == "s3":
            request.getfixturevalue("aws_credentials")
            endpoint = request.getfixturevalue("s3_endpoint")
            storage_url = f"s3://{_new_bucket(endpoint)}/hub?endpoint={endpoint}&region={REGION}"
        overrides.setdefault("auto_migrate", True)
        overrides.setdefault("argon2_time_cost", 1)
        overrides.setdefault("argon2_memory_cost", 1024)
        return Settings.create(data_dir=data, database_url=database_url, storage_url=storage_url,
                               environ={}, **overrides)

    return make


# --- live hubs --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving an app on a loopback port, in a thread of this process."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the hub server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_hub(settings: Settings) -> tuple[LiveHub, ServerThread]:
    context = build_context(settings)
    server = ServerThread(create_app(settings, context=context)).__enter__()
    return LiveHub(f"http://127.0.0.1:{server.port}", context), server


@contextlib.contextmanager
def running_hub(settings: Settings) -> Iterator[LiveHub]:
    """A hub of its own for a module's fixture: started, then stopped with its clients and engine."""
    live, server = start_hub(settings)
    try:
        yield live
    finally:
        live.close_clients()
        server.__exit__()
        live.context.engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def live_hub(request: pytest.FixtureRequest, make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    hub, server = start_hub(make_settings(request.param))
    hub.backend = request.param
    yield hub
    server.__exit__()
    hub.context.engine.dispose()


def reset(hub: LiveHub) -> None:
    """Empty every table, wipe the store and drop caches."""
    engine = hub.context.engine
    tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
    # the last test's counts are forgotten (their version ids are reused) and no batch is
    # written while the tables are emptied: a TRUNCATE beside a batch deadlocks on PostgreSQL
    with hub.context.downloads.held(), engine.begin() as conn:
        hub.context.downloads.discard()
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))
    store = hub.context.store
    if isinstance(store, FileBlobStore):
        shutil.rmtree(store.root, ignore_errors=True)
    else:
        for staged in list(store.iter_staged()):
            store.abort_upload(staged.upload_id, "")
        for blob in list(store.iter_blobs()):
            store.delete(blob.digest)
    hub.context.cache.clear()
    hub.context.uploads._hashes.clear()


@pytest.fixture
def hub(live_hub: LiveHub) -> Iterator[LiveHub]:
    reset(live_hub)
    yield live_hub
    live_hub.close_clients()


@pytest.fixture
def alice(hub: LiveHub) -> httpx.Client:
    """A user ``alice`` with a read+publish token; returns a client that sends it."""
    return hub.user_client("alice")


@pytest.fixture
def make_user(hub: LiveHub):  # type: ignore[no-untyped-def]
    return hub.user_client

