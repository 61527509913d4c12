"""Blobs: "which do you have?", resumable uploads, and making verified bytes visible.

An upload session receives chunks at offsets. Each chunk streams into the store's staging
area while it is hashed; the database keeps the committed offset, so a chunk cut half-way,
or a hub killed mid-chunk, leaves nothing that counts and the client resends from the
offset the hub reports. The running sha256 lives in this process only; after a restart, or
when another replica took earlier chunks, ``finish`` re-reads the staged bytes once.
A blob row is written only after the digest matched, so nothing unverified is ever visible.

Knowing a digest never gives the bytes. Whoever stores bytes gets a *grant* for their digest
(``blob_grants``), and a version may reference a blob only if its publisher holds a grant or
may read a version that references it already (:func:`referable`) — the rule OCI registries
apply to cross-repository mounts. A blob anyone else has is "missing" to everybody else, who
uploads it again and so proves they hold it. Holders are named by :func:`user_holder` and
:func:`hub_holder`; every path that stores bytes says whom they are granted to.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import IO, TypeVar, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from cvflow.paths import SHA256_RE
from hub.db import session_scope
from hub.errors import HubError
from hub.models import AnnotationItem, Blob, BlobGrant, File, HubPath, Package, Upload, User, Version, row_id, utcnow
from hub.settings import Settings
from hub.storage import BlobStore, ChunkTooSmall, StorageError, UploadNotFound

_T = TypeVar("_T")


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
        raise HubError("invalid_digest", f"not a sha256 digest: {str(digest)[:80]!r}")
    return digest


def find_blobs(session: Session, digests: Iterable[str], *, touch: bool = True) -> dict[str, int]:
    """The digests (with sizes) the hub has; marks them recently wanted so gc spares them."""
    wanted = sorted({check_digest(d) for d in digests})
    found: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        part = wanted[i : i + 500]
        found.update(session.exec(select(Blob.sha256, Blob.size).where(col(Blob.sha256).in_(part))).all())
    if touch and found:
        session.exec(sa.update(Blob).where(col(Blob.sha256).in_(list(found))).values(touched_at=utcnow()))
    return found


def user_holder(user_id: int | None) -> str:
    """The grant holder for bytes a user uploaded (or the indexer stored on their behalf)."""
    assert user_id is not None
    return f"user:{user_id}"


#: The ways the hub copies versions itself: each is its own grant holder.
HUB_PATHS: tuple[HubPath, ...] = get_args(HubPath)


def hub_holder(via: HubPath) -> str:
    """The grant holder for bytes the hub fetched itself (``mirror``, ``pull-through``, ``bundle``)."""
    assert via in HUB_PATHS, via
    return f"hub:{via}"


def grant(session: Session, holder: str, digests: Iterable[str]) -> None:
    """Record that ``holder`` stored the bytes of ``digests`` (blobs that exist)."""
    rows = [{"sha256": d, "holder": holder} for d in sorted(set(digests))]
    if not rows:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.exec(insert(BlobGrant).values(rows).on_conflict_do_nothing(index_elements=["sha256", "holder"]))


def referable(session: Session, holder: str, digests: Iterable[str], *,
              readable: Callable[[int], bool] | None, projects: Callable[[int], bool] | None = None,
              touch: bool = False) -> dict[str, int]:
    """The digests (with sizes) that ``holder`` may reference in a new version: stored blobs
    it holds a grant for, that a version it may read references already, or that an image of
    an annotation project it works in is (a snapshot publishes those).

    ``readable(package_id)`` says whether the holder may read a private package; None: only
    public packages count. ``projects(project_id)`` says whether the holder holds a role in
    the project and may read its items; None: no project counts, public or not. Every other
    digest is to be treated as missing, whether or not the hub has it. With ``touch``, the
    answer's blobs are marked recently wanted (gc).
    """
    found = find_blobs(session, digests, touch=False)
    allowed: set[str] = set()
    rest = sorted(found)
    for part in _chunks(rest):
        allowed.update(session.exec(select(BlobGrant.sha256).where(
            BlobGrant.holder == holder, col(BlobGrant.sha256).in_(part))).all())
    rest = [d for d in rest if d not in allowed]
    refs = (select(File.sha256, Version.package_id, Package.private)
            .join(Version, col(Version.id) == File.version_id)
            .join(Package, col(Package.id) == Version.package_id))
    private: dict[int, set[str]] = {}
    for part in _chunks(rest):
        for digest, package_id, is_private in session.exec(refs.where(col(File.sha256).in_(part)).distinct()):
            if not is_private:
                allowed.add(digest)
            else:
                private.setdefault(package_id, set()).add(digest)
    if readable is not None:
        for package_id, held in private.items():
            if not held <= allowed and readable(package_id):
                allowed |= held
    rest = [d for d in rest if d not in allowed]
    if projects is not None and rest:
        in_projects: dict[int, set[str]] = {}
        items = select(AnnotationItem.sha256, AnnotationItem.project_id)
        for part in _chunks(rest):
            for digest, project_id in session.exec(items.where(col(AnnotationItem.sha256).in_(part)).distinct()):
                in_projects.setdefault(project_id, set()).add(digest)
        for project_id, held in sorted(in_projects.items()):
            if not held <= allowed and projects(project_id):
                allowed |= held
    result = {d: found[d] for d in sorted(allowed)}
    if touch and result:
        session.exec(sa.update(Blob).where(col(Blob.sha256).in_(list(result))).values(touched_at=utcnow()))
    return result


def _chunks(items: list[str], n: int = 500) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


#: A batch upload (``POST /api/v1/blobs``): at most this many bytes in all, blobs of at most
#: ``BATCH_BLOB_LIMIT`` bytes each, at most ``BATCH_COUNT`` of them. Larger blobs take an upload
#: session of their own (resumable, in chunks).
BATCH_BODY_LIMIT = 32 << 20
BATCH_BLOB_LIMIT = 1 << 20
BATCH_COUNT = 2000
_BATCH_RECORD = re.compile(rb"([^ \n]{1,100}) ([0-9]{1,10})\n")


def split_batch(body: bytes | bytearray) -> list[tuple[str, memoryview]]:
    """The blobs of a batch body, each verified against its digest.

    The body is a sequence of records, each a line ``<sha256> <size>`` (ASCII, ending in
    ``\\n``) followed by exactly ``size`` bytes of the blob, and nothing after the last one.
    Raises ``bad_request`` (the framing, with the offset where it broke), ``invalid_digest``,
    ``upload_too_large`` (a blob over :data:`BATCH_BLOB_LIMIT`), ``body_too_large`` (more
    than :data:`BATCH_COUNT` blobs) or ``digest_mismatch`` (naming the blob).
    """
    view = memoryview(body)
    blobs: list[tuple[str, memoryview]] = []
    pos = 0
    while pos < len(body):
        match = _BATCH_RECORD.match(body, pos)
        if match is None:
            raise HubError("bad_request", f"expected a line '<sha256> <size>' at byte {pos} of the batch",
                           details={"offset": pos})
        digest = check_digest(match.group(1).decode("latin-1"))
        size = int(match.group(2))
        if size > BATCH_BLOB_LIMIT:
            raise HubError("upload_too_large", f"blob {digest} is {size} bytes; a batch takes blobs of at most "
                           f"{BATCH_BLOB_LIMIT} bytes (larger ones take an upload session)",
                           details={"limit": BATCH_BLOB_LIMIT, "sha256": digest})
        if len(blobs) == BATCH_COUNT:
            raise HubError("body_too_large", f"a batch may hold at most {BATCH_COUNT} blobs",
                           details={"limit": BATCH_COUNT})
        start, end = match.end(), match.end() + size
        if end > len(body):
            raise HubError("bad_request", f"the batch ends inside blob {digest} (byte {pos})", details={"offset": pos})
        data = view[start:end]
        actual = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(actual, digest):
            raise HubError("digest_mismatch", f"the bytes sent for blob {digest} hash to {actual}",
                           details={"expected": digest, "actual": actual})
        blobs.append((digest, data))
        pos = end
    if not blobs:
        raise HubError("bad_request", "the batch holds no blob")
    return blobs


def insert_blob(session: Session, digest: str, size: int) -> None:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    now = utcnow()
    stmt = insert(Blob).values(sha256=digest, size=size, created_at=now, touched_at=now)
    session.exec(stmt.on_conflict_do_update(index_elements=["sha256"], set_={"touched_at": now}))


@dataclass
class _HashState:
    offset: int
    hasher: hashlib._Hash


class UploadService:
    """Upload sessions against one database and blob store (shared by all requests)."""

    def __init__(self, engine: Engine, store: BlobStore, settings: Settings) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings
        self._hashes: dict[str, _HashState] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- sessions

    def create(self, user: User, size: int) -> Upload:
        """Open a session for a blob of ``size`` bytes. Raises ``upload_too_large``."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise HubError("invalid_field", "size must be a non-negative integer")
        if size > self.settings.max_blob_size:
            raise HubError("upload_too_large", f"blobs may be at most {self.settings.max_blob_size} bytes",
                           details={"limit": self.settings.max_blob_size})
        upload_id = secrets.token_urlsafe(24)
        token = self._storage(lambda: self.store.begin_upload(upload_id))
        with session_scope(self.engine, write=True) as session:
            upload = Upload(id=upload_id, user_id=row_id(user), storage_token=token, declared_size=size)
            session.add(upload)
        with self._guard:
            self._hashes[upload_id] = _HashState(0, hashlib.sha256())
        return upload

    def get(self, user: User, upload_id: str) -> Upload:
        with session_scope(self.engine) as session:
            return self._load(session, user, upload_id)

    def _load(self, session: Session, user: User, upload_id: str) -> Upload:
        upload = session.get(Upload, upload_id)
        if upload is None or upload.user_id != user.id:
            raise HubError("upload_not_found", "no such upload session; it may have expired")
        return upload

    def _lock(self, upload_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(upload_id, threading.Lock())

    def write_chunk(self, user: User, upload_id: str, *, offset: int, length: int, pieces: Iterable[bytes]) -> Upload:
        """Append ``length`` bytes at ``offset``. Raises ``upload_offset_mismatch`` (with the
        current offset in details), ``upload_too_large``, ``incomplete_chunk``, ``chunk_too_small``."""
        lock = self._lock(upload_id)
        # A client resending after a cut may arrive while the hub still winds down the cut
        # request; wait for it rather than refuse.
        if not lock.acquire(timeout=30):
            raise HubError("upload_offset_mismatch", "another chunk of this upload is still being written")
        try:
            upload = self.get(user, upload_id)
            if offset != upload.offset:
                raise HubError("upload_offset_mismatch", f"the upload is at offset {upload.offset}, not {offset}",
                               details={"offset": upload.offset})
            declared = upload.declared_size or 0
            if offset + length > declared:
                raise HubError("upload_too_large", f"the chunk runs past the declared size of {declared} bytes",
                               details={"limit": declared})
            with self._guard:
                state = self._hashes.pop(upload_id, None)
            if state is not None and state.offset != offset:
                state = None
            received = 0

            def counted() -> Iterator[bytes]:
                nonlocal received
                for piece in pieces:
                    if received + len(piece) > length:
                        piece = piece[: length - received]
                    received += len(piece)
                    if state is not None:
                        state.hasher.update(piece)
                    yield piece
                    if received >= length:
                        return

            final = offset + length == declared
            try:
                self._storage(lambda: self.store.write_chunk(
                    upload_id, upload.storage_token, offset=offset, index=upload.chunk_count, chunks=counted(),
                    final=final))
            except HubError as exc:
                if exc.code != "chunk_too_small" or received == length:
                    raise
                # A cut chunk looks "too small" to S3; the cut is what the client must hear about.
            if received != length:
                raise HubError("incomplete_chunk", f"received {received} of {length} bytes; resend from offset {offset}",
                               details={"offset": offset})
            with session_scope(self.engine, write=True) as session:
                moved = session.exec(
                    sa.update(Upload).where(col(Upload.id) == upload_id, col(Upload.offset) == offset)
                    .values(offset=offset + length, chunk_count=Upload.chunk_count + 1, updated_at=utcnow())
                ).rowcount
            if moved != 1:
                raise HubError("upload_offset_mismatch", "the upload moved on while this chunk was written")
            if state is not None:
                state.offset = offset + length
                with self._guard:
                    self._hashes[upload_id] = state
            upload.offset, upload.chunk_count = offset + length, upload.chunk_count + 1
            return upload
        finally:
            lock.release()

    def finish(self, user: User, upload_id: str, digest: str) -> Blob:
        """Verify the bytes against ``digest`` and make them the blob. Raises ``size_mismatch``,
        ``digest_mismatch`` (the session is dropped: start again), ``upload_not_found``."""
        check_digest(digest)
        with self._lock(upload_id):
            upload = self.get(user, upload_id)
            if upload.offset != upload.declared_size:
                raise HubError("size_mismatch", f"received {upload.offset} of {upload.declared_size} bytes",
                               details={"offset": upload.offset})
            with self._guard:
                state = self._hashes.pop(upload_id, None)
            actual: str | None
            if state is not None and state.offset == upload.offset:
                actual = state.hasher.hexdigest()
            else:
                actual = self._rehash(upload)
            if actual is None:
                pass  # staging already committed by an earlier finish that died before the row
            elif not hmac.compare_digest(actual, digest):
                self._drop(upload)
                raise HubError("digest_mismatch", "the uploaded bytes do not match the expected sha256",
                               details={"expected": digest, "actual": actual})
            else:
                self._storage(lambda: self.store.commit(upload_id, upload.storage_token, digest=digest, size=upload.offset))
            if actual is None and not self.store.exists(digest):
                raise HubError("upload_not_found", "the staged bytes are gone; start the upload again")
            with session_scope(self.engine, write=True) as session:
                insert_blob(session, digest, upload.offset)
                grant(session, user_holder(user.id), [digest])
                session.exec(sa.delete(Upload).where(col(Upload.id) == upload_id))
                return Blob(sha256=digest, size=upload.offset)

    def _rehash(self, upload: Upload) -> str | None:
        hasher = hashlib.sha256()
        try:
            for piece in self.store.read_staged(upload.id, upload.storage_token, size=upload.offset):
                hasher.update(piece)
        except UploadNotFound:
            return None
        except StorageError as exc:
            raise HubError("storage_unavailable", str(exc)) from exc
        return hasher.hexdigest()

    def abort(self, user: User, upload_id: str) -> None:
        with self._lock(upload_id):
            self._drop(self.get(user, upload_id))

    def _drop(self, upload: Upload) -> None:
        self._storage(lambda: self.store.abort_upload(upload.id, upload.storage_token))
        with session_scope(self.engine, write=True) as session:
            session.exec(sa.delete(Upload).where(col(Upload.id) == upload.id))
        with self._guard:
            self._hashes.pop(upload.id, None)
            self._locks.pop(upload.id, None)

    def put_batch(self, user: User, body: bytes | bytearray) -> list[tuple[str, int]]:
        """Store every blob of a batch body (:func:`split_batch`) and grant them all to ``user``
        in one transaction; returns ``(digest, size)`` of each, in the body's order.

        Nothing is stored unless every blob of the batch hashes to its digest. Blobs the hub
        has already are only granted (the bytes prove that the caller holds them).
        """
        blobs = split_batch(body)
        unique = dict(blobs)  # a blob sent twice is stored once
        for digest, data in unique.items():
            self._storage(partial(self.store.put_bytes, digest, bytes(data)))
        with session_scope(self.engine, write=True) as session:
            for digest, data in unique.items():
                insert_blob(session, digest, len(data))
            grant(session, user_holder(user.id), unique.keys())
        return [(digest, len(data)) for digest, data in blobs]

    def put_small(self, data: bytes, *, grant_to: str | None) -> str:
        """Store bytes known in full (the demo loader, the indexer); returns the digest.

        ``grant_to``: the holder (:func:`user_holder`, :func:`hub_holder`) who may reference
        the blob from now on; None grants nobody.
        """
        digest = hashlib.sha256(data).hexdigest()
        self._storage(lambda: self.store.put_bytes(digest, data))
        with session_scope(self.engine, write=True) as session:
            insert_blob(session, digest, len(data))
            if grant_to is not None:
                grant(session, grant_to, [digest])
        return digest

    def put_stream(self, pieces: Iterable[bytes], size: int | None = None, *, grant_to: str | None,
                   sha256: str | None = None, max_size: int | None = None,
                   part_size: int = 64 << 20) -> tuple[str, int]:
        """Store a stream of bytes as a blob, hashing it while it streams; returns ``(digest, size)``.

        The bytes go through the store's staging area in parts of at least ``part_size`` (S3
        needs 5 MiB), and become a blob only once complete: with ``size`` they must be exactly
        that long, with ``sha256`` they must hash to it. Raises ``upload_too_large`` past
        ``max_size`` (and the hub's ``max_blob_size``), ``size_mismatch``, ``digest_mismatch``,
        ``storage_unavailable``; then nothing is stored. Errors raised by ``pieces`` propagate.
        ``grant_to`` is the holder granted the blob, as for :meth:`put_small`.
        """
        if sha256 is not None:
            check_digest(sha256)
        limit = min(max_size if max_size is not None else self.settings.max_blob_size, self.settings.max_blob_size)
        if size is not None and size > limit:
            raise HubError("upload_too_large", f"{size} bytes is over the limit of {limit}", details={"limit": limit})
        upload_id = f"put-{secrets.token_hex(16)}"
        token = self._storage(lambda: self.store.begin_upload(upload_id))
        hasher = hashlib.sha256()
        total = staged = index = 0
        try:
            with tempfile.SpooledTemporaryFile(max_size=8 << 20) as part:
                for piece in pieces:
                    if not piece:
                        continue
                    total += len(piece)
                    if size is not None and total > size:
                        raise HubError("size_mismatch", f"received more than the expected {size} bytes",
                                       details={"expected": size, "actual": total})
                    if total > limit:
                        raise HubError("upload_too_large", f"the stream is over the limit of {limit} bytes",
                                       details={"limit": limit})
                    if part.tell() >= part_size:
                        # More bytes follow, so the part held back is not the last one.
                        staged += self._put_part(upload_id, token, part, offset=staged, index=index, final=False)
                        index += 1
                    hasher.update(piece)
                    part.write(piece)
                self._put_part(upload_id, token, part, offset=staged, index=index, final=True)
            if size is not None and total != size:
                raise HubError("size_mismatch", f"received {total} bytes, expected {size}",
                               details={"expected": size, "actual": total})
            digest = hasher.hexdigest()
            if sha256 is not None and not hmac.compare_digest(digest, sha256):
                raise HubError("digest_mismatch", "the bytes do not match the expected sha256",
                               details={"expected": sha256, "actual": digest})
            self._storage(lambda: self.store.commit(upload_id, token, digest=digest, size=total))
        except BaseException:
            with contextlib.suppress(Exception):
                self.store.abort_upload(upload_id, token)
            raise
        with session_scope(self.engine, write=True) as session:
            insert_blob(session, digest, total)
            if grant_to is not None:
                grant(session, grant_to, [digest])
        return digest, total

    def _put_part(self, upload_id: str, token: str, part: IO[bytes], *, offset: int, index: int, final: bool) -> int:
        """Stage the bytes held in ``part`` at ``offset``, then empty it; returns their count."""
        length = part.tell()
        part.seek(0)

        def chunks() -> Iterator[bytes]:
            while block := part.read(1 << 20):
                yield block

        self._storage(lambda: self.store.write_chunk(upload_id, token, offset=offset, index=index,
                                                     chunks=chunks(), final=final))
        part.seek(0)
        part.truncate()
        return length

    @staticmethod
    def _storage(fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except ChunkTooSmall as exc:
            raise HubError("chunk_too_small", str(exc)) from exc
        except UploadNotFound as exc:
            raise HubError("upload_not_found", str(exc)) from exc
        except StorageError as exc:
            raise HubError("storage_unavailable", str(exc)) from exc
