"""Air-gap bundles: packages, versions and blobs in one file, with a manifest of digests.

A bundle is an uncompressed POSIX tar (weights do not compress) holding, in this order::

    cvflow-bundle.json          the manifest: format, source, what was asked for, each
                                package's version documents (manifest text, files with
                                size and sha256, dependencies, yank state), every blob's size
    blobs/<sha256>              each blob once, named by its digest

Hubs (``cvflow-hub export`` / ``import``) and clients (``cvflow bundle`` / ``cvflow install
--from``) write and read the same format, so a client bundle can seed a hub and a hub export
can feed an edge machine. Reading checks everything before anything is kept: the manifest's
shape and the publish rules for paths, that every member is a listed blob of the listed
size, that none is missing, and each blob's bytes against its name while they stream. A
bundle changed after it was written fails with :class:`BundleError`. To catch a bundle
replaced as a whole, compare its sha256 (printed when it is written) with ``--sha256``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvflow.errors import CVFlowError
from cvflow.names import PackageName
from cvflow.paths import validate_file_list
from cvflow.safeparse import MAX_DOCUMENT_DEPTH, loads_json
from cvflow.versions import Version

if TYPE_CHECKING:
    from cvflow.api import HubClient
    from cvflow.cache import Cache
    from cvflow.config import Config
    from cvflow.install import InstallReport
    from cvflow.progress import Transfer

__all__ = ["FORMAT", "MANIFEST_NAME", "BundleError", "BundleManifest", "BundleReader", "file_sha256",
           "install_from", "load_into_cache", "make_bundle", "write_bundle"]

FORMAT = "cvflow-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "cvflow-bundle.json"
MAX_MANIFEST = 64 << 20
CHUNK = 1 << 20
_BLOB = re.compile(r"\Ablobs/([0-9a-f]{64})\Z")
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")
#: What a version document keeps in a bundle (the hub's documents carry more).
_KEEP = ("version", "manifest_toml", "manifest", "files", "dependencies", "yanked", "yank_reason", "created_at",
         "prerelease", "source")


class BundleError(CVFlowError):
    """A bundle is malformed, or its bytes do not match its manifest; nothing of it was kept."""

    code = "bundle_invalid"


@dataclass
class BundleManifest:
    """What a bundle holds: ``packages`` maps a name to its version documents."""

    packages: dict[str, list[dict[str, Any]]]
    blobs: dict[str, int]
    source: str | None = None
    requested: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    @classmethod
    def build(cls, docs: Mapping[str, Iterable[Mapping[str, Any]]], *, source: str | None = None,
              requested: Mapping[str, str] | None = None) -> BundleManifest:
        packages: dict[str, list[dict[str, Any]]] = {}
        blobs: dict[str, int] = {}
        for name, versions in sorted(docs.items()):
            for doc in sorted(versions, key=lambda d: Version.parse(str(d["version"])).key):  # publishing order
                kept = {k: doc[k] for k in _KEEP if k in doc}
                kept["files"] = [{"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in doc["files"]]
                packages.setdefault(name, []).append(kept)
                blobs.update({f["sha256"]: f["size"] for f in kept["files"]})
        return cls(packages, dict(sorted(blobs.items())), source, dict(requested or {}),
                   datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def to_json(self) -> bytes:
        return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "created_at": self.created_at,
                           "source": self.source, "requested": self.requested, "packages": self.packages,
                           "blobs": self.blobs}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> BundleManifest:
        """Raises BundleError for anything but a well-formed manifest of this format."""
        try:
            data = loads_json(raw, max_depth=MAX_DOCUMENT_DEPTH)
        except (ValueError, UnicodeDecodeError) as exc:  # TooDeepError is a ValueError
            raise BundleError(f"{MANIFEST_NAME} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BundleError("this is not a CVFlow bundle")
        if data.get("format_version") != FORMAT_VERSION:
            raise BundleError(f"bundle format {data.get('format_version')!r} is not one this version reads "
                              f"({FORMAT_VERSION}); update cvflow")
        blobs, packages = data.get("blobs"), data.get("packages")
        if not isinstance(blobs, dict) or not all(
                _SHA256.match(str(d)) and isinstance(s, int) and s >= 0 for d, s in blobs.items()):
            raise BundleError("the manifest's blob list is malformed")
        if not isinstance(packages, dict):
            raise BundleError("the manifest's package list is malformed")
        for name, versions in packages.items():
            try:
                PackageName.parse(name)
                if not isinstance(versions, list) or not versions:
                    raise BundleError(f"{name}: no versions")
                for doc in versions:
                    _check_version(name, doc, blobs)
            except CVFlowError as exc:
                raise BundleError(f"the manifest is malformed: {exc.message}") from exc
        requested = data.get("requested") or {}
        if not isinstance(requested, dict):
            raise BundleError("the manifest's requested packages are malformed")
        return cls(packages, blobs, data.get("source"), requested, str(data.get("created_at") or ""))

    def versions(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, docs in self.packages.items():
            for doc in docs:
                yield name, doc

    def root(self) -> str | None:
        """The one package the bundle was made for, if there is one."""
        roots = list(self.requested) or list(self.packages)
        return roots[0] if len(roots) == 1 else None


def _check_version(name: str, doc: Any, blobs: Mapping[str, int]) -> None:
    if not isinstance(doc, dict):
        raise BundleError(f"{name}: a version entry is not an object")
    Version.parse(str(doc.get("version")))
    where = f"{name}@{doc.get('version')}"
    files = doc.get("files")
    if not isinstance(files, list):
        raise BundleError(f"{where}: no file list")
    for entry in validate_file_list([{k: f.get(k) for k in ("path", "size", "sha256")} if isinstance(f, dict) else f
                                     for f in files], portable=False):
        if blobs.get(entry.sha256) != entry.size:
            raise BundleError(f"{where}: {entry.path} names a blob the bundle does not list with that size")
    deps = doc.get("dependencies") or {}
    if not isinstance(deps, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in deps.items()):
        raise BundleError(f"{where}: malformed dependencies")
    if not isinstance(doc.get("manifest_toml", ""), str):
        raise BundleError(f"{where}: malformed manifest text")


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (for tarfile.addfile)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def write_bundle(path: Path, manifest: BundleManifest, open_blob: Callable[[str], Iterable[bytes]]) -> str:
    """Write ``manifest`` and every blob it lists (``open_blob(digest)`` gives its bytes) to
    ``path``, atomically; returns the sha256 of the file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            body = manifest.to_json()
            tar.addfile(_member(MANIFEST_NAME, len(body)), io.BytesIO(body))
            for digest, size in manifest.blobs.items():
                reader = io.BufferedReader(_ChunkReader(open_blob(digest)), CHUNK)
                tar.addfile(_member(f"blobs/{digest}", size), reader)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file_sha256(path)


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o444, int(time.time())
    return info


