"""A small, strict HTTP/1.1 server: one thread per connection, keep-alive, bodies read on demand.

``http.server`` parses every request's headers with the ``email`` package, which costs more
than the rest of a small inference request, and accepts framing that proxies read differently
(the way requests are smuggled). This reads requests with h11's grammar (``_abnf.py`` of h11
0.16, vendored below: the runner runs inside package venvs with the standard library only) and
h11's header rules, and is stricter than h11 in three places:

- a request with both ``Content-Length`` and ``Transfer-Encoding`` is refused (h11 lets
  ``Transfer-Encoding`` win; RFC 9112 6.1 allows refusing, and it is the smuggler's tool);
- only ``HTTP/1.0`` and ``HTTP/1.1`` are served; other versions get 505;
- empty lines before a request line are skipped (RFC 9112 2.2; h11 refuses them).

What it implements: keep-alive (HTTP/1.1 by default, HTTP/1.0 with ``Connection:
keep-alive``), pipelining, ``Expect: 100-continue``, ``Content-Length`` and chunked bodies
(trailers read and checked, then dropped), ``HEAD``. Every refusal answers 4xx/5xx with a JSON
error and closes the connection. Time limits (``Limits``): the headers must arrive within
``header_timeout`` of a request's first byte (slowloris), an idle keep-alive connection is
closed after ``idle_timeout``, and a body must arrive within ``body_timeout`` (else 408).
"""

from __future__ import annotations

import json
import math
import re
import socket
import socketserver
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from cvflow.runner.errors import ErrorCode

_REASONS = {s.value: s.phrase for s in HTTPStatus}

# -- h11's grammar (h11/_abnf.py, MIT licence, Copyright (c) 2016 Nathaniel J. Smith) ---------
_OWS = rb"[ \t]*"
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VCHAR = rb"[^\x00\s]"  # VCHAR, obs-text and the control characters h11 lets through
_FIELD_CONTENT = _FIELD_VCHAR + rb"+(?:[ \t]+" + _FIELD_VCHAR + rb"+)*"
_HEADER_FIELD = re.compile(rb"(?P<name>" + _TOKEN + rb"):" + _OWS + rb"(?P<value>(?:" + _FIELD_CONTENT + rb")?)"
                           + _OWS)
_REQUEST_LINE = re.compile(rb"(?P<method>" + _TOKEN + rb") (?P<target>[\x21-\x7e]+) HTTP/(?P<version>[0-9]\.[0-9])")
_CHUNK_HEADER = re.compile(rb"(?P<size>[0-9A-Fa-f]{1,20})(?:;.*)?" + _OWS + rb"\r\n")
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,20}")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_OBS_FOLD = re.compile(rb"[ \t]+")
# ----------------------------------------------------------------------------------------------

_MAX_CHUNK_LINE = 4096


@dataclass(frozen=True)
class Limits:
    """Time and size limits of the HTTP layer (``python -m cvflow.runner --help`` sets them)."""

    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its headers
    idle_timeout: float = 75.0  # seconds a keep-alive connection may wait for its next request
    body_timeout: float = 60.0  # seconds from the end of the headers to the end of the body
    max_head_bytes: int = 65536  # the request line and the headers together
    max_headers: int = 100


