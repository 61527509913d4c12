"""Pull a package version into the cache: choose the version, download what is missing, snapshot.

Online, a range picks the highest non-yanked version that matches (an exact pin may pick a
yanked one, with a warning). Only blobs the cache lacks are downloaded, in parallel, so a
new version that shares most files with a cached one moves only the changed bytes. Blobs
already cached are hashed again before a snapshot is built on them, and a snapshot whose
files changed since it was built (see :mod:`cvflow.cache`) is rebuilt, so a corrupted file
is downloaded again. Offline, only cached snapshots and cached metadata are used.
"""

from __future__ import annotations

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvflow.cache import Cache
from cvflow.errors import InvalidRangeError, InvalidVersionError, OfflineError, ResolutionError
from cvflow.names import PackageName
from cvflow.paths import validate_file_list
from cvflow.progress import SILENT, Transfer
from cvflow.versions import Version, VersionRange

if TYPE_CHECKING:
    from cvflow.api import HubClient

__all__ = ["choose_version", "parse_spec", "pull", "pull_version"]

OWN_BAR = 1 << 20  # bytes: of many files, those this large get their own progress bar


def parse_spec(spec: str) -> tuple[str, VersionRange]:
    """``ns/name`` or ``ns/name@RANGE`` as (name, range); no range means ``*``.

    Raises:
        InvalidNameError, InvalidRangeError: saying what is wrong.
    """
    name, at, text = spec.strip().partition("@")
    PackageName.parse(name)
    if at and not text.strip():
        raise InvalidRangeError(f"{spec!r} has nothing after '@'; write a version or a range such as ^1.2")
    return name, VersionRange.parse(text or "*")


def choose_version(name: str, rng: VersionRange, entries: list[dict[str, Any]], *,
                   prereleases: bool = False, where: str = "on the hub") -> tuple[str, bool]:
    """The version ``rng`` picks from ``entries`` (``{"version", "yanked"}``) and whether it is yanked.

    Raises:
        ResolutionError: nothing matches (the message lists what there is).
    """
    versions: dict[Version, dict[str, Any]] = {}
    for entry in entries:
        try:
            versions[Version.parse(str(entry.get("version")))] = entry
        except InvalidVersionError:
            continue
    usable = [v for v, e in versions.items() if not e.get("yanked")]
    best = rng.best_match(usable, prereleases=prereleases)
    if best is None and rng.is_exact:  # only an exact pin may choose a yanked version
        best = rng.best_match(versions, prereleases=True)
    if best is None:
        listed = ", ".join(
            str(v) + (" (yanked)" if versions[v].get("yanked") else "")
            for v in sorted(versions, key=lambda v: v.key, reverse=True)[:10]
        )
        pre = "" if prereleases or rng.allows_prereleases or not any(v.is_prerelease for v in versions) else (
            "; pre-releases are only chosen with --pre")
        raise ResolutionError(f"no version of {name} {where} matches {rng}"
                              + (f" (there are: {listed}{pre})" if listed else " (it has no versions)"))
    return str(best), bool(versions[best].get("yanked"))


def pull(client: HubClient | None, cache: Cache, spec: str, *, offline: bool = False,
         prereleases: bool = False, workers: int = 4, progress: Transfer | None = None) -> Path:
    """Pull ``ns/name[@RANGE]`` into ``cache``; return its snapshot directory.

    ``client`` may be None when ``offline``.

    Raises:
        InvalidNameError, InvalidRangeError: a bad spec. ResolutionError: no version matches.
        OfflineError: offline and the cache lacks it. IntegrityError, DiskFullError, HubError:
        from the downloads (see :meth:`Cache.fetch_blob`).
    """
    progress = progress or SILENT
    name, rng = parse_spec(spec)
    with cache.writing():
        if offline or client is None:
            return _pull_offline(cache, name, rng, prereleases, progress)
        package = client.package(name)
        entries = list(package.get("versions") or [])
        cache.save_metadata(name, {"name": name, "versions": entries})
        version, yanked = choose_version(name, rng, entries, prereleases=prereleases)
        if yanked:
            reason = next((e.get("yank_reason") for e in entries if e.get("version") == version), None)
            progress.log(f"warning: {name}@{version} is yanked" + (f": {reason}" if reason else ""))
        return _pull_exact(client, cache, name, version, workers=workers, progress=progress)


