"""The blob store interface that every backend implements.

A blob is a run of bytes addressed by its sha256 (64 lowercase hex). Uploads are written
to a *staging* area first; only :meth:`BlobStore.commit`, called once the hub has verified
the digest, makes bytes appear under a digest key, and nothing ever overwrites a blob.

Errors (messages are safe to show to users; backend details ride on ``__cause__``)::

    StorageError                 the store is unusable or an operation failed
    ├── BlobNotFound             no blob with this digest (also a FileNotFoundError)
    ├── UploadNotFound           no staged upload with this id / token
    └── ChunkTooSmall            S3: a non-final chunk under 5 MiB
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeGuard

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class StorageError(Exception):
    """The blob store cannot do what was asked; the message is safe to show."""


class BlobNotFound(StorageError, FileNotFoundError):
    """No blob is stored under this digest."""


class UploadNotFound(StorageError):
    """No staged upload exists for this upload id (never begun, aborted or committed)."""


class ChunkTooSmall(StorageError):
    """A non-final chunk is smaller than the backend's minimum part size."""


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    modified: datetime  # tz-aware UTC


@dataclass(frozen=True)
class StagedInfo:
    upload_id: str
    size: int
    modified: datetime  # tz-aware UTC; the last write, so gc can tell idle from active


def is_digest(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a sha256 digest: 64 lowercase hex characters."""
    return isinstance(value, str) and _DIGEST_RE.fullmatch(value) is not None


def is_upload_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid upload id: ``[A-Za-z0-9_-]{1,64}``."""
    return isinstance(value, str) and _UPLOAD_ID_RE.fullmatch(value) is not None


def validate_digest(digest: object) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters; raise ValueError otherwise."""
    # Digests become file names and object keys, so anything else must never get through.
    if not is_digest(digest):
        raise ValueError(f"invalid sha256 digest: {digest!r:.80}")
    return digest


def validate_upload_id(upload_id: object) -> str:
    """Return ``upload_id`` if it matches ``[A-Za-z0-9_-]{1,64}``; raise ValueError otherwise."""
    if not is_upload_id(upload_id):
        raise ValueError(f"invalid upload id: {upload_id!r:.80}")
    return upload_id


def blob_key(digest: str) -> str:
    """The blob's path relative to the store root: ``blobs/sha256/<aa>/<digest>``.

    Raises ValueError for an invalid digest.
    """
    digest = validate_digest(digest)
    return f"blobs/sha256/{digest[:2]}/{digest}"


def staging_key(upload_id: str) -> str:
    """The staged upload's path relative to the store root: ``uploads/<upload_id>``."""
    return f"uploads/{validate_upload_id(upload_id)}"


def check_range(start: int, end: int | None, chunk_size: int = 1) -> None:
    """Raise ValueError for a negative start, an end before the start or a chunk size < 1."""
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range {start}..{end}")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")


