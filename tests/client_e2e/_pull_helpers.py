"""Helpers for the pull and cache tests: a faulty proxy in front of the hub, and the CLI.

:class:`FaultyProxy` is a real HTTP server on loopback that forwards every request to the
hub and passes the answer back, unless told to cut a file download after some bytes (the
client sees the connection drop mid-body) or to change one byte of it. It records every
request, so tests count what went over the wire.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.helpers import publish

CVFLOW = Path(sys.executable).parent / "cvflow"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int


@dataclass
class FaultyProxy:
    upstream: str
    cut_after: int | None = None  # cut file downloads after this many body bytes ...
    cuts_left: int = 0  # ... this many times
    flip_byte_at: int | None = None  # change this byte of every file download
    delay: float = 0.0  # seconds to hold every file download (so concurrent pulls overlap)
    ignore_range: bool = False  # drop Range headers, like a server without Range support
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def file_requests(self) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if "/files/" in s.path]

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        target = urlsplit(self.upstream)
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else None
        dropped = HOP_BY_HOP | {"host"} | ({"range"} if self.ignore_range else set())
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in dropped}
        upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            status, reason, answer_headers = response.status, response.reason, response.getheaders()
        finally:
            upstream.close()
        is_file = "/files/" in handler.path and status in (200, 206) and handler.command == "GET"
        if is_file and self.delay:
            time.sleep(self.delay)
        send, cut = data, False
        with self._lock:
            if is_file and self.flip_byte_at is not None and len(data) > self.flip_byte_at:
                send = bytearray(data)
                send[self.flip_byte_at] ^= 0xFF
                send = bytes(send)
            if is_file and self.cut_after is not None and self.cuts_left > 0 and len(data) > self.cut_after:
                self.cuts_left -= 1
                send, cut = data[: self.cut_after], True
            self.seen.append(Seen(handler.command, handler.path, handler.headers.get("range"), status, len(send)))
        handler.send_response(status, reason)
        for key, value in answer_headers:
            if key.lower() not in HOP_BY_HOP:
                handler.send_header(key, value)
        handler.send_header("content-length", str(len(data)))  # the full length, even when cutting
        handler.send_header("connection", "close")
        handler.end_headers()
        handler.wfile.write(send)
        handler.wfile.flush()
        handler.close_connection = True
        if cut:
            handler.connection.shutdown(2)


def publish_ok(alice: httpx.Client, name: str, version: str, files: dict[str, bytes]) -> dict[str, Any]:
    response = publish(alice, name, version, files=files)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def yank(alice: httpx.Client, name: str, version: str) -> None:
    response = alice.post(f"/api/v1/packages/{name}/versions/{version}/yank", json={"reason": "broken weights"})
    assert response.status_code == 200, response.text


def cvflow(home: Path, hub_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cvflow`` command with CVFLOW_HOME=home against ``hub_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_")}
    env.update(CVFLOW_HOME=str(home), CVFLOW_HUB=hub_url)
    return subprocess.run([str(CVFLOW), *args], capture_output=True, text=True, timeout=timeout, env=env)
