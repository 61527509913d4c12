"""A stand-in hub on loopback that records what every request carried, Authorization above all.

It speaks just enough of the hub's API for a client to get going: ``/api/v1/whoami`` answers
200 for the one token it accepts (401 otherwise), ``/redirect/TARGET`` answers 302 to the URL
TARGET names, and everything else is a 404 with the hub's JSON error body. It also serves
plain-HTTP requests sent to it as a proxy, so a test can give the client any origin. Real HTTP over a
real socket (http.server), so the client's own httpx stack, headers and redirects are what run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from click.testing import CliRunner, Result

from cvflow.cli import main


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None


@dataclass
class RecordingHub:
    """``with RecordingHub(token="cvf_a") as hub_a: ...``; ``hub_a.seen`` lists the requests."""

    token: str | None = None
    name: str = "alice"
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def authorizations(self) -> set[str | None]:
        with self._lock:
            return {s.authorization for s in self.seen}

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()

    def __enter__(self) -> RecordingHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def _answer(self) -> None:
                if self.path.startswith("http://"):  # asked as an HTTP proxy: absolute-form target
                    self.path = "/" + self.path.removeprefix("http://").partition("/")[2]
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                elif self.headers.get("transfer-encoding", "").lower() == "chunked":
                    self._drain_chunked()
                with hub._lock:
                    hub.seen.append(Seen(self.command, self.path, self.headers.get("authorization")))
                if self.path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("location", unquote(self.path.removeprefix("/redirect/")))
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if self.path == "/api/v1/whoami":
                    if hub.token and self.headers.get("authorization") == f"Bearer {hub.token}":
                        self._json(200, {"name": hub.name, "admin": False, "scopes": ["read", "publish"]})
                    else:
                        self._json(401, {"error": {"code": "unauthenticated", "message": "no valid token"}})
                    return
                self._json(404, {"error": {"code": "not_found", "message": f"nothing at {self.path}"}})

            def _drain_chunked(self) -> None:
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    self.rfile.read(size + 2)
                    if size == 0:
                        return

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        return Handler


def cli_env(home: Path, hub_url: str | None, token: str | None = None) -> dict[str, str | None]:
    """Environment for ``cvflow``: its own home, and hub/token unless None (then unset)."""
    return {"CVFLOW_HOME": str(home), "CVFLOW_HUB": hub_url, "CVFLOW_TOKEN": token, "XDG_DATA_HOME": None}


def run_cli(env: Mapping[str, str | None], *args: str, input: str | None = None) -> Result:
    """``cvflow ARGS`` in this process; stdout and stderr kept apart; an uncaught exception fails the test."""
    return CliRunner().invoke(main, list(args), env=dict(env), input=input, catch_exceptions=False)


def write_package(root: Path, name: str, version: str = "1.0.0") -> Path:
    """A package directory that validates: a manifest and a solver."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cvflow.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "{version}"\ndescription = "A test package"\n'
        'task = "detection"\n\n[[solvers]]\nname = "predict"\nclass = "solver:Solver"\n')
    (root / "solver.py").write_text("class Solver: ...\n")
    return root
