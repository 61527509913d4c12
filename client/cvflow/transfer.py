"""Downloading one blob: resumed with Range, hashed as it arrives, verified, retried with backoff.

Both the client's cache (:meth:`cvflow.cache.Cache.fetch_blob`) and the hub's mirror
(``hub.mirror.fetch``) download blobs through :func:`download`::

    received = download(client, url_path, partial, digest=digest, size=size, dest=final)

Bytes are appended to ``partial`` (conventionally ``<digest>.incomplete``); a partial file left
by an earlier run is resumed with ``Range: bytes=<its size>-``, and its bytes are hashed before
the rest arrives, so the whole file is hashed once. Only a file of exactly ``size`` bytes whose
sha256 is ``digest`` is renamed to ``dest``; the caller holds whatever lock keeps two writers apart.

What is tried again, and what is not:

- **Transient, retried** (up to :attr:`RetryPolicy.attempts` tries in all): the connection
  refused, reset or cut mid-body, a timeout, a 5xx answer, 408, and 429. A ``Retry-After``
  (seconds or an HTTP date) on a 429 or 503 is honoured: the wait is at least that long.
  A cut resumes from the bytes already on disk.
- **Final, never retried**: any other 4xx (404, 401, 403, ...: asking again gets the same
  answer), a wrong ``ETag``, more bytes than promised, and a complete answer whose size or
  sha256 is not the promised one. These raise at once and remove the partial file, so a bad
  answer never loops. One exception: bytes that fail their digest after a *resume* are fetched
  once more from the start, since the partial file of an earlier run may be what was wrong.
- **The disk filling up** raises :class:`DiskFullError` at once; the partial file stays for a resume.

Backoff is exponential with full jitter: before retry *n* (counted since the last try that
received any bytes) the wait is ``random() * min(cap, base * 2 ** (n - 1))`` seconds. The
waits of one download add up to at most :attr:`RetryPolicy.max_wait`; a ``Retry-After`` that
would go past it ends the download at once with a clear error. :class:`RetryPolicy` also
carries the ``sleep``, ``clock`` and ``random`` functions it uses: the seam through which
tests check the waits without spending them (the network stays real).
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import hmac
import os
import random as _random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cvflow.errors import CVFlowError, HubError, HubUnavailableError, IntegrityError
from cvflow.paths import SHA256_RE
from cvflow.progress import format_size

if TYPE_CHECKING:
    import httpx

    from cvflow.api import HubClient

__all__ = ["DiskFullError", "MismatchError", "RetryPolicy", "download", "is_transient", "write_all"]

CHUNK = 1 << 20
Write = Callable[[int, "bytes | memoryview"], None]


class DiskFullError(CVFlowError, OSError):
    """The disk filled up while downloading; the partial file stays for a later resume."""

    code = "disk_full"


class MismatchError(IntegrityError):
    """A complete download whose size or sha256 is not the promised one (nothing is kept).

    ``expected`` and ``actual`` are the promised and the received size (ints) or sha256 (strs).
    """

    def __init__(self, message: str, *, expected: int | str, actual: int | str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a download is tried again after a transient failure.

    ``sleep``, ``clock`` and ``random`` are the functions the policy waits, reads the time and
    draws the jitter with; tests pass their own to check the waits without waiting.
    """

    attempts: int = 3  # tries in all, the first one included
    base: float = 0.5  # seconds: the cap of the first wait, doubled for each further retry
    cap: float = 10.0  # seconds: no single backoff wait is longer (a Retry-After may be)
    max_wait: float = 60.0  # seconds: all the waits of one download together
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    clock: Callable[[], float] = field(default=time.time, compare=False)  # wall clock, for Retry-After dates
    random: Callable[[], float] = field(default=_random.random, compare=False)

    def backoff(self, retry: int) -> float:
        """The jittered wait before retry number ``retry`` (1, 2, ...)."""
        return self.random() * min(self.cap, self.base * 2.0 ** (retry - 1))


DEFAULT_POLICY = RetryPolicy()


