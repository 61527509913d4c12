"""Real git repositories and the servers that serve them on loopback, for the indexer tests.

* :class:`GitRepo`: a working repository made with the ``git`` command (commits, tags, moves).
* :class:`GitDaemon`: ``git daemon`` serving a directory over ``git://``.
* :class:`SmartHttp`: ``git http-backend`` behind a small threaded WSGI server (CGI bridge),
  with a ``/private/`` prefix that answers 401 like a host asking for credentials.
* :class:`FileServer`: plain HTTP for weight files.
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.conftest import free_port

_IDENTITY = ["-c", "user.name=Test Author", "-c", "user.email=author@example.com", "-c", "init.defaultBranch=main",
             "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "core.hooksPath=/dev/null"]


def git_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


class GitRepo:
    """A working git repository at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q")

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *_IDENTITY, *args], cwd=self.path, env=git_env(self.path.parent),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def write(self, files: Mapping[str, bytes | str]) -> GitRepo:
        for rel, data in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            target.write_bytes(data.encode() if isinstance(data, str) else data)
        return self

    def symlink(self, rel: str, target: str) -> GitRepo:
        link = self.path / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        return self

    def remove(self, *rels: str) -> GitRepo:
        self.git("rm", "-q", "-r", "--", *rels)
        return self

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, *, annotated: bool = False, force: bool = False, at: str = "HEAD") -> str:
        args = ["tag", *(["-a", "-m", f"release {name}"] if annotated else []), *(["-f"] if force else []), name, at]
        self.git(*args)
        return self.git("rev-parse", f"{name}^{{commit}}")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class GitDaemon:
    """``git daemon`` serving the repositories under ``root`` at ``git://127.0.0.1:PORT/<name>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}", "--export-all",
             "--informative-errors", f"--base-path={root}"],
            env=git_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for_port(self.port, self.proc)

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class _QuietWSGIHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class SmartHttp:
    """``git http-backend`` as CGI behind a threaded WSGI server: ``http://127.0.0.1:PORT/<name>``.

    Paths under ``/private/`` answer 401 with a Basic challenge, whatever credentials come.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.server = make_server("127.0.0.1", 0, self._app, server_class=_ThreadingWSGIServer,
                                  handler_class=_QuietWSGIHandler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        self.requests.append(path)
        if path.startswith("/private/"):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Length", "0")])
            return [b""]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        env = {**git_env(self.root), "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": environ.get("QUERY_STRING", ""),
               "REQUEST_METHOD": environ["REQUEST_METHOD"], "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1", "GATEWAY_INTERFACE": "CGI/1.1",
               "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
               "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", "")}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        status, headers = "200 OK", []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = value.strip()
            elif key:
                headers.append((key, value.strip()))
        start_response(status, headers)
        return [rest]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class FileServer:
    """Plain HTTP serving the files under ``root`` at ``http://127.0.0.1:PORT/<path>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_QuietFileHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, name: str, data: bytes) -> str:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
