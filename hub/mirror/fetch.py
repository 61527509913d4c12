"""Copying blobs from an upstream hub: resumed after a cut, verified, stored only when whole.

Bytes land in ``<data dir>/mirror/partial/<sha256>`` first, through the client's one download
loop (:func:`cvflow.transfer.download`): a cut download is resumed from there with a Range
request (by this run or the next one), and transient failures (a cut, a timeout, 5xx, 429)
are tried again with backoff. Only bytes of the promised size that hash to the promised
digest go on to the blob store (which hashes them once more while they stream in); anything
else is deleted and reported as ``upstream_invalid``; an upstream still failing after the
retries is ``upstream_unavailable``, and its partial bytes stay for the next run.

A blob the hub has already is downloaded again unless the copying path (``mirror``,
``pull-through``, ``bundle``: each a grant holder of its own) may reference it: it fetched
those bytes itself before, or a public version has them. Otherwise an upstream could name the
digest of a private package's blob and have the hub publish that blob in a public copy.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

from cvflow import errors as client_errors
from cvflow.api import HubClient
from cvflow.transfer import DEFAULT_POLICY, MismatchError, RetryPolicy, download
from hub.context import HubContext
from hub.db import session_scope
from hub.errors import HubError
from hub.models import Blob, HubPath
from hub.services.blobs import hub_holder, referable

CHUNK = 1 << 20
# A pull-through download keeps a reader waiting: it waits less for a busy upstream.
_POLICIES: dict[HubPath, RetryPolicy] = {"pull-through": RetryPolicy(max_wait=10.0)}
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")


def upstream_error(exc: client_errors.HubError, what: str) -> HubError:
    """An upstream's refusal or silence as this hub's error."""
    if isinstance(exc, client_errors.HubUnavailableError):
        return HubError("upstream_unavailable", f"{what}: {exc.message}")
    return HubError("upstream_invalid", f"{what}: the upstream answered {exc.message}")


class BlobFetcher:
    """Copies blobs into one hub's store; safe to share between threads."""

    def __init__(self, context: HubContext, *, via: HubPath, retry: RetryPolicy | None = None) -> None:
        self.context = context
        self.holder = hub_holder(via)
        self.retry = retry or _POLICIES.get(via, DEFAULT_POLICY)
        self.partial_dir = Path(context.settings.data_dir) / "mirror" / "partial"
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def has(self, digest: str, size: int | None = None) -> bool:
        """Whether the hub stores ``digest`` (of ``size`` bytes) and this path may reference it."""
        with session_scope(self.context.engine) as session:
            row = session.get(Blob, digest)
            if row is None or (size is not None and row.size != size):
                return False
            return digest in referable(session, self.holder, [digest], readable=None)

    def fetch(self, client: HubClient, url_path: str, digest: str, size: int, *, what: str) -> int:
        """Make sure the hub stores blob ``digest`` of ``size`` bytes, downloading it from
        ``url_path`` on ``client``'s hub if needed; returns the bytes downloaded.

        Raises ``upstream_invalid`` (wrong digest, size or ETag; nothing is stored),
        ``upstream_unavailable`` (the partial bytes stay for a resume), ``storage_unavailable``.
        """
        if not _SHA256.match(digest) or not isinstance(size, int) or size < 0:
            raise HubError("upstream_invalid", f"{what}: not a sha256 digest and size: {digest!r}, {size!r}")
        if self.has(digest, size):
            return 0
        with self._lock(digest):
            if self.has(digest, size):
                return 0
            self.partial_dir.mkdir(parents=True, exist_ok=True)
            partial = self.partial_dir / digest
            received = self._download(client, url_path, digest, size, partial, what)
            try:
                self.context.uploads.put_stream(_read(partial), size, sha256=digest, grant_to=self.holder)
            finally:
                partial.unlink(missing_ok=True)
            return received

    def _lock(self, digest: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(digest, threading.Lock())

    def _download(self, client: HubClient, url_path: str, digest: str, size: int, partial: Path, what: str) -> int:
        try:
            return download(client, url_path, partial, digest=digest, size=size, fsync=False, policy=self.retry,
                            what=what)
        except MismatchError as exc:
            raise HubError("upstream_invalid", exc.message,
                           details={"expected": exc.expected, "actual": exc.actual}) from exc
        except client_errors.IntegrityError as exc:
            raise HubError("upstream_invalid", exc.message) from exc
        except client_errors.HubUnavailableError as exc:  # the retries are spent: the message says how
            raise HubError("upstream_unavailable", exc.message) from exc
        except client_errors.HubError as exc:
            raise upstream_error(exc, what) from exc


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            yield block


