"""Install packages: resolve, lock, pull, and give each package version its own venv.

``install`` resolves a package and its package dependencies (or reads ``cvflow.lock``
with ``locked=True``), writes the lock, pulls every version into the shared cache, then
builds one virtual environment per package version at
``CVFLOW_HOME/venvs/<namespace>/<name>/<version>``:

* ``uv venv`` + ``uv pip install`` when ``uv`` is on PATH, else ``python -m venv`` + pip;
* the Python ``requirements`` of the package *and* of its package dependencies (their
  code is importable in it too, so it must be able to run);
* a ``.pth`` file that puts the package's cached snapshot, then its dependencies'
  snapshots, on ``sys.path``; the files are not copied;
* a link that makes this client's ``cvflow`` package (only it, not the client's own
  dependencies) importable, since solvers are written against ``cvflow.solver``. A
  ``cvflow`` the package's requirements install wins over the link.

A venv is built in a temporary sibling directory and renamed into place, so a failed
install leaves what was installed before untouched. Installs are recorded in
``CVFLOW_HOME/state/installed.json`` (replaced atomically); concurrent installs on one
machine take turns on ``state/install.lock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvflow.errors import CVFlowError, IntegrityError, InvalidRangeError, OfflineError
from cvflow.lockfile import Lock, LockedPackage, LockfileError, make_lock, read_lock, write_lock
from cvflow.locks import file_lock
from cvflow.names import PackageName
from cvflow.paths import FileEntry
from cvflow.resolve import HubSource, OfflineSource, resolve_graph
from cvflow.versions import Version, VersionRange

if TYPE_CHECKING:
    from cvflow.api import HubClient
    from cvflow.cache import Cache
    from cvflow.config import Config
    from cvflow.progress import Transfer

__all__ = [
    "InstallError",
    "InstallReport",
    "InstalledPackage",
    "NotInstalledError",
    "install",
    "installed_versions",
    "list_installed",
    "parse_spec",
    "uninstall",
]

STATE_FORMAT = 1


class InstallError(CVFlowError):
    """A virtual environment or a package's Python requirements could not be installed."""

    code = "install_failed"


class NotInstalledError(CVFlowError, LookupError):
    """``uninstall`` of something that is not installed."""

    code = "not_installed"


@dataclass(frozen=True)
class InstalledPackage:
    """One installed package version, as recorded in ``installed.json``."""

    name: str
    version: str
    venv: str
    snapshot: str
    dependencies: dict[str, str] = field(default_factory=dict)  # name -> exact version installed
    requirements: list[str] = field(default_factory=list)  # the pip requirements put in the venv
    uses: list[str] = field(default_factory=list)  # "name@version" of every snapshot on its sys.path, itself first
    installed_at: str = ""

    @property
    def python(self) -> Path:
        return venv_python(Path(self.venv))