def is_transient(exc: HubError) -> bool:
    """Whether asking again may get another answer: no connection, a timeout, 5xx, 408, 429."""
    return isinstance(exc, HubUnavailableError) or exc.status in (408, 429) or exc.status >= 500


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Refused(Exception):
    """An error answer, with its ``Retry-After`` header (or None)."""

    def __init__(self, error: HubError, retry_after: str | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class _Try:
    """What one try did: the bytes it received over the network."""

    received = 0


def download(
    client: HubClient, url_path: str, partial: Path, *, digest: str, size: int,
    dest: Path | None = None, seal: Callable[[Path], None] | None = None, fsync: bool = True,
    policy: RetryPolicy = DEFAULT_POLICY, progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None, what: str | None = None,
    write: Write = write_all, full_hint: str = "free some space",
) -> int:
    """Download blob ``digest`` of ``size`` bytes from ``url_path`` on ``client``'s hub into
    ``partial`` (resuming what is there), verify it, then rename it to ``dest`` if given
    (after ``seal(partial)``, e.g. making it read-only). Returns the bytes received.

    ``progress`` receives byte counts as they arrive (negative when a restart drops bytes
    counted before); ``log`` receives lines for the person watching; ``what`` names the blob
    in both and in errors. ``write`` is the one function that writes to the disk.

    Raises:
        MismatchError: a complete answer of the wrong size or sha256 (the partial is removed).
        IntegrityError: a wrong ETag or more bytes than promised (the partial is removed).
        DiskFullError: the disk filled up (the partial stays, for a resume).
        HubUnavailableError: transient failures outlasted ``policy`` (the partial stays).
        HubError: a final refusal such as 404 or 403 (the partial stays).
    """
    what = what or digest[:12]
    say = log or (lambda _: None)
    advance = progress or (lambda _: None)
    received, tries, failures, waited = 0, 0, 0, 0.0
    restarted = False
    resumed_from = _size(partial)
    if resumed_from > size:
        partial.unlink()
        resumed_from = 0
    if resumed_from:
        say(f"resuming {what} at {format_size(resumed_from)} of {format_size(size)}")
        advance(resumed_from)
    while True:
        tries += 1
        have = _size(partial)
        attempt = _Try()
        try:
            hasher = _receive(client, url_path, digest, partial, have, size, advance, attempt, what, fsync,
                              write, full_hint)
        except (_Refused, HubError) as exc:
            received += attempt.received
            error, retry_after = (exc.error, _retry_after(exc.retry_after, policy.clock)) if isinstance(
                exc, _Refused) else (exc, None)
            if not is_transient(error):
                _drop_if_empty(partial)
                raise error from None
            failures = 1 if attempt.received else failures + 1
            wait = max(policy.backoff(failures), retry_after or 0.0)
            if tries >= policy.attempts or waited + wait > policy.max_wait:
                _drop_if_empty(partial)
                raise _gave_up(error, what, _size(partial), size, tries, retry_after, policy) from error
            done = _size(partial)
            if attempt.received:
                say(f"download of {what} was cut at {format_size(done)}; resuming in {wait:.1f} s")
            else:
                say(f"download of {what} failed ({error.message}); trying again in {wait:.1f} s")
            policy.sleep(wait)
            waited += wait
            continue
        except IntegrityError:
            partial.unlink(missing_ok=True)
            raise
        received += attempt.received
        actual = hasher.hexdigest()
        if hmac.compare_digest(actual, digest):
            break
        partial.unlink(missing_ok=True)
        if resumed_from and not restarted:  # the bytes of an earlier run may be what was wrong
            restarted = True
            advance(-size)
            say(f"{what} did not verify after resuming; downloading it again from the start")
            continue
        raise MismatchError(f"{what}: the downloaded bytes have sha256 {actual}, not {digest} as promised;"
                            " nothing was stored", expected=digest, actual=actual)
    if dest is not None:
        if seal is not None:
            seal(partial)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, dest)
    return received