def pull_version(client: HubClient, cache: Cache, name: str, version: str, *,
                 progress: Transfer | None = None) -> Path:
    """Pull exactly ``name@version`` (yanked or not); return its snapshot directory.

    A cached, unchanged snapshot is returned without asking the hub. Raises like :func:`pull`.
    """
    PackageName.parse(name)
    with cache.writing():
        return _pull_exact(client, cache, name, version, workers=4, progress=progress or SILENT)


def _pull_exact(client: HubClient, cache: Cache, name: str, version: str, *, workers: int,
                progress: Transfer) -> Path:
    cached = cache.cached_snapshot(name, version)
    if cached is not None:
        return cached
    doc = client.version(name, version)
    files = doc.get("files") or []
    validate_file_list([{k: f.get(k) for k in ("path", "size", "sha256")} for f in files],  # before any download
                       portable=False)  # versions from before the Windows rule stay pullable
    blobs = {f["sha256"]: f for f in files}
    missing = {d: f for d, f in blobs.items() if not cache.has_blob(d, f["size"])}
    todo = sum(f["size"] for f in missing.values())
    overall = progress.add(f"{name}@{doc['version']}", todo) if len(missing) > 1 else None

    def fetch(digest: str, entry: dict[str, Any]) -> None:
        if digest not in missing and not cache.was_verified(digest):
            if cache.verify(digest):
                return
            progress.log(f"the cached copy of {entry['path']} is corrupted; downloading it again")
            cache.discard(digest)
        # A bar per file while they fit on a screen; of many files only the large ones get one.
        task = progress.add(entry["path"], entry["size"]) if few or entry["size"] >= OWN_BAR else None

        def advance(n: int) -> None:
            if task is not None:
                progress.advance(task, n)
            if overall is not None:
                progress.advance(overall, n)

        cache.fetch_blob(client, client.file_path(name, str(doc["version"]), entry["path"]), digest,
                         entry["size"], progress=advance, log=progress.log, label=f"{name}@{doc['version']}:"
                         f" {entry['path']}", batch=batch)

    few = len(missing) <= 20
    # Small blobs reach the disk together (one sync per batch, see Cache.batch), not one fsync each.
    with cache.batch() as batch, ThreadPoolExecutor(max_workers=max(1, workers),
                                                    thread_name_prefix="cvflow-pull") as pool:
        futures = [pool.submit(fetch, d, f) for d, f in blobs.items()]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:  # one failed: start no more, let the running ones finish
            future.cancel()
    for future in futures:
        error = None if future.cancelled() else future.exception()
        if error is not None:
            raise error
    return cache.snapshot(name, doc)


def _pull_offline(cache: Cache, name: str, rng: VersionRange, prereleases: bool, progress: Transfer) -> Path:
    docs = {str(d.get("version")): d for d in cache.version_docs(name)}
    if not docs:
        raise OfflineError(f"{name} is not in the cache; pull it once while online (without --offline)")
    saved = {str(e.get("version")): e for e in (cache.load_metadata(name) or {}).get("versions") or []}
    entries = [{"version": v, "yanked": saved.get(v, d).get("yanked")} for v, d in docs.items()]
    try:
        version, yanked = choose_version(name, rng, entries, prereleases=prereleases, where="in the cache")
    except ResolutionError as exc:
        raise OfflineError(f"{exc.message}; pull it once while online (without --offline)") from exc
    if yanked:
        progress.log(f"warning: {name}@{version} is yanked")
    cached = cache.cached_snapshot(name, version)
    if cached is not None:
        return cached
    doc = docs[version]  # files changed since the snapshot was built: check them, then rebuild it
    bad = [f["path"] for f in doc.get("files") or [] if not cache.verify(f["sha256"])]
    if bad:
        raise OfflineError(f"the cached copy of {name}@{version} is damaged ({', '.join(bad[:5])});"
                           " pull it again while online")
    return cache.snapshot(name, doc)
