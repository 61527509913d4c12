"""Tokens never travel in URLs, and never reach the logs.

A token in a query string is refused (400 ``token_in_query``) on every path, API or website,
before it is looked up; the access log of ``cvflow-hub serve`` redacts tokens and credentials
wherever they appear. The log test runs the real command in a subprocess and reads its output.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hub.redact import RedactCredentials, redact
from tests.conftest import free_port
from tests.helpers import LiveHub, error_code

SECRET = "cvf_" + "Q" * 20 + "-_" + "z" * 21

QUERIES = [
    f"token={SECRET}", f"access_token={SECRET}", "token=", "TOKEN=x", "api_key=abc", f"q={SECRET}",
    f"q=find+{SECRET}+please", "q=cvf%5F" + SECRET[4:], f"page=1&{SECRET}=1",
]
PATHS = ["/api/v1/packages", "/api/v1/whoami", "/api/v1/nope", "/healthz", "/", "/search", "/alice/detector"]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("path", PATHS)
def test_a_token_in_the_query_string_is_refused(hub: LiveHub, path: str, query: str) -> None:
    r = hub.client().get(f"{path}?{query}")
    assert r.status_code == 400, (path, query, r.status_code)
    if path.startswith(("/api/", "/healthz")):
        assert error_code(r) == "token_in_query"


def test_a_valid_token_in_the_query_is_refused_and_not_used(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    r = hub.client().get(f"/api/v1/whoami?access_token={token}")
    assert r.status_code == 400
    assert error_code(r) == "token_in_query"
    assert token not in r.text
    # The header is the way; other query strings are not affected.
    ok = hub.client(token).get("/api/v1/packages?q=detector&page=1")
    assert ok.status_code == 200


@pytest.mark.parametrize("text", [
    f"GET /api/v1/packages?token={SECRET} HTTP/1.1", f"/x?access_token={SECRET}&q=1", f"a {SECRET} b",
    f"Authorization: Bearer {SECRET}", "authorization: Basic dXNlcjpwYXNz", "{'authorization': 'Bearer abc.def'}",
    "token=abc", "password=hunter2&x=1",
])
def test_redact_removes_every_credential(text: str) -> None:
    out = redact(text)
    for secret in (SECRET, "dXNlcjpwYXNz", "abc.def", "hunter2", "token=abc"):
        assert secret not in out, out
    assert "[redacted]" in out


def test_the_filter_keeps_uvicorns_access_log_arguments_a_tuple() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", f"/api?token={SECRET}", "1.1", 400), None)
    assert RedactCredentials().filter(record)
    assert isinstance(record.args, tuple) and record.args[4] == 400
    assert SECRET not in record.getMessage()


def test_the_served_hubs_access_log_never_shows_a_token(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CVFLOW_HUB_ARGON2_TIME_COST": "1", "CVFLOW_HUB_ARGON2_MEMORY_COST": "1024"}
    cmd = [str(Path(sys.executable).parent / "cvflow-hub"), "serve", "--data-dir", str(tmp_path / "hub"),
           "--port", str(port), "--log-level", "info"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "cvflow-hub serve did not start"
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get(f"/api/v1/packages?token={SECRET}").status_code == 400
            assert client.get(f"/api/v1/packages?q={SECRET}").status_code == 400
            assert client.get(f"/api/v1/nope/{SECRET}").status_code == 404
            assert client.get("/api/v1/whoami", headers={"authorization": f"Bearer {SECRET}"}).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "/api/v1/packages?token=" in out, out  # the requests were logged ...
    assert "/api/v1/nope/cvf_[redacted]" in out, out
    assert SECRET not in out and SECRET[4:] not in out, out  # ... without the token
