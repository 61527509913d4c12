"""Blob downloads over plain HTTP/1.1 sockets, each body read straight into a reused buffer.

httpx hands a body over in 64 KiB pieces that h11 has first copied through its own buffer;
for a blob that costs more CPU than hashing it. :class:`Fetcher` asks for a file with a
hand-written ``GET`` and reads the body with ``readinto`` into one 1 MiB buffer per thread,
so each byte is copied once by the kernel, then hashed and written from that buffer::

    with fetcher.get("/api/v1/packages/ns/name/versions/1.0.0/files/w.bin", {"range": "bytes=10-"}) as answer:
        for view in answer.views():  # memoryviews of the buffer, each valid until the next
            ...

Its threads share keep-alive connections (a pull of many small files reuses them); it
follows redirects (a presigned store URL) and sends the token only to the hub's own origin,
like :class:`cvflow.api.HubClient`. Only a client that talks to the network directly gets
one (:meth:`Fetcher.for_hub`): a caller's own httpx client or transport (the app
in-process, a mock) and a proxy from the environment keep httpx.

Errors, as :mod:`cvflow.transfer` expects them: no connection, a cut or a timeout raise
:class:`~cvflow.errors.HubUnavailableError`; an answer of 400 or more is handed back like
any other (its body read), for the caller to turn into the hub's error.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urljoin, urlsplit

from cvflow.errors import HubUnavailableError

__all__ = ["Answer", "Fetcher"]

BUFFER = 1 << 20
MAX_REDIRECTS = 20
MAX_ERROR_BODY = 1 << 20
MAX_HEADERS = 100
MAX_IDLE = 32  # idle keep-alive connections kept per origin
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

Origin = tuple[str, str, int]


def _origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise HubUnavailableError(f"cannot download from {url!r}: not an http(s) URL")
    return scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80)


def _uses_proxy(url: str) -> bool:
    """Whether httpx would send a request for ``url`` through a proxy from the environment."""
    import urllib.request  # here: only a client that downloads pays for its import
    proxies = urllib.request.getproxies()
    scheme, host, _ = _origin_of(url)
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


class Headers(dict[str, str]):
    """An answer's headers by lower-case name (a repeated header's values joined by commas)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


def _read_headers(reader: io.BufferedReader) -> Headers:
    """The header lines up to the blank one (http.client's email parser costs more than a small body)."""
    headers = Headers()
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ValueError(f"a malformed header line: {line[:80]!r}")
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise ValueError(f"more than {MAX_HEADERS} header lines")


