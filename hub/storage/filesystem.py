"""Blob store in a local directory (the embedded default, ``file:///path``).

Layout::

    <root>/blobs/sha256/<aa>/<digest>    committed blobs, read-only
    <root>/uploads/<upload_id>           staged uploads
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from .base import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    StagedInfo,
    StorageError,
    UploadNotFound,
    blob_key,
    check_range,
    is_digest,
    is_upload_id,
    staging_key,
    validate_digest,
)


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, tz=UTC)


def _fsync_dir(path: Path) -> None:
    # A rename/link is only durable once the directory entry itself is on disk.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """Turn OS failures (disk full, permissions) into StorageError with a safe message."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise StorageError(f"{what} failed: {reason}") from exc


class FileBlobStore(BlobStore):
    """Blobs as files under ``root``; thread-safe because it keeps no mutable state."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root = Path(root)
        if not root.is_absolute():
            raise ValueError(f"storage root must be an absolute path: {str(root)!r}")
        self.root = root
        self.url = root.as_uri()

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def _blob_path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def _staging_path(self, upload_id: str) -> Path:
        return self.root / staging_key(upload_id)

    # --- blobs

    def exists(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def stat(self, digest: str) -> BlobInfo:
        try:
            st = self._blob_path(digest).stat()
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {digest}") from exc
        return BlobInfo(digest=digest, size=st.st_size, modified=_mtime(st))

    def open_range(
        self, digest: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        check_range(start, end, chunk_size)
        try:
            f = self._blob_path(digest).open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob {digest}") from exc
        # Opened eagerly so a missing blob fails before the caller sends response headers.
        return _read_file(f, start, end, chunk_size)

    def local_path(self, digest: str) -> Path:
        """The blob's file. Raises BlobNotFound."""
        path = self._blob_path(digest)
        if not path.is_file():
            raise BlobNotFound(f"no blob {digest}")
        return path

    def presigned_url(self, digest: str, *, expires: int = 300, filename: str | None = None) -> None:
        validate_digest(digest)

    def delete(self, digest: str) -> None:
        with _os_errors("deleting a blob"):
            self._blob_path(digest).unlink(missing_ok=True)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        base = self.root / "blobs" / "sha256"
        for fan in _listdir(base):
            for name in _listdir(base / fan):
                if not is_digest(name) or name[:2] != fan:
                    continue  # foreign files are not blobs
                try:
                    st = (base / fan / name).stat()
                except FileNotFoundError:
                    continue  # deleted while we walked
                yield BlobInfo(digest=name, size=st.st_size, modified=_mtime(st))

    def check(self) -> None:
        """Raise StorageError unless the root (and its subdirectories) can be written."""
        with _os_errors("storage directory check"):
            self.root.mkdir(parents=True, exist_ok=True)
            for path in (self.root, self.root / "blobs", self.root / "uploads"):
                if path.is_dir():
                    # A real write: os.access lies for root and on some network filesystems.
                    with tempfile.TemporaryFile(dir=path, prefix=".probe-") as probe:
                        probe.write(b"ok")
                        probe.flush()

    # --- staging

    def begin_upload(self, upload_id: str) -> str:
        path = self._staging_path(upload_id)
        with _os_errors("starting an upload"):
            path.parent.mkdir(parents=True, exist_ok=True)
            # Truncate: a reused id starts from nothing rather than old bytes.
            path.open("wb").close()
        return ""

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
        if offset < 0 or index < 0:
            raise ValueError("offset and index must not be negative")
        path = self._staging_path(upload_id)
        try:
            f = path.open("r+b")
        except FileNotFoundError as exc:
            raise UploadNotFound(f"no staged upload {upload_id}") from exc
        except OSError as exc:
            raise StorageError("staging a chunk failed") from exc
        written = 0
        with f:
            with _os_errors("staging a chunk"):
                size = os.fstat(f.fileno()).st_size
                if size < offset:
                    raise StorageError(f"upload {upload_id} has {size} staged bytes, fewer than offset {offset}")
                # Drop whatever a cut or uncommitted earlier attempt left past the offset.
                f.truncate(offset)
                f.seek(offset)
            for piece in chunks:
                with _os_errors("staging a chunk"):
                    f.write(piece)
                written += len(piece)
            with _os_errors("staging a chunk"):
                f.flush()
                # The hub records the new offset as durable once we return.
                os.fsync(f.fileno())
        return written

    def read_staged(self, upload_id: str, token: str, *, size: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        path = self._staging_path(upload_id)
        try:
            f = path.open("rb")
        except FileNotFoundError as exc:
            raise UploadNotFound(f"no staged upload {upload_id}") from exc
        staged = os.fstat(f.fileno()).st_size
        if staged < size:
            f.close()
            raise StorageError(f"upload {upload_id} has {staged} staged bytes, not {size}")
        return _read_file(f, 0, size, chunk_size)

    def commit(self, upload_id: str, token: str, *, digest: str, size: int) -> None:
        target = self._blob_path(digest)
        staged = self._staging_path(upload_id)
        with contextlib.suppress(OSError):
            if staged.samefile(target):  # a retry after a crash between link and unlink
                staged.unlink()
                return
        try:
            f = staged.open("r+b")
        except FileNotFoundError as exc:
            # A retried commit whose first attempt finished: the blob is there already.
            if _size_or_none(target) == size:
                return
            raise UploadNotFound(f"no staged upload {upload_id}") from exc
        except OSError as exc:
            raise StorageError("committing an upload failed") from exc
        with f, _os_errors("committing an upload"):
            have = os.fstat(f.fileno()).st_size
            if have < size:
                raise StorageError(f"upload {upload_id} has {have} staged bytes, not {size}")
            # Only the first `size` bytes were verified; anything after them is junk.
            if have > size:
                f.truncate(size)
            os.fsync(f.fileno())
        with _os_errors("committing an upload"):
            target.parent.mkdir(parents=True, exist_ok=True)
            if _link_no_replace(staged, target):
                # Read-only, so nothing that is handed the path can change a verified blob.
                target.chmod(stat_mod.S_IRUSR | stat_mod.S_IRGRP | stat_mod.S_IROTH)
            staged.unlink(missing_ok=True)
            _fsync_dir(target.parent)

    def abort_upload(self, upload_id: str, token: str) -> None:
        with _os_errors("aborting an upload"):
            self._staging_path(upload_id).unlink(missing_ok=True)

    def iter_staged(self) -> Iterator[StagedInfo]:
        base = self.root / "uploads"
        for name in _listdir(base):
            if not is_upload_id(name):
                continue
            try:
                st = (base / name).stat()
            except FileNotFoundError:
                continue
            yield StagedInfo(upload_id=name, size=st.st_size, modified=_mtime(st))


def _read_file(f: BinaryIO, start: int, end: int | None, chunk_size: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            want = chunk_size if remaining is None else min(chunk_size, remaining)
            try:
                piece = f.read(want)
            except OSError as exc:
                raise StorageError("reading from storage failed") from exc
            if not piece:
                return
            if remaining is not None:
                remaining -= len(piece)
            yield piece


def _link_no_replace(source: Path, target: Path) -> bool:
    """Put ``source`` at ``target`` unless ``target`` exists (never overwrite); True if put."""
    try:
        # link() fails atomically if the target exists, so two racing commits of the
        # same digest cannot replace each other's file.
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # Filesystems without hard links: a racing commit of the same digest can only
        # replace it with identical verified bytes.
        if target.exists():
            return False
        os.replace(source, target)
    return True


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
