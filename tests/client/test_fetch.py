"""``cvflow.fetch`` (blob bodies over plain sockets) and ``Cache.batch`` (one sync for many blobs),
against real HTTP servers on loopback.

:class:`Store` is a real ``http.server`` of many blobs, one per path, that counts the TCP
connections it accepted and the Authorization headers it saw; it may redirect every request
to a second server, answer in chunks, or drop each connection after one answer without saying
so (as a server whose keep-alive timeout passed does).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cvflow.api import HubClient
from cvflow.cache import Cache
from cvflow.errors import IntegrityError
from cvflow.transfer import download

BLOBS = {f"/b/{i}": os.urandom(4096 + i) for i in range(40)}
BIG = os.urandom(3 << 20)  # more than the fetcher's 1 MiB buffer
BLOBS["/big"] = BIG


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store:
    """A loopback server of ``BLOBS``; ``mode``: "plain", "chunked", "drop" (close after each answer)
    or "redirect" (answer 302 to ``target``, which serves the bytes)."""

    def __init__(self, mode: str = "plain", target: Store | None = None) -> None:
        self.mode, self.target = mode, target
        self.connections = 0
        self.auth: list[str | None] = []
        self.served = 0
        self.corrupt: set[str] = set()
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with store.lock:
                    store.connections += 1

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                store.answer(self)

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.auth.append(h.headers.get("authorization"))
        if self.mode == "redirect":
            assert self.target is not None
            h.send_response(302)
            h.send_header("location", self.target.url + h.path)
            h.send_header("content-length", "0")
            h.end_headers()
            return
        data = BLOBS.get(h.path)
        if data is None:
            body = b'{"error": {"code": "file_not_found", "message": "no such file"}}'
            h.send_response(404)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if h.path in self.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        with self.lock:
            self.served += 1
        h.send_response(200)
        if self.mode == "chunked":
            h.send_header("transfer-encoding", "chunked")
            h.end_headers()
            for start in range(0, len(data), 1000):
                piece = data[start : start + 1000]
                h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")
        else:
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        h.wfile.flush()
        if self.mode == "drop":  # no "connection: close": the client finds out on its next request
            h.close_connection = True


@pytest.fixture
def stores() -> Iterator[list[Store]]:
    made: list[Store] = []
    yield made
    for s in made:
        s.close()


def start(stores: list[Store], mode: str = "plain", target: Store | None = None) -> Store:
    s = Store(mode, target)
    stores.append(s)
    return s


def fetch_all(client: HubClient, tmp: Path, paths: list[str]) -> None:
    tmp.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        data = BLOBS[path]
        dest = tmp / f"out-{i}"
        download(client, path, tmp / f"part-{i}", digest=sha(data), size=len(data), dest=dest)
        assert dest.read_bytes() == data


def test_a_real_hub_client_fetches_over_its_own_sockets_and_keeps_one_connection(stores: list[Store],
                                                                              tmp_path: Path) -> None:
    store = start(stores)
    with HubClient(store.url, timeout=10) as client:
        assert client.fetcher is not None
        fetch_all(client, tmp_path, [*BLOBS])
    assert store.served == len(BLOBS)
    assert store.connections == 1, "every download of one thread reuses one keep-alive connection"


def test_threads_and_later_pulls_share_the_idle_connections(stores: list[Store], tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = start(stores)
    paths = [p for p in BLOBS if p.startswith("/b/")]
    with HubClient(store.url, timeout=10) as client:
        for run in range(3):  # a new pool of threads each time, as each pull of `cvflow install` has
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda p, r=run: fetch_all(client, tmp_path / f"{r}-{p[3:]}", [p]), paths))
    assert store.served == 3 * len(paths)
    assert store.connections <= 4, "no more connections than requests ever in flight at once"


def test_a_client_with_its_own_transport_keeps_httpx(stores: list[Store]) -> None:
    import httpx

    store = start(stores)
    with HubClient(store.url, transport=httpx.HTTPTransport()) as client:
        assert client.fetcher is None


def test_a_chunked_body_arrives_whole(stores: list[Store], tmp_path: Path) -> None:
    store = start(stores, "chunked")
    with HubClient(store.url, timeout=10) as client:
        fetch_all(client, tmp_path, ["/b/3", "/big", "/b/4"])
    assert store.connections == 1


def test_a_connection_the_server_dropped_is_replaced_without_an_error(stores: list[Store], tmp_path: Path) -> None:
    store = start(stores, "drop")
    with HubClient(store.url, timeout=10) as client:
        fetch_all(client, tmp_path, ["/b/1", "/b/2", "/b/3"])
    assert store.served == 3 and store.connections == 3


def test_a_redirect_elsewhere_is_followed_without_the_token(stores: list[Store], tmp_path: Path) -> None:
    elsewhere = start(stores)
    hub = start(stores, "redirect", target=elsewhere)
    with HubClient(hub.url, "secret-token", timeout=10) as client:
        fetch_all(client, tmp_path, ["/b/5", "/big"])
    assert hub.auth == ["Bearer secret-token"] * 2
    assert elsewhere.auth == [None, None], "the token never leaves the hub's origin"


def test_a_missing_file_is_the_hubs_error(stores: list[Store], tmp_path: Path) -> None:
    from cvflow.errors import HubNotFoundError

    store = start(stores)
    with HubClient(store.url, timeout=10) as client, pytest.raises(HubNotFoundError, match="file_not_found"):
        download(client, "/nope", tmp_path / "part", digest=sha(b"x"), size=1, dest=tmp_path / "out")
    assert not (tmp_path / "part").exists()


def test_a_batch_names_no_blob_before_its_commit_then_all_of_them(stores: list[Store], tmp_path: Path) -> None:
    store = start(stores)
    cache = Cache(tmp_path / "cache", fsync=True)
    paths = [p for p in BLOBS if p.startswith("/b/")]
    with HubClient(store.url, timeout=10) as client, cache.batch() as batch:
        batch.largest = 1 << 20  # BIG (3 MiB) is a large blob here
        for path in paths:
            cache.fetch_blob(client, path, sha(BLOBS[path]), len(BLOBS[path]), batch=batch)
        waiting = [p for p in paths if cache.has_blob(sha(BLOBS[p]))]
        assert waiting == [], "verified bytes wait in tmp/ until one sync makes them durable"
        cache.fetch_blob(client, "/big", sha(BIG), len(BIG), batch=batch)
        assert cache.has_blob(sha(BIG)), "a large blob is fsynced and stored on its own"
    for path in paths:
        assert cache.blob_path(sha(BLOBS[path])).read_bytes() == BLOBS[path]
        assert cache.was_verified(sha(BLOBS[path]))
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_small_blobs_share_256_locks_and_threads_fetching_one_blob_store_it_once(stores: list[Store],
                                                                               tmp_path: Path) -> None:
    """Blobs under 16 MiB lock by digest prefix, with no lock file each."""
    from concurrent.futures import ThreadPoolExecutor

    store = start(stores)
    cache = Cache(tmp_path / "cache", fsync=True)
    paths = [p for p in BLOBS if p.startswith("/b/")] * 3  # each blob asked for by three threads
    with HubClient(store.url, timeout=10) as client, cache.batch() as batch, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: cache.fetch_blob(client, p, sha(BLOBS[p]), len(BLOBS[p]), batch=batch), paths))
        cache.fetch_blob(client, "/big", sha(BIG), len(BIG), batch=batch)
    for path in set(paths):
        assert cache.blob_path(sha(BLOBS[path])).read_bytes() == BLOBS[path]
    locks = {p.name for p in (tmp_path / "cache" / "locks").iterdir()}
    assert locks == {"cache.lock"} | {f"small-{sha(BLOBS[p])[:2]}.lock" for p in [*paths, "/big"]}, locks
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_a_bad_blob_in_a_batch_is_kept_nowhere_and_the_good_ones_still_land(stores: list[Store],
                                                                            tmp_path: Path) -> None:
    store = start(stores)
    store.corrupt.add("/b/7")
    cache = Cache(tmp_path / "cache", fsync=True)
    paths = ["/b/6", "/b/7", "/b/8"]
    with HubClient(store.url, timeout=10) as client, pytest.raises(IntegrityError, match="sha256"):
        with cache.batch() as batch:
            for path in paths:
                cache.fetch_blob(client, path, sha(BLOBS[path]), len(BLOBS[path]), batch=batch)
    assert not cache.has_blob(sha(BLOBS["/b/7"]))
    assert cache.has_blob(sha(BLOBS["/b/6"])), "what was verified before the error is stored"
    assert not cache.has_blob(sha(BLOBS["/b/8"])), "nothing is fetched after the error"
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
