"""The runner's HTTP/1.1 handling, in this process, with a solver that needs no image library:
keep-alive, chunked bodies, Expect: 100-continue, HEAD, refused framing, readiness while loading."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cvflow.runner.server import Runner, RunnerSettings

MANIFEST = """[package]
name = "qa/adder"
version = "0.1.0"
description = "adds"

[[solvers]]
name = "add"
class = "adder_for_protocol_tests:Adder"
"""
MODULE = """import time
from typing import Literal

class Adder:
    def __init__(self, context):
        time.sleep(float(context.settings.get("LOAD_SECONDS", "0")))

    def infer(self, a: int, b: int = 1, how: Literal["plus", "minus"] = "plus") -> dict:
        return {"sum": a + b if how == "plus" else a - b}
"""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    (tmp_path / "cvflow.toml").write_text(MANIFEST)
    (tmp_path / "adder_for_protocol_tests.py").write_text(MODULE)
    r = Runner(RunnerSettings(package_dir=tmp_path, max_request_bytes=1000, settings={"LOAD_SECONDS": "2"},
                              access_log=False))
    server = r.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.close(grace=1)


def raw(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while read_until_close and (chunk := s.recv(65536)):
            chunks.append(chunk)
        return b"".join(chunks)


def test_not_ready_while_loading_then_ready(runner):
    base = f"http://127.0.0.1:{runner.port}"
    loading = threading.Thread(target=runner.load)
    loading.start()
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    assert httpx.get(base + "/readyz").status_code == 503
    r = httpx.post(base + "/solvers/add/infer", json={"a": 1})
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
    assert httpx.get(base + "/").json()["status"] == "loading"
    loading.join()
    assert httpx.get(base + "/readyz").json() == {"status": "ready"}
    assert httpx.post(base + "/solvers/add/infer", json={"a": 1}).json() == {"sum": 2}
    assert httpx.post(base + "/solvers/add/infer?a=5&how=minus&b=2").json() == {"sum": 3}  # no body at all
    assert httpx.post(base + "/solvers/add/infer", data={"a": "4"}).json() == {"sum": 5}  # url-encoded form


def test_keep_alive_chunked_continue_head_and_refused_framing(runner):
    runner.load()
    port = runner.port
    body = b'{"a": 2, "b": 3}'
    post = (b"POST /solvers/add/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    # Two requests on one connection (pipelined), then Connection: close ends it.
    out = raw(port, post + post.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.count(b'{"sum":5}') == 2
    assert out.rstrip().endswith(b'{"sum":5}') and b"Connection: close" in out

    chunked = (b"POST /solvers/add/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n5\r\n{\"a\":\r\n6\r\n 7}   \r\n0\r\n\r\n")
    assert raw(port, chunked).endswith(b'{"sum":8}')

    expect = post.replace(b"Host: x", b"Host: x\r\nExpect: 100-continue\r\nConnection: close")
    out = raw(port, expect)
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")

    head = raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n") and b"Content-Length: 15" in head

    smuggle = (b"POST /solvers/add/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\n")
    out = raw(port, smuggle)
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out
    assert raw(port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(port, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414 ")

    # A body over the limit is read and dropped, so the connection goes on.
    big = b"x" * 5000
    head = b"POST /solvers/add/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    out = raw(port, head + big + post.replace(b"Host: x", b"Host: x\r\nConnection: close"))
    assert out.startswith(b"HTTP/1.1 413 ") and b'"request_too_large"' in out and out.endswith(b'{"sum":5}')

    # HTTP/1.0 closes unless asked to keep alive.
    out = raw(port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in out


def test_describe_and_errors_in_process(runner):
    runner.load()
    base = f"http://127.0.0.1:{runner.port}"
    doc = httpx.get(base + "/").json()
    assert doc["solvers"][0]["inputs"]["required"] == ["a"]
    r = httpx.post(base + "/solvers/add/infer", json={"a": 1, "how": "times"})
    assert r.status_code == 422 and json.loads(r.text)["error"]["details"] == {"field": "how"}
    assert httpx.delete(base + "/solvers/add/infer").status_code == 405
    assert httpx.post(base + "/").status_code == 405


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Runner]:
    """A loaded runner with short HTTP time limits and a small head."""
    from cvflow.runner.protocol import Limits

    (tmp_path / "cvflow.toml").write_text(MANIFEST)
    (tmp_path / "adder_for_protocol_tests.py").write_text(MODULE)
    r = Runner(RunnerSettings(package_dir=tmp_path, max_request_bytes=1000, access_log=False,
                              http=Limits(header_timeout=0.6, idle_timeout=0.6, body_timeout=0.6,
                                          max_head_bytes=2048, max_headers=10)))
    server = r.bind()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    r.load()
    yield r
    r.close(grace=1)


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_slow_headers_get_408_and_the_connection_closes(strict):
    import time

    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as s:
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(10):  # slowloris: a byte now and then, never the end of the headers
            time.sleep(0.1)
            try:
                s.sendall(b"X")
            except OSError:
                break
        out = _read_all(s)
    assert out.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in out and b"Connection: close" in out
    assert time.monotonic() - start < 3


def test_slow_body_gets_408_and_an_idle_connection_is_closed(strict):
    import time

    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as s:
        s.sendall(b"POST /solvers/add/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 20\r\n\r\n{\"a\":")
        out = _read_all(s)
    assert out.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in out

    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        out = _read_all(s)  # one answer, then the runner closes the idle connection by itself
        assert out.count(b"HTTP/1.1 200 OK") == 1 and 0.4 < time.monotonic() - start < 3


@pytest.mark.parametrize(("head", "status", "code"), [
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n", 431, "headers_too_large"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-N: 1\r\n" * 11 + b"\r\n", 431, "headers_too_large"),
    (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
    (b"POST /solvers/add/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"),
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400, "bad_request"),  # no Host
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "bad_request"),
])
def test_heads_over_the_limits_or_outside_the_grammar_are_refused(strict, head, status, code):
    out = raw(strict.port, head)
    assert out.startswith(b"HTTP/1.1 %d " % status) and f'"{code}"'.encode() in out and b"Connection: close" in out


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/", "GET, HEAD"), ("POST", "/healthz", "GET, HEAD"), ("PUT", "/readyz", "GET, HEAD"),
    ("POST", "/openapi.json", "GET, HEAD"), ("GET", "/solvers/add/infer", "POST"),
    ("PATCH", "/solvers/nope/infer", "POST"), ("POST", "/v2", "GET, HEAD"), ("DELETE", "/v2/health/live", "GET, HEAD"),
    ("POST", "/v2/models/add", "GET, HEAD"), ("POST", "/v2/models/add/ready", "GET, HEAD"),
    ("GET", "/v2/models/add/infer", "POST"),
])
def test_405_lists_the_methods_of_the_resource_in_allow(strict, method, path, allow):
    r = httpx.request(method, f"http://127.0.0.1:{strict.port}{path}")
    assert r.status_code == 405 and r.headers["allow"] == allow
    if not path.startswith("/v2"):  # KServe's error body is {"error": message}
        assert r.json()["error"]["code"] == "method_not_allowed"
    for other in allow.split(", "):  # and each method it lists is answered (never 405)
        assert httpx.request(other, f"http://127.0.0.1:{strict.port}{path}").status_code != 405
    assert httpx.request(method, f"http://127.0.0.1:{strict.port}/nowhere{path}").status_code == 404