class _Connection:
    """One HTTP/1.1 connection: a socket and a reader over it (headers are parsed from the reader)."""

    def __init__(self, origin: Origin, connect_timeout: float, timeout: float, tls: ssl.SSLContext | None) -> None:
        scheme, host, port = origin
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                assert tls is not None
                sock = tls.wrap_socket(sock, server_hostname=host)
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        self.origin = origin
        self.sock = sock
        self.reader = cast(io.BufferedReader, sock.makefile("rb", buffering=64 << 10))
        self.used = False  # once an answer came back: a later failure may be a stale keep-alive

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class Answer:
    """A response: ``status_code``, ``headers`` (case-insensitive ``get``) and the body by :meth:`views`."""

    def __init__(self, conn: _Connection, status: int, reason: str, headers: Headers, buffer: bytearray,
                 head: bool = False) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers
        self._conn = conn
        self._buffer = memoryview(buffer)
        self.chunked = "chunked" in (headers.get("transfer-encoding") or "").lower()
        length = headers.get("content-length")
        self.length: int | None = None if self.chunked or length is None or not length.strip().isdigit() else int(
            length)
        self.complete = head or status in (204, 304)  # the body was read to its end
        self.reusable = (headers.get("connection") or "").lower() != "close" and (
            self.chunked or self.length is not None)

    def views(self) -> Iterator[memoryview]:
        """The body as it arrives, in memoryviews of one buffer, each valid until the next is asked for.

        Raises:
            HubUnavailableError: the connection was cut or timed out (bytes already handed over stay valid).
        """
        if self.complete:
            return
        try:
            if self.chunked:
                yield from self._chunked()
            else:
                yield from self._sized(self.length)
        except (OSError, ValueError) as exc:  # ValueError: a malformed chunk header
            raise HubUnavailableError(f"the download was cut: {exc}") from exc
        self.complete = True

    def read(self, limit: int = MAX_ERROR_BODY) -> bytes:
        """The body (an error's), up to ``limit`` bytes."""
        out = bytearray()
        for view in self.views():
            out += view[: max(0, limit - len(out))]
        return bytes(out)

    def _sized(self, left: int | None) -> Iterator[memoryview]:
        reader, buffer = self._conn.reader, self._buffer
        while left is None or left > 0:
            n = reader.readinto1(buffer if left is None or left >= len(buffer) else buffer[:left])
            if not n:
                if left is None:
                    return  # no length: the end of the connection is the end of the body
                raise HubUnavailableError(f"the connection closed with {left} bytes of the body still to come")
            if left is not None:
                left -= n
            yield buffer[:n]

    def _chunked(self) -> Iterator[memoryview]:
        reader = self._conn.reader
        while True:
            line = reader.readline(1024)
            if not line.endswith(b"\n"):
                raise HubUnavailableError("the connection closed inside a chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while reader.readline(1024).strip():  # trailers
                    pass
                return
            yield from self._sized(size)
            reader.readline(1024)  # the CRLF after each chunk


class Fetcher:
    """GETs to one hub (and wherever it redirects) over keep-alive connections shared by its threads."""

    def __init__(self, base_url: str, *, headers: dict[str, str], token_header: str | None,
                 timeout: float, connect_timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._hub = _origin_of(self.base_url)
        self._headers = headers
        self._token = token_header
        self._timeout, self._connect_timeout = timeout, connect_timeout
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()  # each thread's body buffer
        self._idle: dict[Origin, list[_Connection]] = {}
        self._all: list[_Connection] = []
        self._lock = threading.Lock()

    @classmethod
    def for_hub(cls, base_url: str, *, headers: dict[str, str], token_header: str | None,
                timeout: float) -> Fetcher | None:
        """A fetcher for ``base_url``, or None where httpx must carry the bytes (a proxy is set)."""
        try:
            if _uses_proxy(base_url):
                return None
            return cls(base_url, headers=headers, token_header=token_header, timeout=timeout)
        except HubUnavailableError:
            return None

    def close(self) -> None:
        with self._lock:
            conns, self._all, self._idle = self._all, [], {}
        for conn in conns:
            conn.close()

    def buffer(self) -> bytearray:
        """This thread's body buffer."""
        buf: bytearray | None = getattr(self._local, "buffer", None)
        if buf is None:
            buf = self._local.buffer = bytearray(BUFFER)
        return buf

    @contextlib.contextmanager
    def get(self, url_path: str, headers: dict[str, str] | None = None) -> Iterator[Answer]:
        """GET ``url_path`` (relative to the hub, or absolute), following redirects.

        The connection goes back to the idle ones when the body was read to its end.

        Raises:
            HubUnavailableError: no connection, a timeout, a cut, or too many redirects.
        """
        url = urljoin(self.base_url + "/", url_path.lstrip("/")) if "://" not in url_path else url_path
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._send(url, headers or {})
            location = answer.headers.get("location")
            if answer.status_code in _REDIRECTS and location:
                self._finish(answer, drain=True)
                url = urljoin(url, location)
                continue
            try:
                yield answer
            finally:
                self._finish(answer)
            return
        raise HubUnavailableError(f"more than {MAX_REDIRECTS} redirects from {url_path}")

    def _send(self, url: str, extra: dict[str, str]) -> Answer:
        origin = _origin_of(url)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        scheme, host, port = origin
        default = 443 if scheme == "https" else 80
        lines = [f"GET {target} HTTP/1.1", f"Host: {host if port == default else f'{host}:{port}'}",
                 "Accept-Encoding: identity"]
        lines += [f"{k}: {v}" for k, v in self._headers.items()]
        if self._token and origin == self._hub:  # the token goes to the hub's own origin only
            lines.append(f"Authorization: {self._token}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for fresh in (False, True):
            conn = self._connection(origin, fresh)
            try:
                conn.sock.sendall(request)
                status_line = conn.reader.readline(65537)
                if not status_line:
                    raise ConnectionResetError("the connection closed before an answer")
                version, _, rest = status_line.decode("latin-1").partition(" ")
                code, _, reason = rest.strip().partition(" ")
                if not version.startswith("HTTP/1.") or not code.isdigit():
                    raise HubUnavailableError(f"{url} did not answer HTTP/1.1: {status_line[:80]!r}")
                message = _read_headers(conn.reader)
            except TimeoutError as exc:
                self._forget(conn)
                raise HubUnavailableError(f"{scheme}://{host}:{port} did not answer in time") from exc
            except (OSError, ValueError) as exc:
                self._forget(conn)
                if conn.used and not fresh:  # a keep-alive connection the server had closed: once more
                    continue
                raise HubUnavailableError(f"download from {scheme}://{host}:{port} failed: {exc}") from exc
            except HubUnavailableError:
                self._forget(conn)
                raise
            conn.used = True
            return Answer(conn, int(code), reason, message, self.buffer())
        raise AssertionError("unreachable")

    def _connection(self, origin: Origin, fresh: bool) -> _Connection:
        if not fresh:
            with self._lock:
                idle = self._idle.get(origin)
                if idle:
                    return idle.pop()
        if origin[0] == "https" and self._tls is None:
            import httpx  # the same certificates as the rest of the client

            self._tls = httpx.create_ssl_context()
        try:
            conn = _Connection(origin, self._connect_timeout, self._timeout, self._tls)
        except TimeoutError as exc:
            raise HubUnavailableError(f"{origin[0]}://{origin[1]}:{origin[2]} did not answer in time") from exc
        except OSError as exc:
            raise HubUnavailableError(f"download from {origin[0]}://{origin[1]}:{origin[2]} failed: {exc}") from exc
        with self._lock:
            self._all.append(conn)
        return conn

    def _finish(self, answer: Answer, *, drain: bool = False) -> None:
        """Put the connection back for the next request if its answer was read whole, else close it."""
        conn = answer._conn
        if drain and not answer.complete:
            with contextlib.suppress(HubUnavailableError):
                answer.read()
        if answer.complete and answer.reusable:
            with self._lock:
                idle = self._idle.setdefault(conn.origin, [])
                if len(idle) < MAX_IDLE:
                    idle.append(conn)
                    return
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        conn.close()
        with self._lock, contextlib.suppress(ValueError):
            self._all.remove(conn)