@dataclass
class InstallReport:
    """What ``install`` did: every package version of the install, and which venvs it built."""

    requested: dict[str, str]
    lock_path: Path
    packages: list[InstalledPackage]
    built: list[str] = field(default_factory=list)  # "name@version" whose venv was (re)built
    locked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "lock": str(self.lock_path), "locked": self.locked,
                "built": self.built, "packages": [asdict(p) for p in self.packages]}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"ns/name@^1.2"`` -> ``("ns/name", "^1.2")``; no ``@`` gives ``None``.

    Raises:
        InvalidNameError, InvalidRangeError: the name or the range is malformed.
    """
    name, at, text = spec.strip().partition("@")
    PackageName.parse(name)
    if at:
        VersionRange.parse(text)
    return name, (text.strip() if at else None)


# -- install ----------------------------------------------------------------------------------


@dataclass
class _Planned:
    name: str
    version: Version
    dependencies: dict[str, str]  # ranges, as published
    snapshot: Path
    doc: dict[str, Any]


def install(client: HubClient | None, cache: Cache, config: Config, spec: str | None, *,
            offline: bool = False, locked: bool = False, lock_path: Path = Path("cvflow.lock"),
            prereleases: bool = False, progress: Transfer | None = None) -> InstallReport:
    """Install ``spec`` (``namespace/name[@RANGE]``) and its package dependencies.

    With ``locked``, the versions and file digests come from ``lock_path`` (``spec`` may
    be None: everything the lock asked for); otherwise the resolution is written there.

    Raises:
        ResolutionError: no versions satisfy the requirements (the message says why).
        OfflineError: ``offline`` and something needed is not in the cache.
        LockfileError: ``locked`` and the lock is missing, malformed or asks for something else.
        IntegrityError: ``locked`` and a file's digest differs from the lock's.
        InstallError: a venv or a Python requirement could not be installed.
        HubError: the hub could not be reached or refused.
    """
    if client is None and not offline:
        raise ValueError("install needs a hub client unless offline")
    lock_path = Path(lock_path)
    lock: Lock | None = None
    if locked:
        lock = read_lock(lock_path)
        requested = _locked_roots(lock, spec, lock_path)
        _check_lock_is_whole(lock, lock_path)
        graph = {p.name: (p.version, dict(p.dependencies)) for p in lock.packages}
    else:
        if spec is None:
            raise ValueError("install needs a package to install unless locked")
        name, text = parse_spec(spec)
        requested = {name: text or "*"}
        source = OfflineSource(cache) if offline else HubSource(client, cache)  # type: ignore[arg-type]
        graph = {n: (c.version, dict(c.dependencies))
                 for n, c in resolve_graph(requested, source, prereleases=prereleases).items()}

    planned = _fetch_all(client, cache, graph, offline=offline, progress=progress)
    if lock is not None:
        _check_against_lock(cache, planned, lock)
    else:
        hub = client.base_url if client is not None else (_previous_hub(lock_path) or config.hub)
        write_lock(lock_path, make_lock(hub, [_locked(p, requested.get(p.name)) for p in planned.values()]))

    with _state_lock(config):
        records = _read_state(config)
        built, out = [], []
        for name in _dependencies_first(planned):
            record, fresh = _install_one(planned[name], planned, config, records, offline=offline)
            records[(record.name, record.version)] = record
            _write_state(config, records)  # after each: a later failure keeps what succeeded
            out.append(record)
            if fresh:
                built.append(f"{record.name}@{record.version}")
    return InstallReport(requested, lock_path, sorted(out, key=lambda r: r.name), built, locked)


def _locked_roots(lock: Lock, spec: str | None, lock_path: Path) -> dict[str, str]:
    roots = lock.roots
    if spec is None:
        return roots
    name, text = parse_spec(spec)
    if name not in roots or (text is not None and VersionRange.parse(text) != VersionRange.parse(roots[name])):
        asked = ", ".join(f"{n}@{r}" for n, r in roots.items()) or "nothing"
        raise LockfileError(f"{lock_path} was written for {asked}, not {spec}; run without --locked to update it")
    return {name: roots[name]}


def _check_lock_is_whole(lock: Lock, lock_path: Path) -> None:
    """Every dependency of a locked package must be locked too, at a version its range accepts."""
    for p in lock.packages:
        for dep, text in sorted(p.dependencies.items()):
            got = lock.get(dep)
            try:
                ok = got is not None and VersionRange.parse(text).contains(got.version, prereleases=True)
            except InvalidRangeError:
                ok = False
            if not ok:
                has = f"has {dep}@{got.version}" if got is not None else f"has no {dep}"
                raise LockfileError(f"{lock_path} is inconsistent: {p.name}@{p.version} needs {dep} {text},"
                                    f" the lock {has}; run without --locked to update it")


def _previous_hub(lock_path: Path) -> str:
    try:
        return read_lock(lock_path).hub
    except LockfileError:
        return ""


def _fetch_all(client: HubClient | None, cache: Cache, graph: Mapping[str, tuple[Version, dict[str, str]]], *,
               offline: bool, progress: Transfer | None) -> dict[str, _Planned]:
    planned, missing = {}, []
    for name, (version, deps) in sorted(graph.items()):
        if offline:
            snap = _cached_snapshot(cache, name, str(version))
            if snap is None:
                missing.append(f"{name}@{version}")
                continue
        else:
            from cvflow.pull import pull_version  # the download stack: only when online

            snap = Path(pull_version(client, cache, name, str(version), progress=progress))  # type: ignore[arg-type]
        doc = cache.read_version(snap)
        if doc is None:
            raise IntegrityError(f"{name}@{version}: the cached snapshot {snap} has no readable version document")
        planned[name] = _Planned(name, version, deps, snap, doc)
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


def _files(doc: Mapping[str, Any]) -> list[FileEntry]:
    return sorted((FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in doc.get("files") or []),
                  key=lambda f: f.path)


def _locked(p: _Planned, requested: str | None) -> LockedPackage:
    return LockedPackage(p.name, p.version, tuple(_files(p.doc)), p.dependencies, requested)


def _check_against_lock(cache: Cache, planned: Mapping[str, _Planned], lock: Lock) -> None:
    """Every file of every locked version must be the lock's bytes, in the listing and on disk."""
    for p in planned.values():
        entry = lock.get(p.name)
        assert entry is not None
        if _files(p.doc) != sorted(entry.files, key=lambda f: f.path):
            raise IntegrityError(f"{p.name}@{p.version}: its files differ from those in the lock "
                                 "(was the lock written against another hub?)")
        for f in entry.files:
            path = p.snapshot / f.path
            try:
                if _verified_link(cache, path, f.sha256):
                    continue
                digest = _sha256(path)
            except OSError as exc:
                raise IntegrityError(f"{p.name}@{p.version}: {f.path} is missing from the cache ({exc})") from exc
            if digest != f.sha256:
                raise IntegrityError(f"{p.name}@{p.version}: {f.path} has sha256 {digest[:12]}…, the lock says"
                                     f" {f.sha256[:12]}…; the cached copy is corrupt or the lock was edited")