def file_sha256(path: Path) -> str:
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class BundleReader:
    """Reads a bundle, checking it as it goes. Raises BundleError (also from :meth:`blobs`)."""

    def __init__(self, path: Path, *, sha256: str | None = None) -> None:
        self.path = Path(path)
        if sha256 is not None:
            actual = file_sha256(self.path)
            if not hmac.compare_digest(actual, sha256.strip().lower()):
                raise BundleError(f"{self.path.name} has sha256 {actual}, not {sha256}: it is not the bundle "
                                  "that was written")
        try:
            self.tar = tarfile.open(self.path, mode="r:")  # noqa: SIM115 (closed by close())
            first = self.tar.next()
        except (OSError, tarfile.TarError) as exc:
            raise BundleError(f"{self.path.name} is not a readable bundle: {exc}") from exc
        if first is None or first.name != MANIFEST_NAME or not first.isreg() or first.size > MAX_MANIFEST:
            self.close()
            raise BundleError(f"{self.path.name} does not start with {MANIFEST_NAME}")
        raw = self.tar.extractfile(first)
        assert raw is not None
        self.manifest = BundleManifest.from_json(raw.read())

    def close(self) -> None:
        self.tar.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blobs(self) -> Iterator[tuple[str, int, Iterator[bytes]]]:
        """Each blob as ``(digest, size, chunks)``; ``chunks`` raises BundleError at its end when
        the bytes do not hash to ``digest``, so a consumer keeps them only once it ends cleanly.
        Raises BundleError for members that are not listed blobs, and for listed blobs missing."""
        seen: set[str] = set()
        try:
            while (member := self.tar.next()) is not None:  # after the manifest, read in __init__
                match = _BLOB.match(member.name)
                if not member.isreg() or not match:
                    raise BundleError(f"unexpected member {member.name[:100]!r} in the bundle")
                digest = match.group(1)
                if digest not in self.manifest.blobs or digest in seen:
                    raise BundleError(f"blob {digest} is not in the manifest, or twice in the bundle")
                if member.size != self.manifest.blobs[digest]:
                    raise BundleError(f"blob {digest} has {member.size} bytes, the manifest says "
                                      f"{self.manifest.blobs[digest]}")
                seen.add(digest)
                yield digest, member.size, self._verified(member, digest)
        except tarfile.TarError as exc:
            raise BundleError(f"the bundle is damaged: {exc}") from exc
        missing = sorted(set(self.manifest.blobs) - seen)
        if missing:
            raise BundleError(f"the bundle lacks {len(missing)} blob(s) its manifest lists, e.g. {missing[0]}")

    def _verified(self, member: tarfile.TarInfo, digest: str) -> Iterator[bytes]:
        source = self.tar.extractfile(member)
        assert source is not None
        hasher = hashlib.sha256()
        while block := source.read(CHUNK):
            hasher.update(block)
            yield block
        if not hmac.compare_digest(hasher.hexdigest(), digest):
            raise BundleError(f"blobs/{digest} does not hash to its name: the bundle was changed after it was "
                              "written; nothing of it was kept")


