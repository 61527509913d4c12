"""The local cache: content-addressed blobs and one snapshot directory per package version.

Layout under ``root`` (``CVFLOW_HOME/cache``)::

    blobs/sha256/<digest>                  the bytes, read-only, named by their sha256
    snapshots/<namespace>/<name>/<version>/
        <path>                             hard links to the blobs (copies where links fail)
        .cvflow-version.json               the hub's version document, for offline use
        .cvflow-stamps.json                inode, size and mtime of each file when last verified
    index/<namespace>/<name>.json          the package metadata last seen online
    tmp/<digest>.incomplete                downloads in progress, resumed with a Range request
    locks/<digest>.lock                    one writer per large blob, across processes
    locks/small-<xx>.lock                  one writer per small blob: 256 locks, by digest prefix
    locks/cache.lock                       shared by every writer, exclusive for ``prune``

A blob is renamed into ``blobs/`` only once its bytes hash to its name, so a path there is
always complete. A snapshot is built in ``tmp/`` and renamed into place, so a snapshot that
exists is complete. Verified blobs get an mtime a second in the past: any later write moves
the mtime, so comparing a snapshot's files with its stamps (a ``stat`` per file) tells
whether something changed them since, without hashing them again. POSIX only (``flock``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cvflow.errors import CVFlowError, IntegrityError, InvalidVersionError
from cvflow.locks import file_lock
from cvflow.names import PackageName, normalize_name, package_key
from cvflow.paths import SHA256_RE, FileEntry, validate_file_list
from cvflow.transfer import DEFAULT_POLICY, DiskFullError, RetryPolicy, download
from cvflow.transfer import write_all as _write  # the one function downloads write with (a test seam)
from cvflow.versions import Version

if TYPE_CHECKING:
    from cvflow.api import HubClient

__all__ = ["STAMPS_FILE", "VERSION_FILE", "BlobBatch", "Cache", "CachedVersion", "DiskFullError"]

VERSION_FILE = ".cvflow-version.json"
STAMPS_FILE = ".cvflow-stamps.json"


class CachedVersion(NamedTuple):
    name: str
    version: str
    size: int


def _stable_mtime_ns() -> int:
    # A whole second in the past: every later write sets a newer mtime, even on coarse clocks.
    return (int(time.time()) - 1) * 1_000_000_000


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        # One line, not indented: only then does json use its C encoder (a 10,000-file snapshot's stamps)
        f.write(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _version_key(version: str) -> tuple[Any, ...]:
    try:
        return (0, Version.parse(version).key)
    except InvalidVersionError:
        return (1, version)


class Cache:
    """The cache under ``root``. Safe to share between threads and processes."""

    def __init__(self, root: Path, *, fsync: bool = True, retry: RetryPolicy = DEFAULT_POLICY) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.retry = retry
        self._verified: dict[str, tuple[int, int]] = {}  # digest -> (inode, mtime) hashed ok here
        self._memo_lock = threading.Lock()
        self._writers_lock = threading.Lock()
        self._writers = 0  # writing() blocks running; the first takes the shared lock, the last drops it
        self._held: contextlib.ExitStack | None = None

    # -- where things are

    def blob_path(self, digest: str) -> Path:
        if not SHA256_RE.match(digest):
            raise IntegrityError(f"{digest!r} is not a sha256 digest")
        return self.root / "blobs" / "sha256" / digest

    def snapshot_path(self, name: str, version: str) -> Path:
        package = PackageName.parse(name)
        Version.parse(version)  # also keeps '/' and '..' out of the path
        return _spelled(self.root / "snapshots" / package.namespace, package.name) / version

    def _metadata_path(self, name: str) -> Path:
        package = PackageName.parse(name)
        return _spelled(self.root / "index" / package.namespace, package.name, ".json")

    def _tmp(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the cache's shared lock: ``prune`` waits until the block ends.

        The blocks of one Cache share one lock, held while any of them runs: a pull of
        10,000 blobs takes it once, not once per blob.
        """
        with self._writers_lock:
            if self._writers == 0:
                held = contextlib.ExitStack()
                held.enter_context(file_lock(self.root / "locks" / "cache.lock", shared=True))
                self._held = held
            self._writers += 1
        try:
            yield
        finally:
            with self._writers_lock:
                self._writers -= 1
                if self._writers == 0 and self._held is not None:
                    held, self._held = self._held, None
                    held.close()

    # -- metadata seen online

    def save_metadata(self, name: str, doc: dict[str, Any]) -> None:
        """Keep the package metadata last seen online, for offline resolution."""
        _write_json(self._metadata_path(name), doc)

    def load_metadata(self, name: str) -> dict[str, Any] | None:
        doc = _read_json(self._metadata_path(name))
        return doc if isinstance(doc, dict) else None

    # -- blobs

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def verify(self, digest: str) -> bool:
        """Hash the cached blob again; False if it is missing or its bytes changed."""
        path = self.blob_path(digest)
        try:
            with path.open("rb") as f:
                st = os.fstat(f.fileno())
                actual = hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            return False
        if not hmac.compare_digest(actual, digest):
            return False
        if st.st_mtime_ns >= _stable_mtime_ns():  # too recent to tell a later write apart
            with contextlib.suppress(OSError):
                os.utime(path, ns=(st.st_atime_ns, _stable_mtime_ns()))
        self._remember(digest)
        return True

    def was_verified(self, digest: str) -> bool:
        """True if this Cache hashed the blob (or downloaded it) and it has not changed since."""
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        with self._memo_lock:
            return self._verified.get(digest) == (st.st_ino, st.st_mtime_ns)

    def _remember(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = self.blob_path(digest).stat()
            with self._memo_lock:
                self._verified[digest] = (st.st_ino, st.st_mtime_ns)

    def _blob_lock(self, digest: str, size: int) -> contextlib.AbstractContextManager[None]:
        """One writer per blob, across threads and processes, by the blob's digest and size.

        A blob under :attr:`BlobBatch.largest` takes one of 256 shared locks (by its digest's
        first two hex digits): creating a lock file of its own cost more than fetching a 4 KiB
        blob (about 0.4 ms on ext4), and a small blob's download is short enough to wait for.
        A large one has its own lock file, so one long download holds up nothing else.
        """
        name = f"small-{digest[:2]}.lock" if size < BlobBatch.largest else f"{digest}.lock"
        return file_lock(self.root / "locks" / name)

    def discard(self, digest: str) -> None:
        """Remove a blob (a corrupted one); snapshots that link it are rebuilt on their next pull."""
        # The blob's true size is not known here (a corrupted copy's may differ): both locks a
        # fetch of it may hold, shared one first (every holder of both takes them in that order).
        with (self.writing(), self._blob_lock(digest, 0),
              file_lock(self.root / "locks" / f"{digest}.lock")):
            self.blob_path(digest).unlink(missing_ok=True)
        with self._memo_lock:
            self._verified.pop(digest, None)

    def fetch_blob(
        self, client: HubClient, url_path: str, digest: str, size: int, *,
        progress: Callable[[int], None] | None = None, log: Callable[[str], None] | None = None,
        label: str | None = None, batch: BlobBatch | None = None,
    ) -> Path:
        """The blob ``digest``, downloaded from ``url_path`` unless the cache has it.

        A partial download in ``tmp/`` is resumed with a Range request; transient failures
        (a cut, a timeout, 5xx, 429) are tried again with backoff as ``self.retry`` says (see
        :mod:`cvflow.transfer`). ``progress`` receives byte counts. With ``batch`` (from
        :meth:`batch`), a blob smaller than :attr:`BlobBatch.largest` is verified but enters
        ``blobs/`` only when the batch commits: the returned path exists after that.

        Raises:
            IntegrityError: the bytes do not hash to ``digest`` (nothing is kept).
            DiskFullError: the disk filled up (the partial file stays, for a resume).
            HubError: the hub refused or the download kept failing.
        """
        final = self.blob_path(digest)
        if self.has_blob(digest, size):
            return final
        deferred = batch is not None and self.fsync and size < batch.largest
        with self.writing(), self._blob_lock(digest, size):
            if self.has_blob(digest, size):  # another process or thread finished it meanwhile
                return final
            final.unlink(missing_ok=True)  # a blob of the wrong size is a corrupted one
            partial = self._tmp() / f"{digest}.incomplete"
            download(client, url_path, partial, digest=digest, size=size, dest=None if deferred else final,
                     seal=_seal, fsync=self.fsync and not deferred, policy=self.retry, progress=progress,
                     log=log, what=label or digest[:12], write=_write,
                     full_hint="free some space (`cvflow cache prune`)")
            if deferred:
                _seal(partial)
        if batch is not None and deferred:
            batch.add(digest, size)
        else:
            self._remember(digest)
        return final

    @contextlib.contextmanager
    def batch(self) -> Iterator[BlobBatch]:
        """Blobs fetched with this batch reach the disk together: one file-system sync, then renames.

        Each small blob is downloaded and verified into ``tmp/`` without its own fsync; a commit
        (every :attr:`BlobBatch.most` blobs, and when the block ends, even by an error) syncs the
        file system once, renames them into ``blobs/`` and fsyncs that folder. A blob is thus
        never named by its digest before its bytes are durable, as with one fsync per blob.
        """
        batch = BlobBatch(self)
        try:
            yield batch
        except BaseException:
            with contextlib.suppress(OSError, CVFlowError):  # what stays in tmp/ is resumed next time
                batch.commit()
            raise
        batch.commit()

    # -- snapshots

    def read_version(self, snapshot: Path) -> dict[str, Any] | None:
        """The version document saved in a snapshot directory, or None."""
        doc = _read_json(Path(snapshot) / VERSION_FILE)
        return doc if isinstance(doc, dict) else None

    def version_docs(self, name: str) -> list[dict[str, Any]]:
        """The version documents of every snapshot of ``name`` in the cache."""
        package = PackageName.parse(name)
        folder = self.root / "snapshots" / package.namespace / package.name
        docs = [self.read_version(child) for child in sorted(folder.iterdir())] if folder.is_dir() else []
        return [d for d in docs if d is not None]

    def cached_snapshot(self, name: str, version: str) -> Path | None:
        """The snapshot of ``name@version`` if it exists and nothing changed it since it was built."""
        path = self.snapshot_path(name, version)
        doc, stamps = self.read_version(path), _read_json(path / STAMPS_FILE)
        if doc is None or not isinstance(stamps, dict):
            return None
        try:
            for entry in _entries(doc):
                st = (path / entry.path).stat()
                stamp = stamps[entry.path]
                if [st.st_ino, st.st_size, st.st_mtime_ns] != stamp["stat"] or st.st_size != entry.size:
                    return None
                if stamp["linked"] and self.blob_path(entry.sha256).stat().st_ino != st.st_ino:
                    return None
        except (OSError, KeyError, TypeError, CVFlowError):
            return None
        return path

    def snapshot(self, name: str, version_doc: dict[str, Any]) -> Path:
        """Build the snapshot of a version whose blobs are all cached; replaces an older one.

        Raises:
            CVFlowError: a blob is missing from the cache; InvalidPathError: a bad file list.
        """
        version = str(version_doc["version"])
        entries = _entries(version_doc)
        final = self.snapshot_path(name, version)
        lock = self.root / "locks" / "snapshots" / final.relative_to(self.root / "snapshots")
        with self.writing(), file_lock(lock.with_name(lock.name + ".lock")):
            existing = self.cached_snapshot(name, version)
            if existing and (self.read_version(existing) or {}).get("files") == version_doc.get("files"):
                return existing  # a concurrent pull built it while we downloaded
            build = Path(tempfile.mkdtemp(prefix="snapshot-", dir=self._tmp()))
            try:
                self._build_snapshot(name, version, version_doc, entries, build, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise DiskFullError(f"no space left on device while building the snapshot of {name}@{version}"
                                    f" in {self.root}; free some space and pull again") from exc
            finally:
                shutil.rmtree(build, ignore_errors=True)
        return final

    def _build_snapshot(self, name: str, version: str, version_doc: dict[str, Any], entries: list[FileEntry],
                        build: Path, final: Path) -> None:
        stamps = {}
        for entry in entries:
            blob = self.blob_path(entry.sha256)
            if not blob.exists():
                raise CVFlowError(f"{name}@{version}: {entry.path} ({entry.sha256}) is not in the cache")
            dest = build / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            linked = _link_or_copy(blob, dest)
            st = dest.stat()
            stamps[entry.path] = {"stat": [st.st_ino, st.st_size, st.st_mtime_ns], "linked": linked}
        _write_json(build / VERSION_FILE, version_doc)
        _write_json(build / STAMPS_FILE, stamps)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a damaged snapshot: move it aside, then put the new one in its place
            old = Path(tempfile.mkdtemp(prefix="old-", dir=self._tmp()))
            os.replace(final, old / "snapshot")
            os.rename(build, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(build, final)

    # -- housekeeping

    def _snapshots(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        base = self.root / "snapshots"
        for path in sorted(base.glob("*/*/*")):
            doc = self.read_version(path)
            if doc is not None:
                yield path, doc

    def ls(self) -> list[CachedVersion]:
        """Every cached version with the total size of its files, by name then version."""
        found = []
        for path, doc in self._snapshots():
            name = f"{path.parent.parent.name}/{path.parent.name}"
            size = sum(int(f.get("size") or 0) for f in doc.get("files") or [])
            found.append(CachedVersion(name, path.name, size))
        return sorted(found, key=lambda v: (v.name, _version_key(v.version)))

    def verify_all(self) -> list[str]:
        """Hash every blob again; remove and return the digests of those whose bytes changed."""
        bad = []
        with self.writing():
            for blob in sorted((self.root / "blobs" / "sha256").glob("*")):
                if SHA256_RE.match(blob.name) and not self.verify(blob.name):
                    bad.append(blob.name)
        for digest in bad:
            self.discard(digest)
        return bad

    def prune(self, keep: Iterable[tuple[str, str]], *, dry_run: bool = False) -> int:
        """Remove every snapshot not in ``keep``, blobs no kept snapshot uses, and ``tmp/``.

        Returns the bytes freed (or that would be, with ``dry_run``). Waits for running pulls.
        """
        wanted = {(package_key(str(n)), str(v)) for n, v in keep}
        with file_lock(self.root / "locks" / "cache.lock"):
            doomed: list[Path] = []
            referenced: set[str] = set()
            for path, doc in self._snapshots():
                if (package_key(f"{path.parent.parent.name}/{path.parent.name}"), path.name) in wanted:
                    referenced.update(str(f.get("sha256")) for f in doc.get("files") or [])
                else:
                    doomed.append(path)
            blobs = [b for b in (self.root / "blobs" / "sha256").glob("*") if b.name not in referenced]
            tmp = [p for p in (self.root / "tmp").glob("*")]
            files = [f for d in doomed + tmp for f in _walk_files(d)] + blobs
            freed = _freed_bytes(files)
            if dry_run:
                return freed
            for path in doomed + tmp:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            for blob in blobs:
                blob.unlink()
                (self.root / "locks" / f"{blob.name}.lock").unlink(missing_ok=True)
            for path in doomed:  # drop emptied package folders
                for folder in (path.parent, path.parent.parent):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        with self._memo_lock:
            self._verified.clear()
        return freed


class BlobBatch:
    """Verified small blobs waiting in ``tmp/`` for one sync (see :meth:`Cache.batch`). Thread-safe."""

    largest = 16 << 20  # bytes: larger blobs are fsynced on their own, as they arrive
    most = 2000  # blobs: a commit at least this often

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._pending: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def add(self, digest: str, size: int) -> None:
        with self._lock:
            self._pending.append((digest, size))
            full = len(self._pending) >= self.most
        if full:
            self.commit()

    def commit(self) -> None:
        """Sync the file system, then rename every pending blob into ``blobs/``.

        Raises:
            CVFlowError: a pending blob vanished from ``tmp/`` and the cache does not have it.
        """
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        cache = self._cache
        tmp = cache._tmp()
        _sync_files(tmp, [tmp / f"{d}.incomplete" for d, _ in pending])
        folder = cache.blob_path(pending[0][0]).parent
        folder.mkdir(parents=True, exist_ok=True)
        for digest, size in pending:
            with cache._blob_lock(digest, size):
                try:
                    os.replace(tmp / f"{digest}.incomplete", cache.blob_path(digest))
                except FileNotFoundError:
                    if not cache.has_blob(digest, size):  # another process stored it meanwhile: fine
                        raise CVFlowError(f"the download of {digest} vanished from {tmp}; pull again") from None
        _fsync_path(folder)
        for digest, _ in pending:
            cache._remember(digest)


def _seal(partial: Path) -> None:
    """Read-only, with a stable mtime (see the module docstring)."""
    partial.chmod(0o444)
    stable = _stable_mtime_ns()
    os.utime(partial, ns=(stable, stable))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(fd)`` (one journal commit for a whole file system), or None elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


_SYNCFS = _syncfs() if os.name == "posix" else None


def _sync_files(folder: Path, files: list[Path]) -> None:
    """Make the bytes and metadata of ``files`` (all in ``folder``) durable: one syncfs, else fsync each."""
    if _SYNCFS is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in files:
        with contextlib.suppress(FileNotFoundError):  # another process stored it: its own fsync did
            _fsync_path(path)


def _spelled(folder: Path, name: str, suffix: str = "") -> Path:
    """``folder/<name><suffix>``, or the look-alike spelling of it already there (``a_b`` for
    ``a-b``): every spelling of a package shares one snapshot folder and one metadata file."""
    exact = folder / f"{name}{suffix}"
    if exact.exists():
        return exact
    key = normalize_name(name)
    with contextlib.suppress(OSError):
        for entry in sorted(folder.iterdir()):
            stem = entry.name.removesuffix(suffix) if suffix else entry.name
            if (not suffix or entry.name.endswith(suffix)) and normalize_name(stem) == key:
                return entry
    return exact


def _entries(version_doc: dict[str, Any]) -> list[FileEntry]:
    # The hub's file list decides paths under the snapshot: never trust it without the path rules.
    files = [{k: f.get(k) for k in ("path", "size", "sha256")} for f in version_doc.get("files") or []]
    return validate_file_list(files, portable=False)  # a version from before the Windows rule stays readable


def _link_or_copy(blob: Path, dest: Path) -> bool:
    """Hard-link ``blob`` at ``dest`` (True), or copy it where links are impossible (False)."""
    try:
        os.link(blob, dest)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
    shutil.copyfile(blob, dest)
    dest.chmod(0o444)
    st = blob.stat()
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    return False


def _walk_files(path: Path) -> Iterator[Path]:
    if path.is_dir() and not path.is_symlink():
        for parent, _, names in os.walk(path):
            for name in names:
                yield Path(parent) / name
    elif path.exists():
        yield path


def _freed_bytes(files: Iterable[Path]) -> int:
    """Bytes given back when all of ``files`` are removed: inodes that lose their last link."""
    removed: dict[tuple[int, int], list[int]] = {}  # (dev, inode) -> [links removed, links, size]
    for path in files:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        entry = removed.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size])
        entry[0] += 1
    return sum(size for gone, links, size in removed.values() if gone >= links)