class BadRequest(Exception):
    """The request cannot be read: ``status`` and ``code`` are answered, then the connection closes."""

    def __init__(self, status: int, message: str, code: ErrorCode = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the body is {size} bytes or more; the limit is {limit}")
        self.size = size
        self.limit = limit


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` for ``SO_RCVTIMEO``/``SO_SNDTIMEO``, at least 1 µs (0 would be no limit)."""
    micro = max(1, math.ceil(seconds * 1e6))
    return struct.pack("@ll", micro // 1_000_000, micro % 1_000_000)


#: Time limits by the kernel (Linux, macOS); elsewhere by Python's socket timeouts.
KERNEL_TIMEOUTS = sys.platform != "win32" and hasattr(socket, "SO_RCVTIMEO")


class Reader:
    """Buffered reads from a socket, each with a deadline (``time.monotonic()``).

    A socket in blocking mode gets its time limit from the kernel (``SO_RCVTIMEO``, set before
    each read): a Python socket with a timeout polls before every receive, and the poll and the
    receive each let go of the GIL, which sixteen connection threads then pass around (a tenth of
    the runner's CPU per request at 16 connections, ``bench/runner_digits.py``)."""

    __slots__ = ("buf", "kernel", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.kernel = KERNEL_TIMEOUTS and sock.gettimeout() is None

    def _limit(self, left: float) -> None:
        if self.kernel:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(left))
        else:
            self.sock.settimeout(left)

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self._limit(left)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            raise TimeoutError from None
        if not data:
            return False
        self.buf += data
        return True

    def block(self, deadline: float, max_bytes: int, *, request: bool = False) -> bytes | None:
        """Lines up to the first empty one, included (an empty line alone is a block); None at EOF.

        Raises BadRequest 431 (414 while the first line is not complete) past ``max_bytes``; with
        ``request``, 400 at once for a first byte no request line starts with (h11's early check:
        a TLS handshake sent to a plain port is refused before the client waits).
        """
        buf, searched = self.buf, 0
        while True:
            if buf[:1] == b"\n" or buf[:2] == b"\r\n":
                end = 1 if buf[0] == 10 else 2
            elif (m := _BLANK_LINE.search(buf, searched)) is not None:
                end = m.end()
            else:
                end = 0
                searched = max(0, len(buf) - 2)
            if end > max_bytes or (not end and len(buf) > max_bytes):
                if b"\n" not in buf[:max_bytes]:
                    raise BadRequest(414, "the request line is too long", "uri_too_long")
                raise BadRequest(431, f"the headers are over {max_bytes} bytes", "headers_too_large")
            if end:
                out = bytes(buf[:end])
                del buf[:end]
                return out
            if request and buf and buf[0] < 0x21 and buf[:2] != b"\r":  # not an empty line on its way
                raise BadRequest(400, "a malformed request line")
            if not self._fill(deadline):
                return None

    def line(self, deadline: float, max_bytes: int) -> bytes | None:
        """Bytes up to the first CRLF, included; None at EOF."""
        buf, searched = self.buf, 0
        while (i := buf.find(b"\r\n", searched)) < 0:
            if len(buf) > max_bytes:
                raise BadRequest(400, "a chunk size line is too long")
            searched = max(0, len(buf) - 1)
            if not self._fill(deadline):
                return None
        out = bytes(buf[:i + 2])
        del buf[:i + 2]
        return out

    def exact(self, n: int, deadline: float) -> bytes:
        """``n`` bytes. Raises ConnectionError at EOF, TimeoutError past the deadline."""
        buf = self.buf
        if len(buf) >= n:
            out = bytes(buf[:n])
            del buf[:n]
            return out
        whole = bytearray(n)
        have = len(buf)
        whole[:have] = buf
        buf.clear()
        view = memoryview(whole)
        while have < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._limit(left)
            try:
                got = self.sock.recv_into(view[have:], min(n - have, 1 << 20))
            except BlockingIOError:
                raise TimeoutError from None
            if not got:
                raise ConnectionError("the client closed the connection inside a body")
            have += got
        return bytes(whole)


class Releasable(Protocol):
    def release(self) -> None: ...


class Connection:
    """What the application keeps from one request of a connection to the next: ``held``, whose
    ``release()`` is called when the connection ends (the runner keeps its last solver call there,
    to count the connection as likely to send the next one; see ``batching``)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: Releasable | None = None

    def close(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            held.release()


class Request:
    """One request: method, path, query string, headers (lower-case names), and its body on demand."""

    __slots__ = ("_chunked", "_length", "_limits", "_read", "_reader", "client", "connection", "expect_continue",
                 "headers", "keep_alive", "method", "path", "query", "response_headers", "target", "version")

    def __init__(self, reader: Reader, limits: Limits, client: str, method: str, target: str, version: str,
                 headers: dict[str, str], *, length: int, chunked: bool, connection: Connection | None = None) -> None:
        self.connection = connection if connection is not None else Connection()
        self._reader = reader
        self._limits = limits
        self.client = client
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.version = version
        self.headers = headers
        self._length = length
        self._chunked = chunked
        self._read = False
        options = _tokens(headers.get("connection", ""))
        if version == "1.1":
            self.keep_alive = "close" not in options
        else:
            self.keep_alive = "keep-alive" in options and not chunked  # RFC 9112 6.1
        self.expect_continue = version == "1.1" and "100-continue" in _tokens(headers.get("expect", ""))
        self.response_headers: list[tuple[str, str]] = []

    @property
    def body_read(self) -> bool:
        return self._read

    def body(self, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes.

        Raises:
            BodyTooLarge: the body is longer (the connection will close unless it was drained).
            BadRequest: chunked framing is broken (400), or the body is too slow (408).
            ConnectionError: the client went away.
        """
        self._read = True
        deadline = time.monotonic() + self._limits.body_timeout
        try:
            if self._chunked:
                return self._chunks(limit, deadline)
            if self._length > limit:
                self.discard()
                raise BodyTooLarge(self._length, limit)
            return self._reader.exact(self._length, deadline) if self._length else b""
        except TimeoutError:
            self.keep_alive = False
            raise BadRequest(408, f"the body did not arrive within {self._limits.body_timeout:g} s",
                             "request_timeout") from None
        except BadRequest:
            self.keep_alive = False
            raise

    def _chunks(self, limit: int, deadline: float) -> bytes:
        reader, total = self._reader, 0
        chunks: list[bytes] = []
        while True:
            line = reader.line(deadline, _MAX_CHUNK_LINE)
            if line is None:
                raise ConnectionError("the client closed the connection inside a chunked body")
            m = _CHUNK_HEADER.fullmatch(line)
            if m is None:
                raise BadRequest(400, "a malformed chunk size line")
            size = int(m["size"], 16)
            if size == 0:
                trailers = reader.block(deadline, self._limits.max_head_bytes)
                if trailers is None:
                    raise ConnectionError("the client closed the connection inside a chunked body's trailers")
                _fields(trailers.split(b"\n")[:-2], self._limits)  # checked like headers, then dropped
                return b"".join(chunks)
            total += size
            if total > limit:
                self.keep_alive = False
                raise BodyTooLarge(total, limit)
            data = reader.exact(size + 2, deadline)
            if data[-2:] != b"\r\n":
                raise BadRequest(400, "a chunk is not followed by CRLF")
            chunks.append(data[:-2])

    def discard(self, *, at_most: int = 64 << 20) -> None:
        """Read and drop the body so the connection can be reused (or close it when that is too much).

        Raises BadRequest: a chunked body is malformed (it is read, so it is checked too).
        """
        self._read = True
        deadline, left, buf = time.monotonic() + self._limits.body_timeout, self._length, self._reader.buf
        if self._chunked:
            try:
                self._chunks(at_most, deadline)
            except BadRequest:
                self.keep_alive = False
                raise
            except (BodyTooLarge, TimeoutError, OSError):
                self.keep_alive = False
            return
        if self._length > at_most:
            self.keep_alive = False
            return
        try:
            while left > 0:
                if not buf and not self._reader._fill(deadline):
                    self.keep_alive = False
                    return
                n = min(left, len(buf))
                del buf[:n]
                left -= n
        except (TimeoutError, OSError):
            self.keep_alive = False


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",")}


def _fields(lines: list[bytes], limits: Limits) -> list[tuple[bytes, bytes]]:
    """Header lines (line ends removed) to (lower-case name, value), obs-fold joined, as h11 does."""
    if len(lines) > limits.max_headers:
        raise BadRequest(431, f"more than {limits.max_headers} header lines", "headers_too_large")
    unfolded: list[bytes] = []
    for line in lines:
        if line[-1:] == b"\r":
            line = line[:-1]
        fold = _OBS_FOLD.match(line)
        if fold:
            if not unfolded:
                raise BadRequest(400, "a continuation line at the start of the headers")
            unfolded[-1] += b" " + line[fold.end():]
        else:
            unfolded.append(line)
    out = []
    for line in unfolded:
        m = _HEADER_FIELD.fullmatch(line)
        if m is None:
            raise BadRequest(400, "a malformed header line")
        out.append((m["name"].lower(), m["value"]))
    return out


def parse_head(head: bytes, limits: Limits) -> tuple[str, str, str, dict[str, str], int, bool]:
    """A request's head (through its empty line) to method, target, version, headers, length, chunked.

    Raises BadRequest (400, 431, 501, 505).
    """
    lines = head.split(b"\n")[:-2]
    first = lines[0][:-1] if lines[0][-1:] == b"\r" else lines[0]
    m = _REQUEST_LINE.fullmatch(first)
    if m is None:
        raise BadRequest(400, "a malformed request line")
    version = m["version"].decode()
    headers: dict[str, str] = {}
    length: bytes | None = None
    chunked = False
    hosts = 0
    for name, value in _fields(lines[1:], limits):
        if name == b"content-length":
            lengths = {v.strip() for v in value.split(b",")}
            value = lengths.pop()
            if lengths or not _CONTENT_LENGTH.fullmatch(value) or (length is not None and value != length):
                raise BadRequest(400, "a malformed or conflicting Content-Length")
            if length is not None:
                continue
            length = value
        elif name == b"transfer-encoding":
            if chunked or value.lower() != b"chunked":
                raise BadRequest(501, "only Transfer-Encoding: chunked is supported", "not_implemented")
            chunked = True
        elif name == b"host":
            hosts += 1
        key, text = name.decode("ascii"), value.decode("latin-1")
        headers[key] = headers[key] + ", " + text if key in headers else text
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise BadRequest(400, "an HTTP/1.1 request needs exactly one Host header")
    if version not in ("1.1", "1.0"):
        raise BadRequest(505, f"HTTP/{version} is not served; use HTTP/1.1", "http_version_not_supported")
    if chunked and length is not None:
        raise BadRequest(400, "both Content-Length and Transfer-Encoding")
    return (m["method"].decode("ascii"), m["target"].decode("ascii"), version, headers,
            int(length) if length is not None else 0, chunked)


def read_request(reader: Reader, limits: Limits, client: str = "?",
                 connection: Connection | None = None) -> Request | None:
    """The next request on the connection, its body unread; None once the client is gone or idle.

    Raises:
        BadRequest: the head is malformed or too large (408 when it is too slow).
    """
    while True:
        try:
            while not reader.buf:
                if not reader._fill(time.monotonic() + limits.idle_timeout):
                    return None
        except TimeoutError:
            return None  # idle: close without an answer
        try:
            head = reader.block(time.monotonic() + limits.header_timeout, limits.max_head_bytes, request=True)
        except TimeoutError:
            raise BadRequest(408, f"the headers did not arrive within {limits.header_timeout:g} s",
                             "request_timeout") from None
        if head is None:
            return None
        if head not in (b"\r\n", b"\n"):  # empty lines between requests are skipped (RFC 9112 2.2)
            method, target, version, headers, length, chunked = parse_head(head, limits)
            return Request(reader, limits, client, method, target, version, headers, length=length,
                           chunked=chunked, connection=connection)


#: The application: request -> (status, body, content type). It must not raise.
App = Callable[[Request], tuple[int, bytes, str]]


class Handler(socketserver.BaseRequestHandler):
    server: Server
    request: socket.socket

    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if KERNEL_TIMEOUTS:  # blocking, with the kernel's time limits (see ``Reader``)
            sock.settimeout(None)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.server.limits.body_timeout))
        client = self.client_address[0] if isinstance(self.client_address, tuple) else "?"
        reader, limits, connection = Reader(sock), self.server.limits, Connection()
        try:
            while True:
                try:
                    request = read_request(reader, limits, client, connection)
                except BadRequest as exc:
                    body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
                    self.send(exc.status, body, "application/json", keep_alive=False)
                    _linger(sock)
                    return
                if request is None:
                    return
                if request.expect_continue and (request._chunked or request._length):
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                status, body, ctype = self.server.app(request)
                if not request.body_read:
                    try:
                        request.discard()  # what the route did not read must not be taken for the next request
                    except BadRequest as exc:
                        status, ctype = exc.status, "application/json"
                        body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
                self.send(status, b"" if request.method == "HEAD" else body, ctype, keep_alive=request.keep_alive,
                          length=len(body), extra=request.response_headers)
                if not request.keep_alive:
                    if status >= 400:
                        _linger(sock)
                    return
        except (TimeoutError, ConnectionError, OSError):
            pass  # the client went away, or stayed silent too long inside a body
        finally:
            connection.close()

    def send(self, status: int, body: bytes, ctype: str, *, keep_alive: bool, length: int | None = None,
             extra: Sequence[tuple[str, str]] = ()) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", f"Content-Type: {ctype}",
                 f"Content-Length: {len(body) if length is None else length}", f"Server: {self.server.name}"]
        lines += [f"{k}: {v}" for k, v in extra]
        if not keep_alive:
            lines.append("Connection: close")
        self.request.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _linger(sock: socket.socket, seconds: float = 1.0, at_most: int = 1 << 20) -> None:
    """Close after an error without a reset: stop sending, then read and drop what the client
    still sends for a moment (closing with unread data makes the kernel send RST, and the
    client may lose the answer)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while at_most > 0 and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            got = sock.recv(65536)
            if not got:
                return
            at_most -= len(got)
    except OSError:
        pass


class Server(socketserver.ThreadingTCPServer):
    """Listens on ``(host, port)`` (IPv6 when the host has a colon); ``app`` answers each request."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, *, name: str, limits: Limits | None = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.name = name
        self.limits = limits or Limits()
        super().__init__(address, Handler)
