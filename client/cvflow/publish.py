"""Publishing a package directory: check it, upload the blobs the hub lacks, commit the version.

Uploads resume across runs. From the moment the hub opens an upload session until the
blob is stored, its location is kept in ``<state_dir>/uploads/<sha256>.json``; a publish
that was cut off (Ctrl-C, a dropped connection, a crash) asks the hub for the committed
offset on the next run and sends only the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from cvflow.api import HubClient
from cvflow.errors import HubError, HubNotFoundError, ManifestError, ValidationError
from cvflow.manifest import (
    MANIFEST_FILENAME,
    Manifest,
    check_files_against_manifest,
    load_package_dir,
    parse_manifest,
)
from cvflow.package import scan_package_files
from cvflow.paths import FileEntry, validate_file_list
from cvflow.progress import SILENT, Transfer, format_size

__all__ = ["PackageDir", "UploadState", "check_package_dir", "package_url", "publish_dir"]

#: Blobs uploaded at once by :func:`publish_dir`.
UPLOAD_THREADS = 2
#: Blobs of at most ``BATCH_BLOB`` bytes go up whole, many per request (``POST /api/v1/blobs``),
#: in batches of at most ``BATCH_BYTES`` and ``BATCH_COUNT`` blobs; larger ones in upload sessions.
BATCH_BLOB = 1 << 20
BATCH_BYTES = 16 << 20
BATCH_COUNT = 1000


@dataclass
class PackageDir:
    """A package directory whose manifest and files passed every check."""

    root: Path
    manifest: Manifest
    files: list[FileEntry]
    #: Files sent to the hub that are not on disk: the ``cvflow.toml`` made from a legacy
    #: ``cvpm.toml``, since the hub reads only ``cvflow.toml``.
    generated: dict[str, bytes] = field(default_factory=dict)

    @property
    def manifest_text(self) -> str:
        """The ``cvflow.toml`` text the hub receives."""
        if MANIFEST_FILENAME in self.generated:
            return self.generated[MANIFEST_FILENAME].decode()
        return (self.root / MANIFEST_FILENAME).read_bytes().decode("utf-8")

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def open(self, entry: FileEntry) -> BinaryIO:
        if entry.path in self.generated:
            return io.BytesIO(self.generated[entry.path])
        return (self.root / entry.path).open("rb")


def check_package_dir(directory: str | Path, *, namespace: str | None = None) -> PackageDir:
    """Read and check the package in ``directory`` the way the hub will: manifest, file
    list, and the manifest against the files. Hashes every file.

    Raises:
        ManifestError: no manifest, or an invalid one (every problem listed).
        ValidationError: the files break a rule or disagree with the manifest (every
            problem listed, manifest problems included).
    """
    root = Path(directory)
    try:
        manifest: Manifest | None = load_package_dir(root, namespace=namespace)
        bad_manifest = None
    except ManifestError as exc:
        if not any(p.field for p in exc.problems):
            raise  # no manifest, or one that cannot be read at all: nothing to add to that
        manifest, bad_manifest = None, exc
    files, problems = scan_package_files(root)
    try:
        validate_file_list([dataclasses.asdict(f) for f in files])
    except ValidationError as exc:
        problems.extend(exc.problems)
    # The manifest check still runs on a bad file list, and the files are checked under a bad
    # manifest, so one run shows everything.
    if manifest is not None:
        problems.extend(check_files_against_manifest(manifest, files))
    if bad_manifest is not None:
        if not problems:
            raise bad_manifest
        problems = [*bad_manifest.problems, *problems]
        raise ManifestError(f"the package in {root} has {len(problems)} problems", problems)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise ValidationError(f"the package in {root} has {len(problems)} {noun}", problems)
    assert manifest is not None  # a bad manifest raised above
    return PackageDir(root, manifest, files)


def for_hub(package: PackageDir) -> PackageDir:
    """The package as the hub takes it: a legacy CVPM package gets a ``cvflow.toml``.

    Raises:
        ManifestError: the legacy manifest cannot be expressed as a ``cvflow.toml`` (a URL
            weight without ``sha256`` and ``size``, a missing description).
    """
    if not package.manifest.legacy:
        return package
    text = package.manifest.to_toml()
    try:
        parse_manifest(text)
    except ManifestError as exc:
        raise ManifestError(
            "the legacy manifest cannot be published as it is: the hub needs what cvflow.toml requires"
            " (add sha256 and size to each model in pretrained.toml, and a description to cvpm.toml)",
            exc.problems,
        ) from exc
    data = text.encode()
    generated = {MANIFEST_FILENAME: data}
    entry = FileEntry(MANIFEST_FILENAME, len(data), hashlib.sha256(data).hexdigest())
    files = sorted([*package.files, entry], key=lambda f: f.path)
    return PackageDir(package.root, package.manifest, files, generated)


def package_url(hub: str, name: str, version: str) -> str:
    """Where a published version lives on the hub."""
    return f"{hub.rstrip('/')}/api/v1/packages/{name}/versions/{quote(version)}"


class UploadState:
    """Upload sessions in flight, one JSON file per blob: ``<root>/<sha256>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / f"{digest}.json"

    def load(self, digest: str, *, hub: str, size: int) -> str | None:
        """The location of an earlier upload of this blob to this hub, if one is kept."""
        try:
            data = json.loads(self._path(digest).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("hub") != hub or data.get("size") != size:
            return None
        location = data.get("location")
        return location if isinstance(location, str) and location.startswith("/") else None

    def save(self, digest: str, *, hub: str, size: int, location: str, path: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"hub": hub, "size": size, "location": location, "path": path})
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{digest[:16]}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.replace(tmp, self._path(digest))

    def forget(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(digest).unlink()


def publish_dir(
    client: HubClient,
    directory: str | Path,
    *,
    state_dir: Path,
    private: bool | None = None,
    namespace: str | None = None,
    progress: Transfer | None = None,
) -> dict[str, Any]:
    """Publish the package in ``directory``: check it like ``cvflow validate``, upload the
    blobs the hub lacks (largest first, :data:`UPLOAD_THREADS` at a time, resuming uploads kept
    in ``state_dir/uploads``), then commit the version.

    ``private`` applies to a new package (None: the hub's default, public). ``namespace``
    is for a legacy CVPM package. ``progress`` receives bars and log lines.

    Returns ``{"package", "version", "url", "files", "size", "uploaded", "present"}``;
    ``uploaded`` lists ``{"path", "size", "sha256", "resumed_from"}`` per blob sent.

    Raises:
        ManifestError, ValidationError: the package is not valid; nothing was uploaded.
        HubAuthError: no token, or one that may not publish here.
        HubConflictError: the version is already published (``code == "version_exists"``).
        HubError: any other refusal by the hub; HubUnavailableError when it cannot be reached.
    """
    progress = progress or SILENT
    package = for_hub(check_package_dir(directory, namespace=namespace))
    manifest = package.manifest
    state = UploadState(state_dir / "uploads")
    by_digest: dict[str, FileEntry] = {}
    for entry in package.files:
        by_digest.setdefault(entry.sha256, entry)
    missing = client.missing_blobs(by_digest)
    for digest in by_digest.keys() - missing:
        state.forget(digest)  # stored by now (maybe by someone else); the session is moot
    todo = sorted((by_digest[d] for d in missing), key=lambda e: (-e.size, e.path))
    todo_bytes = sum(e.size for e in todo)
    progress.log(
        f"{manifest.name} {manifest.version}: {len(package.files)} files ({format_size(package.total_size)});"
        f" {len(todo)} to upload ({format_size(todo_bytes)}), {len(by_digest) - len(todo)} already on the hub"
    )
    overall = progress.add(f"{len(todo)} files", todo_bytes) if len(todo) > 1 else None
    large = [e for e in todo if e.size > BATCH_BLOB]
    small = todo[len(large):]  # todo is largest first
    resumed = _upload_all(client, package, large, state, progress, overall)
    if _upload_batches(client, package, small, state, progress, overall):
        resumed += [None] * len(small)
    else:  # a hub without batch uploads
        resumed += _upload_all(client, package, small, state, progress, overall)
    uploaded = [{**dataclasses.asdict(entry), "resumed_from": r} for entry, r in zip(todo, resumed, strict=True)]
    doc = client.publish(
        str(manifest.name), package.manifest_text, [dataclasses.asdict(f) for f in package.files], private=private
    )
    version = str(doc.get("version") or manifest.version)
    return {
        "package": str(manifest.name),
        "version": version,
        "url": package_url(client.base_url, str(manifest.name), version),
        "files": len(package.files),
        "size": package.total_size,
        "uploaded": uploaded,
        "present": len(by_digest) - len(todo),
    }


def _upload_batches(
    client: HubClient, package: PackageDir, todo: list[FileEntry], state: UploadState, progress: Transfer,
    overall: int | None,
) -> bool:
    """Upload the small blobs ``todo`` whole, many per request; False (nothing sent) when the
    hub has no batch endpoint.

    Each file is read and hashed again as it goes: one that changed since it was hashed stops
    the publish, naming the file, before its batch is sent (the hub would refuse the batch).
    """
    if not todo:
        return True
    batches: list[list[FileEntry]] = [[]]
    size = 0
    for entry in todo:
        if batches[-1] and (size + entry.size > BATCH_BYTES or len(batches[-1]) == BATCH_COUNT):
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += entry.size
    for batch in batches:
        blobs = []
        for entry in batch:
            with package.open(entry) as source:
                data = source.read(entry.size + 1)
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                raise HubError(f"{entry.path} changed since it was hashed; run publish again",
                               code="digest_mismatch")
            blobs.append((entry.sha256, data))
        if not client.upload_batch(blobs):
            return False
        for entry in batch:
            state.forget(entry.sha256)  # a session an earlier run left for it is moot now
        if overall is not None:
            progress.advance(overall, sum(e.size for e in batch))
    return True


class _Stopped(Exception):
    """Raised in an upload thread, between two pieces, once another upload failed or was interrupted."""


def _upload_all(
    client: HubClient, package: PackageDir, todo: list[FileEntry], state: UploadState, progress: Transfer,
    overall: int | None,
) -> list[int | None]:
    """Upload ``todo`` (largest first), :data:`UPLOAD_THREADS` at a time; returns each one's resume offset.

    Several uploads at once keep the hub busy while one of them waits for its chunk to reach
    the disk (the hub fsyncs each chunk before it answers). The first error, or a Ctrl-C,
    stops the others at their next 1 MiB piece; every session stays resumable.
    """
    if len(todo) <= 1 or UPLOAD_THREADS <= 1:
        return [_upload(client, package, entry, state, progress, overall) for entry in todo]
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=min(UPLOAD_THREADS, len(todo)), thread_name_prefix="cvflow-upload") as pool:
        futures = [pool.submit(_upload, client, package, entry, state, progress, overall, stop) for entry in todo]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            # An error or a Ctrl-C: the uploads under way stop at their next piece, the rest never start.
            if not all(f.done() for f in futures):
                stop.set()
                for future in futures:
                    future.cancel()
    errors: list[BaseException] = []
    for future in futures:
        if not future.cancelled() and (error := future.exception()) is not None:
            errors.append(error)
    if errors:
        # The first real error is the one to report; the others only stopped because of it.
        raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
    return [f.result() for f in futures]