def _verified_link(cache: Cache, path: Path, digest: str) -> bool:
    """True if ``path`` is a hard link to blob ``digest`` that this process hashed and nothing changed since."""
    if not cache.was_verified(digest):
        return False
    try:
        return path.stat().st_ino == cache.blob_path(digest).stat().st_ino
    except OSError:
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _dependencies_first(planned: Mapping[str, _Planned]) -> list[str]:
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


def _closure(name: str, planned: Mapping[str, _Planned]) -> list[_Planned]:
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


def _install_one(p: _Planned, planned: Mapping[str, _Planned], config: Config,
                 records: Mapping[tuple[str, str], InstalledPackage], *,
                 offline: bool) -> tuple[InstalledPackage, bool]:
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
    if (old is not None and venv_python(target).exists() and _read_pth(target) == paths
            and (old.snapshot, old.dependencies, old.requirements, old.uses)
            == (record.snapshot, record.dependencies, record.requirements, record.uses)):
        return old, False  # already built exactly so: keep it (and its install time)
    _check_python(p)
    build_venv(target, paths, requirements, offline=offline, label=f"{p.name}@{p.version}")
    return record, True


def _check_python(p: _Planned) -> None:
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


# -- virtual environments ---------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _site_packages(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Lib" / "site-packages"
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise InstallError(f"the new virtual environment at {venv} has no site-packages")
    return found[0]


PTH_NAME = "_cvflow_package.pth"
LINK_NAME = "_cvflow_link"

#: Put in every package venv: finds ``cvflow`` in this client's folder, and nothing else from
#: there, after every other finder (so an installed ``cvflow`` wins). Nothing is imported at start.
_LINK_SOURCE = '''"""Written by `cvflow install`: makes the cvflow client at ROOT importable as ``cvflow``."""
import importlib.util
import sys

ROOT = {root!r}


class CvflowFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "cvflow":
            return None
        return importlib.util.spec_from_file_location("cvflow", ROOT + "/__init__.py",
                                                      submodule_search_locations=[ROOT])


if not any(getattr(f, "__name__", "") == "CvflowFinder" for f in sys.meta_path):
    sys.meta_path.append(CvflowFinder)
'''


def _write_link(site_packages: Path) -> None:
    root = str(Path(__file__).resolve().parent)
    (site_packages / f"{LINK_NAME}.py").write_text(_LINK_SOURCE.format(root=root))
    (site_packages / f"{LINK_NAME}.pth").write_text(f"import {LINK_NAME}\n")


def _read_pth(venv: Path) -> list[str] | None:
    try:
        return (_site_packages(venv) / PTH_NAME).read_text().splitlines()
    except (OSError, InstallError):
        return None


def build_venv(target: Path, paths: list[str], requirements: list[str], *, offline: bool, label: str) -> None:
    """Build a venv with ``requirements`` and ``paths`` on its ``sys.path``, then put it at ``target``.

    Raises:
        InstallError: creating the venv or installing a requirement failed; ``target`` is untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        uv = shutil.which("uv")
        if uv:
            _run([uv, "venv", "--quiet", "--python", sys.executable, str(tmp)], f"{label}: uv venv")
        else:
            _run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], f"{label}: python -m venv")
        if requirements:
            _pip_install(uv, tmp, requirements, offline=offline, label=label)
        (_site_packages(tmp) / PTH_NAME).write_text("".join(p + "\n" for p in paths))
        _write_link(_site_packages(tmp))
        _retarget(tmp, target)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _pip_install(uv: str | None, venv: Path, requirements: list[str], *, offline: bool, label: str) -> None:
    python = str(venv_python(venv))
    if uv:
        cmd = [uv, "pip", "install", "--quiet", "--python", python]
        cmd += ["--offline", "--no-index"] if offline else []
    else:
        if _has_pip():  # drive the venv from our own pip: no copy of pip in every venv
            cmd = [sys.executable, "-m", "pip", "--python", python]
        else:
            _run([python, "-m", "ensurepip", "--default-pip"], f"{label}: ensurepip")
            cmd = [python, "-m", "pip"]
        cmd += ["install", "--no-input", "--disable-pip-version-check", "--quiet"]
        cmd += ["--no-index"] if offline else []
    try:
        _run([*cmd, "--", *requirements], f"{label}: installing {', '.join(requirements)}")
    except InstallError as exc:
        if offline:
            raise InstallError(f"{exc.message}. Offline, Python requirements come only from a local wheel folder"
                               " (set PIP_FIND_LINKS, or UV_FIND_LINKS for uv); install once while online"
                               " or provide them there") from None
        raise


def _has_pip() -> bool:
    """Whether our own interpreter has a pip that can drive another environment (``--python``: pip 22.3+)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(x) for x in version("pip").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (22, 3)


