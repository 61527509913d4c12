"""A small HTTP/1.1 server: one thread per connection, keep-alive, bodies read on demand.

``http.server`` parses every request's headers with the ``email`` package, which costs more
than the rest of a small inference request; this reads the request line and headers itself
and leaves the body to the route, which knows how much it will accept. What it implements:
keep-alive (HTTP/1.1 by default, HTTP/1.0 with ``Connection: keep-alive``), ``Expect:
100-continue``, ``Content-Length`` and chunked bodies, ``HEAD``. A request with both
``Content-Length`` and ``Transfer-Encoding``, or with two different lengths, is refused and
the connection closed (they are how requests are smuggled past proxies).
"""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Callable
from http import HTTPStatus

MAX_LINE = 65536
MAX_HEADERS = 100
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class BadRequest(Exception):
    """The request cannot be read; ``status`` is what to answer, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """One request: method, path, query string, headers (lower-case names), and its body on demand."""

    __slots__ = ("_handler", "_read", "client", "headers", "keep_alive", "method", "path", "query")

    def __init__(self, handler: Handler, method: str, path: str, query: str, headers: dict[str, str],
                 keep_alive: bool) -> None:
        self._handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.keep_alive = keep_alive
        self.client = handler.client_address[0] if isinstance(handler.client_address, tuple) else "?"
        self._read = False

    @property
    def declared_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    def body(self, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes.

        Raises:
            BodyTooLarge: the body is longer (the connection will close unless it was drained).
            BadRequest: chunked framing is broken.
        """
        self._read = True
        rfile = self._handler.rfile
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = rfile.readline(1026)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.keep_alive = False
                    raise BadRequest(400, "malformed chunked body") from None
                if size == 0:
                    while rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > limit:
                    self.keep_alive = False
                    raise BodyTooLarge(total, limit)
                chunks.append(rfile.read(size))
                rfile.readline(3)
        n = self.declared_length or 0
        if n > limit:
            self.discard(n)
            raise BodyTooLarge(n, limit)
        return rfile.read(n) if n else b""

    def discard(self, n: int | None = None, *, at_most: int = 64 << 20) -> None:
        """Read and drop the body so the connection can be reused (or close it when that is too much)."""
        self._read = True
        n = self.declared_length if n is None else n
        if "chunked" in self.headers.get("transfer-encoding", "").lower() or (n or 0) > at_most:
            self.keep_alive = False
            return
        while n and n > 0:
            got = self._handler.rfile.read(min(n, 1 << 20))
            if not got:
                self.keep_alive = False
                return
            n -= len(got)

    @property
    def body_read(self) -> bool:
        return self._read


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the body is {size} bytes or more; the limit is {limit}")
        self.size = size
        self.limit = limit


#: The application: request -> (status, body, content type). It must not raise.
App = Callable[[Request], tuple[int, bytes, str]]


class Handler(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True
    timeout = 75  # an idle keep-alive connection is closed after this many seconds
    server: Server

    def handle(self) -> None:
        try:
            while self._one():
                pass
        except (TimeoutError, ConnectionError, OSError):
            pass  # the client went away or stayed idle too long

    def _one(self) -> bool:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        if line in (b"\r\n", b"\n"):
            return True  # an empty line between requests is to be ignored (RFC 9112, 2.2)
        try:
            request = self._read_head(line)
        except BadRequest as exc:
            self.send(exc.status, f'{{"error":{{"code":"bad_request","message":"{exc.message}"}}}}'.encode(),
                      "application/json", keep_alive=False)
            return False
        if request.headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        status, body, ctype = self.server.app(request)
        if not request.body_read:
            request.discard()  # what the route did not read must not be taken for the next request
        self.send(status, b"" if request.method == "HEAD" else body, ctype, keep_alive=request.keep_alive,
                  length=len(body))
        return request.keep_alive

    def _read_head(self, line: bytes) -> Request:
        if len(line) > MAX_LINE:
            raise BadRequest(414, "the request line is too long")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(400, "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            raw = self.rfile.readline(MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            if len(raw) > MAX_LINE:
                raise BadRequest(431, "a header line is too long")
            name, colon, value = raw.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequest(400, "malformed header line")
            key, value = name.lower(), value.strip()
            if key in headers:
                if key == "content-length" and headers[key] != value:
                    raise BadRequest(400, "two different Content-Length headers")
                if key != "content-length":
                    headers[key] += ", " + value
            else:
                headers[key] = value
        else:
            raise BadRequest(431, "too many header lines")
        if "content-length" in headers:
            if "transfer-encoding" in headers:
                raise BadRequest(400, "both Content-Length and Transfer-Encoding")
            if not headers["content-length"].isdigit():
                raise BadRequest(400, "a malformed Content-Length")
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        path, _, query = target.partition("?")
        return Request(self, method, path, query, headers, keep_alive)

    def send(self, status: int, body: bytes, ctype: str, *, keep_alive: bool, length: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", f"Content-Type: {ctype}",
                 f"Content-Length: {len(body) if length is None else length}", f"Server: {self.server.name}"]
        if not keep_alive:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class Server(socketserver.ThreadingTCPServer):
    """Listens on ``(host, port)`` (IPv6 when the host has a colon); ``app`` answers each request."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, *, name: str) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.name = name
        super().__init__(address, Handler)