def _upload(
    client: HubClient, package: PackageDir, entry: FileEntry, state: UploadState, progress: Transfer,
    overall: int | None, stop: threading.Event | None = None,
) -> int | None:
    """Upload one blob, resuming a kept session; returns the offset it resumed from."""
    location = state.load(entry.sha256, hub=client.base_url, size=entry.size)
    resumed_from = None
    if location is not None:
        try:
            resumed_from = client.upload_offset(location)
        except HubNotFoundError:
            location = None  # expired or finished on the hub; start again
        else:
            progress.log(
                f"resuming {entry.path} at {format_size(resumed_from)} of {format_size(entry.size)}"
            )
    task = progress.add(entry.path, entry.size)

    def advance(n: int) -> None:
        if stop is not None and stop.is_set():
            raise _Stopped(entry.path)
        progress.advance(task, n)
        if overall is not None:
            progress.advance(overall, n)

    def keep(new_location: str) -> None:
        state.save(entry.sha256, hub=client.base_url, size=entry.size, location=new_location, path=entry.path)

    try:
        with package.open(entry) as source:
            client.upload_file(
                source, entry.size, entry.sha256, location=location, progress=advance, on_location=keep
            )
    except HubError as exc:
        if exc.code in ("digest_mismatch", "size_mismatch"):
            state.forget(entry.sha256)  # the hub dropped the session; the file changed under us
            raise HubError(
                f"{entry.path} changed while it was uploaded; run publish again ({exc.message})",
                code=exc.code, status=exc.status, details=exc.details,
            ) from exc
        raise
    state.forget(entry.sha256)
    return resumed_from