def content_disposition(filename: str) -> str:
    """An ``attachment`` header value for ``filename``, with RFC 5987 for non-ASCII names."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\/' else "_" for c in filename)
    value = f'attachment; filename="{plain}"'
    if plain != filename:
        value += f"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"
    return value


class BlobStore(abc.ABC):
    """Content-addressed blob storage with resumable, verify-then-commit uploads.

    Implementations are safe to share between threads.
    """

    #: The configured URL with any credentials removed (safe to log and show).
    url: str

    # --- blobs

    @abc.abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether a blob is stored under ``digest``. Raises StorageError if the store fails."""

    @abc.abstractmethod
    def stat(self, digest: str) -> BlobInfo:
        """Size and modification time of a blob. Raises BlobNotFound."""

    @abc.abstractmethod
    def open_range(
        self, digest: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """Stream bytes ``start`` up to (not including) ``end`` of a blob.

        ``end`` past the blob's size is clamped; a ``start`` at or past it yields nothing.
        Raises BlobNotFound when called (before anything is yielded), ValueError for a
        negative start or an end before the start, StorageError while streaming.
        """

    @abc.abstractmethod
    def local_path(self, digest: str) -> Path | None:
        """The blob's file (for sendfile / X-Accel-Redirect), or None for remote backends.

        Raises BlobNotFound where the backend has paths and the blob is missing.
        """

    @abc.abstractmethod
    def presigned_url(self, digest: str, *, expires: int = 300, filename: str | None = None) -> str | None:
        """A time-limited GET URL for the blob, or None where the backend has none.

        Does not check that the blob exists. Raises StorageError if signing fails.
        """

    @abc.abstractmethod
    def delete(self, digest: str) -> None:
        """Remove a blob; a missing blob is not an error. Raises StorageError."""

    @abc.abstractmethod
    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob, in no particular order (for garbage collection)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Readiness probe: raise StorageError if the store cannot be read and written."""

    # --- staging

    @abc.abstractmethod
    def begin_upload(self, upload_id: str) -> str:
        """Start staging ``upload_id``; return an opaque token the hub persists with it."""

    @abc.abstractmethod
    def write_chunk(
        self,
        upload_id: str,
        token: str,
        *,
        offset: int,
        index: int,
        chunks: Iterable[bytes],
        final: bool,
    ) -> int:
        """Stage one client chunk that starts at ``offset`` and is chunk number ``index``.

        Idempotent for a retry at the same offset/index: whatever was staged from
        ``offset`` on before is replaced. ``chunks`` is consumed exactly once, in order.
        Chunks of one upload must not be written concurrently (the hub serialises them).
        Returns the number of bytes written. Raises UploadNotFound, ChunkTooSmall (S3),
        StorageError; exceptions raised by ``chunks`` propagate unchanged.
        """

    @abc.abstractmethod
    def read_staged(self, upload_id: str, token: str, *, size: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the first ``size`` staged bytes (to re-hash after a restart).

        On S3 this seals the upload: no further :meth:`write_chunk` is possible, so call
        it only once every chunk is written. Raises UploadNotFound when called,
        StorageError if fewer than ``size`` bytes are staged.
        """

    @abc.abstractmethod
    def commit(self, upload_id: str, token: str, *, digest: str, size: int) -> None:
        """Make the ``size`` staged bytes, already verified by the caller, blob ``digest``.

        Never overwrites an existing blob (the staging copy is dropped instead). A retried
        commit whose first attempt finished succeeds. Raises UploadNotFound, StorageError
        (e.g. fewer than ``size`` bytes staged), ValueError for an invalid digest.
        """

    @abc.abstractmethod
    def abort_upload(self, upload_id: str, token: str) -> None:
        """Drop everything staged for ``upload_id``; missing is fine. Raises StorageError."""

    @abc.abstractmethod
    def iter_staged(self) -> Iterator[StagedInfo]:
        """Every staged upload, in no particular order (for gc of abandoned uploads)."""

    # --- convenience

    def put_bytes(self, digest: str, data: bytes) -> None:
        """Store small ``data`` as blob ``digest`` unless it exists.

        Raises StorageError if ``sha256(data)`` is not ``digest``, ValueError for an
        invalid digest.
        """
        digest = validate_digest(digest)
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, digest):
            raise StorageError(f"data does not hash to {digest}")
        if not self.exists(digest):
            self._put_verified(digest, bytes(data))

    def _put_verified(self, digest: str, data: bytes) -> None:
        # Through staging, so a crash leaves a staged upload that gc finds, never a torn blob.
        upload_id = f"put-{uuid.uuid4().hex}"
        token = self.begin_upload(upload_id)
        try:
            self.write_chunk(upload_id, token, offset=0, index=0, chunks=[data], final=True)
            self.commit(upload_id, token, digest=digest, size=len(data))
        except BaseException:
            self.abort_upload(upload_id, token)
            raise