def _receive(client: HubClient, url_path: str, digest: str, partial: Path, have: int, size: int,
             advance: Callable[[int], None], attempt: _Try, what: str, fsync: bool, write: Write,
             full_hint: str) -> Any:
    """Append the rest of the blob to ``partial``; return a sha256 of the whole file."""
    hasher = hashlib.sha256()
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if have:
            with open(fd, "rb", closefd=False) as f:  # the part already here counts too
                for block in iter(lambda: f.read(CHUNK), b""):
                    hasher.update(block)
        if have >= size:  # complete already (an earlier run, or a batch not yet committed)
            if fsync:
                os.fsync(fd)
            return hasher
        with _get(client, url_path, {"range": f"bytes={have}-"} if have else None) as response:
            etag = response.headers.get("etag", "").strip('"')
            if SHA256_RE.match(etag) and etag != digest:  # S3's md5 ETags pass
                raise IntegrityError(f"{what}: the hub sent the file with sha256 {etag}, a different one;"
                                     " nothing was stored")
            if have and not (response.status_code == 206 and _range_starts_at(response, have)):
                # No Range support there (a 200): start over with this answer. The wrong range (a
                # broken server or proxy): drop the partial and ask for the whole file next try.
                os.ftruncate(fd, 0)
                hasher, dropped, have = hashlib.sha256(), have, 0
                advance(-dropped)
                if response.status_code != 200:
                    raise HubUnavailableError(f"{what}: a wrong answer ({response.status_code},"
                                              f" {response.headers.get('content-range')!r}) to a Range request")
            os.lseek(fd, have, os.SEEK_SET)
            written = have
            for chunk in response.views():  # each piece written as it comes: a cut keeps every byte received
                if written + len(chunk) > size:
                    raise IntegrityError(f"{what}: the hub sent more than the {size} bytes promised;"
                                         " nothing was stored")
                try:
                    write(fd, chunk)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    done = os.fstat(fd).st_size
                    raise DiskFullError(
                        f"no space left on device while downloading {what} into {partial.parent}:"
                        f" {format_size(size - done)} more needed,"
                        f" {format_size(shutil.disk_usage(partial.parent).free)} free;"
                        f" {full_hint} and run the same command to resume"
                    ) from exc
                hasher.update(chunk)
                written += len(chunk)
                attempt.received += len(chunk)
                advance(len(chunk))
            if written < size:
                if "content-length" in response.headers or "chunked" in response.headers.get("transfer-encoding", ""):
                    raise MismatchError(f"{what}: the hub sent {written} bytes, not the {size} promised;"
                                        " nothing was stored", expected=size, actual=written)
                raise HubUnavailableError(f"the hub closed the download of {what} early")  # no length: a cut
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return hasher


class _Body(Protocol):
    """An answer as :func:`_receive` reads it: :class:`cvflow.fetch.Answer`, or httpx's through :class:`_Httpx`."""

    status_code: int

    @property
    def headers(self) -> Any: ...  # a case-insensitive mapping

    def views(self) -> Iterable[bytes | memoryview]: ...


class _Httpx:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self._response = response

    def views(self) -> Iterator[bytes]:
        return self._response.iter_bytes()


@contextlib.contextmanager
def _get(client: HubClient, url_path: str, headers: dict[str, str] | None) -> Iterator[_Body]:
    """A streamed GET that hands back an error answer's ``Retry-After`` with the error.

    The client's :class:`~cvflow.fetch.Fetcher` carries the bytes where it has one, else httpx.
    """
    import httpx  # here, not at the top: importing the cache must not cost httpx's import

    from cvflow.api import _error_for

    if client.fetcher is not None:
        with client.fetcher.get(url_path, headers) as answer:
            if answer.status_code >= 400:
                error = httpx.Response(answer.status_code, headers=list(answer.headers.items()),
                                       content=answer.read())
                raise _Refused(_error_for(error), answer.headers.get("retry-after"))
            yield answer
        return
    try:
        with client.http.stream("GET", url_path, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise _Refused(_error_for(response), response.headers.get("retry-after"))
            yield _Httpx(response)
    except httpx.TimeoutException as exc:
        raise HubUnavailableError(f"the hub at {client.base_url} did not answer in time") from exc
    except httpx.TransportError as exc:
        raise HubUnavailableError(f"download from {client.base_url} failed: {exc}") from exc


def _retry_after(value: str | None, now: Callable[[], float]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _gave_up(error: HubError, what: str, done: int, size: int, tries: int, retry_after: float | None,
             policy: RetryPolicy) -> HubUnavailableError:
    if retry_after is not None and retry_after > policy.max_wait:
        reason = f"the hub asked to wait {retry_after:.0f} s, longer than the {policy.max_wait:.0f} s a download waits"
    else:
        reason = f"{tries} {'try' if tries == 1 else 'tries'}"
    if done:
        message = (f"download of {what} stopped at {done} of {size} bytes after {reason} ({error.message});"
                   " run the same command again to resume")
    else:
        message = f"download of {what} failed after {reason} ({error.message})"
    return HubUnavailableError(message, code=error.code, status=error.status, details=error.details)


def _range_starts_at(response: _Body, offset: int) -> bool:
    return str(response.headers.get("content-range", "")).startswith(f"bytes {offset}-")


def _drop_if_empty(path: Path) -> None:
    if _size(path) == 0:
        path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