# -- the client's side: one package and its dependencies, for one edge machine ---------------------


@dataclass
class BundleSummary:
    path: Path
    sha256: str
    packages: dict[str, str]  # name -> version
    blobs: int
    size: int


def make_bundle(client: HubClient, cache: Cache, spec: str, out: Path, *, prereleases: bool = False,
                progress: Transfer | None = None) -> BundleSummary:
    """Resolve ``spec`` on the hub, pull it and its dependencies, and write them to ``out``.

    Raises:
        ResolutionError, HubError, IntegrityError: as ``cvflow install`` does.
    """
    from cvflow.install import parse_spec
    from cvflow.manifest import MANIFEST_FILENAME
    from cvflow.pull import pull_version
    from cvflow.resolve import HubSource, resolve_graph

    name, text = parse_spec(spec)
    requested = {name: text or "*"}
    graph = resolve_graph(requested, HubSource(client, cache), prereleases=prereleases)
    docs: dict[str, list[dict[str, Any]]] = {}
    for dep, cand in graph.items():
        snapshot = Path(pull_version(client, cache, dep, str(cand.version), progress=progress))
        doc = dict(cache.read_version(snapshot) or {})
        if not isinstance(doc.get("manifest_toml"), str) and (snapshot / MANIFEST_FILENAME).is_file():
            doc["manifest_toml"] = (snapshot / MANIFEST_FILENAME).read_text(encoding="utf-8")
        docs[dep] = [doc]
    manifest = BundleManifest.build(docs, source=client.base_url, requested=requested)
    digest = write_bundle(out, manifest, lambda d: _file_chunks(cache.blob_path(d)))
    return BundleSummary(Path(out), digest, {n: str(c.version) for n, c in graph.items()}, len(manifest.blobs),
                         Path(out).stat().st_size)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            yield block


def load_into_cache(reader: BundleReader, cache: Cache) -> list[tuple[str, str]]:
    """Put a bundle's blobs (each verified) and versions into the cache; returns ``(name, version)``s.

    Raises BundleError; blobs kept before it were whole and verified, and no snapshot is built.
    """
    with cache.writing():
        for digest, size, chunks in reader.blobs():
            if cache.has_blob(digest, size) and cache.verify(digest):
                continue
            _add_blob(cache, digest, chunks)
        loaded = []
        for name, doc in reader.manifest.versions():
            cache.snapshot(name, doc)
            _remember_versions(cache, name, doc)
            loaded.append((name, str(doc["version"])))
    return loaded


def _add_blob(cache: Cache, digest: str, chunks: Iterator[bytes]) -> None:
    final = cache.blob_path(digest)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{digest[:16]}.", suffix=".incomplete", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in chunks:  # raises BundleError at the end if the bytes are not the blob
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o444)
        stable = (int(time.time()) - 1) * 1_000_000_000  # as the cache stamps verified blobs
        os.utime(tmp, ns=(stable, stable))
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    cache.verify(digest)


def _remember_versions(cache: Cache, name: str, doc: Mapping[str, Any]) -> None:
    """Add the version to the package metadata the cache keeps for offline resolution."""
    saved = cache.load_metadata(name) or {"name": name, "versions": []}
    entries = {str(e.get("version")): e for e in saved.get("versions") or [] if isinstance(e, dict)}
    entries.setdefault(str(doc["version"]), {"version": doc["version"], "yanked": bool(doc.get("yanked")),
                                             "yank_reason": doc.get("yank_reason"),
                                             "prerelease": doc.get("prerelease", False)})
    cache.save_metadata(name, {"name": name, "versions": list(entries.values())})


def install_from(path: Path, cache: Cache, config: Config, spec: str | None, *, lock_path: Path,
                 sha256: str | None = None, prereleases: bool = False,
                 progress: Transfer | None = None) -> InstallReport:
    """Install ``spec`` (default: the package the bundle was made for) from a bundle, with no hub.

    Raises:
        BundleError: the bundle is malformed or was changed (nothing is installed).
        ResolutionError, OfflineError, InstallError: as ``cvflow install --offline``.
    """
    from cvflow.install import install

    with BundleReader(path, sha256=sha256) as reader:
        root = spec or reader.manifest.root()
        if root is None:
            raise BundleError(f"{Path(path).name} holds {', '.join(reader.manifest.packages)}; name the one to install")
        if spec is None and reader.manifest.requested.get(root):
            root = f"{root}@{reader.manifest.requested[root]}"
        load_into_cache(reader, cache)
    return install(None, cache, config, root, offline=True, lock_path=lock_path, prereleases=prereleases,
                   progress=progress)
