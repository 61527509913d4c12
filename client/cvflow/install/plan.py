"""``install``: resolve (or read the lock), pull, then build each package version's venv in
dependency order, recording each in the state file as it is built."""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvflow.errors import IntegrityError, OfflineError
from cvflow.install.before import BeforeInstall
from cvflow.install.before import handle as run_before_install
from cvflow.install.errors import DatasetNotInstallableError, InstallError
from cvflow.install.lock import check_against_lock, check_lock_is_whole, file_entries, locked_roots, previous_hub
from cvflow.install.records import InstalledPackage, InstallReport, parse_spec
from cvflow.install.state import read_state, state_lock, write_state
from cvflow.install.venv import build_venv, read_pth, venv_python
from cvflow.lockfile import Lock, LockedPackage, make_lock, read_lock, write_lock
from cvflow.versions import Version

if TYPE_CHECKING:
    from cvflow.api import HubClient
    from cvflow.cache import Cache
    from cvflow.config import Config
    from cvflow.progress import Transfer


@dataclass
class Planned:
    name: str
    version: Version
    dependencies: dict[str, str]  # ranges, as published
    snapshot: Path
    doc: dict[str, Any]


def install(client: HubClient | None, cache: Cache, config: Config, spec: str | None, *,
            before_install: BeforeInstall | None = None,
            offline: bool = False, locked: bool = False, lock_path: Path = Path("cvflow.lock"),
            prereleases: bool = False, progress: Transfer | None = None,
            steps: Callable[[str], None] | None = None, verbose: bool = False,
            write_lock_file: bool = True) -> InstallReport:
    """Install ``spec`` (``namespace/name[@RANGE]``) and its package dependencies.

    With ``locked``, the versions and file digests come from ``lock_path`` (``spec`` may
    be None: everything the lock asked for); otherwise the resolution is written there,
    unless ``write_lock_file`` is false. Each step (resolve, pull, create each venv, install
    its requirements or link them) is handed to ``steps`` (``cvflow.progress.step_printer``);
    with ``verbose``, so is the installer's own output.

    Raises:
        ResolutionError: no versions satisfy the requirements (the message says why).
        OfflineError: ``offline`` and something needed is not in the cache.
        LockfileError: ``locked`` and the lock is missing, malformed or asks for something else.
        IntegrityError: ``locked`` and a file's digest differs from the lock's.
        InstallError: a venv or a Python requirement could not be installed, or a package's
            ``before_install`` script failed (run only as ``before_install`` allows: cvflow.install.before).
        DatasetNotInstallableError: a version to install is a dataset (before any lock or venv is written).
        HubError: the hub could not be reached or refused.
    """
    if client is None and not offline:
        raise ValueError("install needs a hub client unless offline")
    log = steps or (lambda message: None)
    lock_path = Path(lock_path)
    lock: Lock | None = None
    if locked:
        lock = read_lock(lock_path)
        requested = locked_roots(lock, spec, lock_path)
        check_lock_is_whole(lock, lock_path)
        graph = {p.name: (p.version, dict(p.dependencies)) for p in lock.packages}
    else:
        if spec is None:
            raise ValueError("install needs a package to install unless locked")
        from cvflow.resolve import HubSource, OfflineSource, resolve_graph  # resolvelib: only to resolve

        name, text = parse_spec(spec)
        requested = {name: text or "*"}
        log(f"resolving {spec}" + (" (offline)" if offline else ""))
        source = HubSource(client, cache) if client is not None and not offline else OfflineSource(cache)
        graph = {n: (c.version, dict(c.dependencies))
                 for n, c in resolve_graph(requested, source, prereleases=prereleases).items()}

    log(f"{'checking' if offline else 'pulling'} {len(graph)} package version{'s' * (len(graph) != 1)}: "
        + ", ".join(f"{n}@{v}" for n, (v, _) in sorted(graph.items())))
    planned = _fetch_all(client, cache, graph, offline=offline, progress=progress)
    for p in planned.values():
        if (p.doc.get("manifest") or {}).get("kind") == "dataset":
            raise DatasetNotInstallableError(f"{p.name}@{p.version}")
    if lock is not None:
        check_against_lock(cache, planned, lock)
    elif write_lock_file:
        hub = client.base_url if client is not None else (previous_hub(lock_path) or config.hub)
        write_lock(lock_path, make_lock(hub, [_locked(p, requested.get(p.name)) for p in planned.values()]))

    with state_lock(config):
        records = read_state(config)
        built, out = [], []
        for name in _dependencies_first(planned):
            record, fresh = _install_one(planned[name], planned, config, records, offline=offline,
                                         progress=progress, steps=steps, verbose=verbose)
            run_before_install(before_install or BeforeInstall(), record)  # a CVPM script, only with consent
            records[(record.name, record.version)] = record
            write_state(config, records)  # after each: a later failure keeps what succeeded
            out.append(record)
            if fresh:
                built.append(f"{record.name}@{record.version}")
    written = lock_path if locked or write_lock_file else None
    return InstallReport(requested, written, sorted(out, key=lambda r: r.name), built, locked)


