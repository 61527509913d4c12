"""The hub while its database or its blob store is away, and after it comes back.

While a part is away the hub answers 503 with a code (``database_unavailable``,
``storage_unavailable``) and ``Retry-After``, never a 500; what needs only the other part keeps
working; once the part is back the same process serves again, without a restart.
``bench/soak.py`` measures the same under load, on two replicas.

The parts are real and this test's own: a PostgreSQL database that stops taking connections
(``ALLOW_CONNECTIONS false`` and its backends terminated; the shared server is never restarted)
and a moto S3 server that is stopped and started again on its port (its objects live in this
process, so they survive).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from moto.server import ThreadedMotoServer

from hub.errors import RETRY_AFTER
from hub.settings import Settings
from tests.conftest import PG_ADMIN_URL, REGION, running_hub, scratch_pg_database
from tests.helpers import LiveHub, error_code, manifest, publish, sha256

PAGE = {"accept": "text/html"}
README = b"# Detector\n\nFinds things.\n"
WEIGHTS = b"\x00weights\x01" * 1000


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    kw.setdefault("auto_migrate", True)
    return Settings.create(data_dir=tmp_path, environ={}, argon2_time_cost=1,
                           argon2_memory_cost=1024, metadata_cache_ttl=0, **kw)


def _unavailable(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert error_code(response) == code


def _files() -> dict[str, bytes]:
    return {"solver.py": b"class Detector: pass\n", "README.md": README, "weights.dat": WEIGHTS}


# --- the database ---------------------------------------------------------------------------------


@pytest.fixture
def pg_hub(tmp_path: Path) -> Iterator[tuple[LiveHub, str]]:
    with scratch_pg_database("cvflow_outage") as url, running_hub(_settings(tmp_path, database_url=url)) as live:
        yield live, url.rsplit("/", 1)[1]


def _admin(sql: str, name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.replace("{db}", f'"{name}"'), [name] if "%s" in sql else None)


def _cut_connections(name: str) -> None:
    _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
           name)


def test_connections_the_server_cut_are_replaced(pg_hub: tuple[LiveHub, str]) -> None:
    live, name = pg_hub
    alice = live.user_client("alice")
    assert publish(alice, "alice/detector", "1.0.0").status_code == 201
    _cut_connections(name)  # what a PostgreSQL restart or failover does to the pool
    assert alice.get("/api/v1/whoami").status_code == 200
    _cut_connections(name)
    assert publish(alice, "alice/detector", "1.1.0").status_code == 201
    assert live.client().get("/", headers=PAGE).status_code == 200


def test_database_away_is_503_with_retry_after_and_back_without_a_restart(pg_hub: tuple[LiveHub, str]) -> None:
    live, name = pg_hub
    alice = live.user_client("alice")
    assert publish(alice, "alice/detector", "1.0.0", files=_files()).status_code == 201
    anonymous = live.client()
    _admin("ALTER DATABASE {db} ALLOW_CONNECTIONS false", name)
    try:
        _cut_connections(name)
        _unavailable(anonymous.get("/api/v1/packages/alice/detector"), "database_unavailable")
        _unavailable(anonymous.get("/api/v1/packages", params={"q": "detector"}), "database_unavailable")
        _unavailable(alice.post("/api/v1/uploads", json={"size": 10}), "database_unavailable")
        _unavailable(alice.post("/api/v1/blobs/check", json={"digests": [sha256(WEIGHTS)]}), "database_unavailable")
        body = {"manifest": manifest("alice/detector", "1.1.0"), "files": []}
        _unavailable(alice.post("/api/v1/packages/alice/detector/versions", json=body), "database_unavailable")
        _unavailable(anonymous.post("/api/v1/auth/login", json={"username": "alice", "password": "x"}),
                     "database_unavailable")
        _unavailable(anonymous.get("/readyz"), "database_unavailable")
        page = anonymous.get("/alice/detector", headers=PAGE)
        assert page.status_code == 503
        assert page.headers["retry-after"] == str(RETRY_AFTER)
        assert page.headers["content-type"].startswith("text/html")
    finally:
        _admin("ALTER DATABASE {db} ALLOW_CONNECTIONS true", name)
    # The pool's connections are all dead; each is replaced as it is checked out.
    assert anonymous.get("/readyz").status_code == 200
    assert anonymous.get("/api/v1/packages/alice/detector").status_code == 200
    assert publish(alice, "alice/detector", "1.1.0").status_code == 201
    assert anonymous.get("/alice/detector", headers=PAGE).status_code == 200


def test_a_database_server_that_never_answers_is_503_not_a_hang(tmp_path: Path) -> None:
    # A listening socket that takes connections and never says a word: a hung server, or a
    # host gone behind a load balancer. New connections give up after connect_timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"postgresql+psycopg://hub@127.0.0.1:{silent.getsockname()[1]}/hub"
        with running_hub(_settings(tmp_path, database_url=url, auto_migrate=False)) as live:
            _unavailable(live.client().get("/api/v1/packages"), "database_unavailable")  # or a 60 s timeout


# --- the blob store -------------------------------------------------------------------------------


class Moto:
    """moto's S3 server on a fixed loopback port, stopped and started again at will.

    Its objects live in this process, not in the server, so they survive a restart.
    """

    def __init__(self) -> None:
        self.port = 0
        self.server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # the listening socket closes: connections are refused
            self.server = None


@pytest.fixture
def s3_hub(tmp_path: Path, aws_credentials: None) -> Iterator[tuple[LiveHub, Moto]]:
    moto = Moto()
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{moto.port}"
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket="outage")
        settings = _settings(tmp_path, storage_url=f"s3://outage/hub?endpoint={endpoint}&region={REGION}")
        with running_hub(settings) as live:
            yield live, moto
    finally:
        moto.stop()


def test_store_away_is_503_with_retry_after_while_database_reads_work(s3_hub: tuple[LiveHub, Moto]) -> None:
    live, moto = s3_hub
    alice = live.user_client("alice")
    assert publish(alice, "alice/detector", "1.0.0", files=_files()).status_code == 201
    files = "/api/v1/packages/alice/detector/versions/1.0.0/files"
    anonymous = live.client()
    moto.stop()
    try:
        # Only the database: these keep working.
        assert anonymous.get("/api/v1/packages/alice/detector").status_code == 200
        assert anonymous.get("/api/v1/packages/alice/detector/versions/1.0.0").status_code == 200
        assert anonymous.get("/api/v1/packages", params={"q": "detector"}).status_code == 200
        assert alice.post("/api/v1/packages/alice/detector/versions/1.0.0/yank",
                          json={"reason": "testing"}).status_code == 200
        # The bytes: 503, never a 500.
        _unavailable(anonymous.get(f"{files}/weights.dat"), "storage_unavailable")
        _unavailable(alice.post("/api/v1/uploads", json={"size": 10}), "storage_unavailable")
        _unavailable(anonymous.get("/readyz"), "storage_unavailable")
        page = anonymous.get("/alice/detector/v/1.0.0", headers=PAGE)  # renders the README from the store
        assert page.status_code == 503
        assert page.headers["retry-after"] == str(RETRY_AFTER)
    finally:
        moto.start()
    weights = anonymous.get(f"{files}/weights.dat")
    assert weights.status_code == 200
    assert sha256(weights.content) == sha256(WEIGHTS)
    assert anonymous.get("/alice/detector/v/1.0.0", headers=PAGE).status_code == 200
    assert publish(alice, "alice/detector", "1.1.0", files={"solver.py": b"# new\n"}).status_code == 201
    assert anonymous.get("/readyz").status_code == 200