_ERROR_STARTS = ("error", "cause", "\u00d7", "\u2570\u2500\u25b6", "because")  # pip's and uv's error lines


def _run(cmd: list[str], what: str) -> None:
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)  # else uv and pip may pick the caller's venv instead of ours
    env.pop("PYTHONPATH", None)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
    except OSError as exc:
        raise InstallError(f"{what}: cannot run {cmd[0]}: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.lower().startswith(_ERROR_STARTS)] or lines[-3:]
        raise InstallError(f"{what} failed: {' '.join(errors)[:600] or f'exit status {done.returncode}'}")


def _retarget(tmp: Path, target: Path) -> None:
    """Rewrite the temporary prefix to the final one in scripts and activation files.

    Venvs are not relocatable: activate scripts and the shebangs of installed commands
    hold the absolute path they were built at.
    """
    old, new = str(tmp).encode(), str(target).encode()
    scripts = tmp / ("Scripts" if os.name == "nt" else "bin")
    for path in [*scripts.iterdir(), tmp / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))


def _swap_into_place(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(backup, ignore_errors=True)
    os.rename(target, backup)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


# -- state ------------------------------------------------------------------------------------


def _state_file(config: Config) -> Path:
    return config.state_dir / "installed.json"


def _state_lock(config: Config) -> contextlib.AbstractContextManager[None]:
    return file_lock(config.state_dir / "install.lock")


def _read_state(config: Config) -> dict[tuple[str, str], InstalledPackage]:
    try:
        data = json.loads(_state_file(config).read_text())
    except FileNotFoundError:
        return {}
    except (NotADirectoryError, PermissionError):  # CVFLOW_HOME itself is unusable: cvflow.cli says so
        raise
    except (OSError, ValueError) as exc:
        raise InstallError(f"{_state_file(config)} is unreadable ({exc}); move it aside to start afresh") from exc
    fields = set(InstalledPackage.__dataclass_fields__)
    out = {}
    for item in data.get("packages", []):
        record = InstalledPackage(**{k: v for k, v in item.items() if k in fields})
        out[(record.name, record.version)] = record
    return out


def _write_state(config: Config, records: Mapping[tuple[str, str], InstalledPackage]) -> None:
    ordered = sorted(records.values(), key=lambda r: (r.name, Version.parse(r.version).key))
    body = json.dumps({"version": STATE_FORMAT, "packages": [asdict(r) for r in ordered]}, indent=2, sort_keys=True)
    path = _state_file(config)
    fd, tmp = tempfile.mkstemp(prefix=".installed.", suffix=".tmp", dir=config.state_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_installed(config: Config) -> list[InstalledPackage]:
    """Every installed package version, by name then version.

    Raises:
        InstallError: the state file is unreadable.
    """
    return sorted(_read_state(config).values(), key=lambda r: (r.name, Version.parse(r.version).key))


def installed_versions(config: Config) -> set[tuple[str, str]]:
    """``(name, version)`` of every cached version an installed venv uses: what ``cache prune`` must keep."""
    out = set()
    for record in _read_state(config).values():
        out.add((record.name, record.version))
        for used in record.uses:
            name, _, version = used.partition("@")
            out.add((name, version))
    return out


def uninstall(config: Config, spec: str) -> list[InstalledPackage]:
    """Remove ``namespace/name`` (every installed version) or ``namespace/name@VERSION``:
    its venv and its record. The cache keeps the files. Returns what was removed.

    Raises:
        NotInstalledError: nothing installed matches.
        InvalidNameError, InvalidVersionError: ``spec`` is malformed.
    """
    name, _, text = spec.strip().partition("@")
    PackageName.parse(name)
    version = str(Version.parse(text.strip())) if text else None
    with _state_lock(config):
        records = _read_state(config)
        gone = [r for r in records.values() if r.name == name and version in (None, r.version)]
        if not gone:
            raise NotInstalledError(f"{spec} is not installed")
        for r in gone:
            del records[(r.name, r.version)]
        _write_state(config, records)  # the record goes first: a half-removed venv is never listed
        for r in gone:
            shutil.rmtree(r.venv, ignore_errors=True)
            with contextlib.suppress(OSError):  # tidy empty <ns>/<name> folders
                Path(r.venv).parent.rmdir()
                Path(r.venv).parent.parent.rmdir()
    return gone