def _fetch_all(client: HubClient | None, cache: Cache, graph: Mapping[str, tuple[Version, dict[str, str]]], *,
               offline: bool, progress: Transfer | None) -> dict[str, Planned]:
    planned, missing = {}, []
    for name, (version, deps) in sorted(graph.items()):
        if offline:
            snap = _cached_snapshot(cache, name, str(version))
            if snap is None:
                missing.append(f"{name}@{version}")
                continue
        else:
            from cvflow.pull import pull_version  # the download stack: only when online

            assert client is not None  # install() refuses to go on without one unless offline
            snap = Path(pull_version(client, cache, name, str(version), progress=progress))
        doc = cache.read_version(snap)
        if doc is None:
            raise IntegrityError(f"{name}@{version}: the cached snapshot {snap} has no readable version document")
        planned[name] = Planned(name, version, deps, snap, doc)
    if missing:
        raise OfflineError(f"offline: not in the cache: {', '.join(missing)}; "
                           "run `cvflow pull` for them (or install once) while online")
    return planned


def _cached_snapshot(cache: Cache, name: str, version: str) -> Path | None:
    """The cached snapshot of ``name@version``, checked (and rebuilt) as ``cvflow pull --offline`` does."""
    with cache.writing():
        snap = cache.cached_snapshot(name, version)
        if snap is not None:
            return snap
        doc = cache.read_version(cache.snapshot_path(name, version))
        if doc is None:
            return None
        # Its files changed since the snapshot was built: hash the blobs, then rebuild it on them.
        bad = [f["path"] for f in doc.get("files") or [] if not cache.verify(f["sha256"])]
        if bad:
            raise OfflineError(f"offline: the cached copy of {name}@{version} is damaged ({', '.join(bad[:5])});"
                               " pull it again while online")
        return cache.snapshot(name, doc)


def _locked(p: Planned, requested: str | None) -> LockedPackage:
    return LockedPackage(p.name, p.version, tuple(file_entries(p.doc)), p.dependencies, requested)


def _dependencies_first(planned: Mapping[str, Planned]) -> list[str]:
    order: list[str] = []

    def visit(name: str, seen: set[str]) -> None:
        if name in order or name in seen or name not in planned:
            return
        seen.add(name)
        for dep in sorted(planned[name].dependencies):
            visit(dep, seen)
        order.append(name)

    for name in sorted(planned):
        visit(name, set())
    return order


def _closure(name: str, planned: Mapping[str, Planned]) -> list[Planned]:
    """``name`` then its package dependencies, transitively, breadth-first."""
    out, queue, seen = [], [name], {name}
    while queue:
        p = planned[queue.pop(0)]
        out.append(p)
        for dep in sorted(p.dependencies):
            if dep in planned and dep not in seen:
                seen.add(dep)
                queue.append(dep)
    return out


def _install_one(p: Planned, planned: Mapping[str, Planned], config: Config,
                 records: Mapping[tuple[str, str], InstalledPackage], *,
                 offline: bool, progress: Transfer | None = None, steps: Callable[[str], None] | None = None,
                 verbose: bool = False) -> tuple[InstalledPackage, bool]:
    closure = _closure(p.name, planned)
    manifests = [q.doc.get("manifest") or {} for q in closure]
    requirements = list(dict.fromkeys(r for m in manifests for r in m.get("requirements") or []))
    paths = [str(q.snapshot) for q in closure]
    target = config.venvs_dir / p.name / str(p.version)
    record = InstalledPackage(
        name=p.name, version=str(p.version), venv=str(target), snapshot=str(p.snapshot),
        dependencies={d: str(planned[d].version) for d in sorted(p.dependencies) if d in planned},
        requirements=requirements, uses=[f"{q.name}@{q.version}" for q in closure],
        installed_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    old = records.get((p.name, str(p.version)))
    if (old is not None and venv_python(target).exists() and read_pth(target) == paths
            and (old.snapshot, old.dependencies, old.requirements, old.uses)
            == (record.snapshot, record.dependencies, record.requirements, record.uses)):
        return old, False  # already built exactly so: keep it (and its install time)
    _check_python(p)
    build_venv(target, paths, requirements, offline=offline, label=f"{p.name}@{p.version}",
               share_from=config.venvs_dir, cache_dir=config.cache_dir / "uv", progress=progress, steps=steps,
               verbose=verbose)
    return record, True


def _check_python(p: Planned) -> None:
    wanted = (p.doc.get("manifest") or {}).get("python")
    if not wanted:
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        ok = SpecifierSet(wanted).contains(platform.python_version(), prereleases=True)
    except InvalidSpecifier:
        ok = True  # the hub validated it; a newer grammar than ours is not a reason to refuse
    if not ok:
        raise InstallError(f"{p.name}@{p.version} needs Python {wanted}; this is Python {platform.python_version()}")
