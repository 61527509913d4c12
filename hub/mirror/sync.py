"""``cvflow-hub mirror sync``: copy packages, versions and blobs from an upstream hub, incrementally.

A run reads the upstream's change feed from the last serial it applied (0 the first time,
or when the filters changed), a page at a time. Every package named on a page is brought
in line with the upstream: versions the filters select that this hub lacks are copied
(blobs first, each verified, then the version's rows in one transaction), and yank states
follow the upstream's. The serial is saved after each page, so a run that is cut short
resumes at the page it was on; copies already made are found and skipped, and a blob cut
mid-way resumes from its partial bytes.

Errors fall in two kinds. A package the upstream lies about (wrong digest, truncated blob,
a version whose content changed since it was copied) is reported, nothing of it is stored,
and it is tried again at the start of the next run; the run goes on with other packages.
An upstream that cannot be reached, or a feed with a gap, stops the run where it is.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import select

from cvflow import errors as client_errors
from cvflow.api import HubClient
from cvflow.safeparse import MAX_DOCUMENT_DEPTH, loads_json
from hub.context import HubContext
from hub.db import session_scope
from hub.errors import HubError
from hub.mirror import copies, feed
from hub.mirror.fetch import BlobFetcher, upstream_error
from hub.mirror.filters import Filters
from hub.models import MirrorState, Package, PackageOrigin, Version, utcnow
from hub.services import packages
from hub.services.catalog import iso

PAGE = 500
#: Errors that stop a run (the next run resumes); any other error is the package's alone.
FATAL = frozenset({"upstream_unavailable", "feed_gap", "storage_unavailable", "database_unavailable"})


@dataclass
class SyncReport:
    upstream: str
    since: int
    serial: int = 0
    upstream_serial: int = 0
    packages: int = 0
    versions: list[str] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    yanks: int = 0
    deleted: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, str] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"upstream": self.upstream, "since": self.since, "serial": self.serial,
                "upstream_serial": self.upstream_serial, "packages": self.packages, "versions": self.versions,
                "blobs": self.blobs, "bytes": self.bytes, "yanks": self.yanks, "deleted": self.deleted,
                "failures": self.failures,
                "error": self.error, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        text = (f"{self.upstream}: serial {self.since} -> {self.serial} of {self.upstream_serial}; "
                f"{self.packages} package(s) checked, {len(self.versions)} version(s) copied, "
                f"{self.blobs} blob(s) ({self.bytes} bytes), {self.yanks} yank change(s), "
                f"{len(self.deleted)} deletion(s), "
                f"{len(self.failures)} failure(s)")
        if self.error:
            text += f"; stopped: {self.error['message']} [{self.error['code']}]"
        return text


def _reason(entry: dict[str, Any]) -> str | None:
    """The yank reason a copy records for an upstream entry (see ``copies.set_yank``)."""
    if not entry.get("yanked"):
        return None
    return (str(entry.get("yank_reason") or "") or "yanked upstream")[:500]


def normalise(url: str) -> str:
    return url.strip().rstrip("/")


class Syncer:
    """Syncs one hub (``context``) from one upstream; ``client`` talks to the upstream."""

    def __init__(self, context: HubContext, client: HubClient, filters: Filters, *, page_size: int = PAGE,
                 workers: int = 4, log: Callable[[str], None] | None = None) -> None:
        self.context = context
        self.client = client
        self.upstream = normalise(client.base_url)
        self.filters = filters
        self.page_size = page_size
        self.workers = workers
        self.log = log or (lambda _: None)
        self.fetcher = BlobFetcher(context, via="mirror")
        self._lock = threading.Lock()

    @classmethod
    def create(cls, context: HubContext, upstream: str, token: str | None, filters: Filters, **kw: Any) -> Syncer:
        client = HubClient(normalise(upstream), token or None, timeout=context.settings.upstream_timeout)
        return cls(context, client, filters, **kw)

    def close(self) -> None:
        self.client.close()

    # -- one run

    def run(self) -> SyncReport:
        started = time.monotonic()
        report = self._run()
        report.seconds = time.monotonic() - started
        return report

    def _run(self) -> SyncReport:
        state = self._state()
        since = state.serial if state.filters == self.filters.key() else 0
        report = SyncReport(self.upstream, since=since, serial=since)
        failed: dict[str, dict[str, Any]] = {}
        try:
            retry = [n for n in json.loads(state.retry or "[]") if self.filters.wants(n)]
            self._packages({n: None for n in retry}, report, failed)
            while True:
                events, upstream_serial = self._page(since)
                report.upstream_serial = upstream_serial
                touched: dict[str, set[str] | None] = {}
                deleted: dict[str, dict[str, str]] = {}  # package -> version -> reason
                for event in events:
                    name = event.get("package")
                    if event.get("action") == "hidden" or not isinstance(name, str) or not self.filters.wants(name):
                        continue
                    versions = touched.setdefault(name, set())
                    if event.get("version") and versions is not None:
                        versions.add(str(event["version"]))
                    if event.get("action") == "delete" and event.get("version"):
                        data = event["data"] if isinstance(event.get("data"), dict) else {}
                        deleted.setdefault(name, {})[str(event["version"])] = str(data.get("reason") or "")
                self._packages(touched, report, failed, deleted)
                since = events[-1]["serial"] if events else since
                report.serial = since
                self._save(since, failed, None)
                if since >= upstream_serial:
                    break
        except HubError as exc:
            report.error = {"code": exc.code, "message": exc.message}
            self._save(report.serial, failed, f"{exc.message} [{exc.code}]")
        report.failures = list(failed.values())
        return report

    def _page(self, since: int) -> tuple[list[dict[str, Any]], int]:
        """The events after ``since``, checked to follow on without a gap; and the upstream's serial."""
        try:
            response = self.client.request("GET", "/api/v1/changes", params={"since": since, "limit": self.page_size})
            body = loads_json(response.content, max_depth=MAX_DOCUMENT_DEPTH)  # TooDeepError: a ValueError
            serial = int(body["serial"])
            events = list(body["events"])
        except client_errors.HubError as exc:
            raise upstream_error(exc, "reading the change feed") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise HubError("feed_gap", "the upstream's change feed is not a CVFlow feed") from exc
        if serial < since:
            raise HubError("feed_gap", f"the upstream's serial went back from {since} to {serial} (was it restored "
                           "from a backup?); nothing was copied", details={"since": since, "serial": serial})
        expected = since + 1
        for event in events:
            if not isinstance(event, dict) or event.get("serial") != expected:
                got = event.get("serial") if isinstance(event, dict) else event
                raise HubError("feed_gap", f"the upstream's change feed jumps from serial {expected - 1} to {got}; "
                               "nothing of that page was copied", details={"expected": expected, "got": got})
            expected += 1
        if not events and serial > since:
            raise HubError("feed_gap", f"the upstream is at serial {serial} but sends no events after {since}",
                           details={"since": since, "serial": serial})
        return events, serial

    # -- packages

    def _packages(self, touched: dict[str, set[str] | None], report: SyncReport,
                  failed: dict[str, dict[str, Any]], deleted: dict[str, dict[str, str]] | None = None) -> None:
        """Sync the packages of one page, a few at a time; then raise the first error that stops the run."""
        if not touched:
            return
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(touched))),
                                thread_name_prefix="mirror-sync") as pool:
            futures = [pool.submit(self._package, name, versions, report, failed, (deleted or {}).get(name, {}))
                       for name, versions in touched.items()]
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error

    def _package(self, name: str, touched: set[str] | None, report: SyncReport,
                 failed: dict[str, dict[str, Any]], deleted: dict[str, str] | None = None) -> None:
        """Bring ``name`` in line with the upstream. ``touched``: versions the feed named (None: all);
        ``deleted``: versions the feed says an administrator took down there, with the reason."""
        with self._lock:
            report.packages += 1
            failed.pop(name, None)
        try:
            try:
                doc = self.client.package(name)
            except client_errors.HubNotFoundError:
                return  # gone private or never visible: what was copied stays
            except client_errors.HubError as exc:
                raise upstream_error(exc, name) from exc
            entries = [e for e in doc.get("versions") or [] if isinstance(e, dict)]
            local = self._local_versions(name)
            listed = {str(e.get("version")) for e in entries}
            for version, reason in (deleted or {}).items():
                # Only what the upstream itself no longer lists: the feed names it, the document confirms it.
                if version in local and version not in listed and self._delete(name, version, reason):
                    local.pop(version)
                    with self._lock:
                        report.deleted.append(f"{name}@{version}")
                    self.log(f"deleted {name}@{version} (taken down upstream: {reason})")
            for entry in reversed(self.filters.select(name, entries)):  # lowest first, as they were published
                version = str(entry["version"])
                if version in local:
                    if touched is None or version in touched:
                        self._check_copy(name, version)
                elif self._copy(name, version, bool(doc.get("private")), report):
                    local[version] = (bool(entry.get("yanked")), _reason(entry))
            for entry in entries:
                here = local.get(str(entry.get("version")))
                if here is not None and here != (bool(entry.get("yanked")), _reason(entry)):
                    changed = self._yank(name, str(entry["version"]), entry)
                    with self._lock:
                        report.yanks += changed
        except HubError as exc:
            with self._lock:
                failed[name] = {"package": name, "code": exc.code, "message": exc.message}
            if exc.code in FATAL:
                raise
            self.log(f"failed: {name}: {exc.message} [{exc.code}]")

    def _local_versions(self, name: str) -> dict[str, tuple[bool, str | None]]:
        with session_scope(self.context.engine) as session:
            package = session.exec(select(Package).where(Package.full_name == name)).first()
            if package is None:
                return {}
            if session.get(PackageOrigin, package.id) is None:
                raise HubError("name_shadows_upstream", f"{name} was published on this hub; the upstream's package "
                               "of that name is not copied", details={"package": name})
            rows = session.exec(select(Version.version, Version.yanked, Version.yank_reason)
                                .where(Version.package_id == package.id))
            return {v: (y, r if y else None) for v, y, r in rows}

    def _version_doc(self, name: str, version: str) -> dict[str, Any]:
        try:
            doc = self.client.version(name, version)
        except client_errors.HubError as exc:
            raise upstream_error(exc, f"{name}@{version}") from exc
        if doc.get("version") != version or doc.get("package", name) != name:
            raise HubError("upstream_invalid", f"{name}@{version}: the upstream sent the document of "
                           f"{doc.get('package')}@{doc.get('version')}")
        return {**doc, "package": name}

    def _check_copy(self, name: str, version: str) -> None:
        doc = self._version_doc(name, version)
        with session_scope(self.context.engine) as session:
            package = session.exec(select(Package).where(Package.full_name == name)).one()
            row = copies.find_version(session, package, version)
            if row is not None:
                copies.check_unchanged(session, row, doc)

    def _copy(self, name: str, version: str, private: bool, report: SyncReport) -> bool:
        doc = self._version_doc(name, version)
        files = copies.file_list(doc)
        by_digest = {f["sha256"]: f for f in files}

        def fetch(f: dict[str, Any]) -> int:
            return self.fetcher.fetch(self.client, self.client.file_path(name, version, f["path"]), f["sha256"],
                                      f["size"], what=f"{name}@{version}: {f['path']}")

        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(by_digest)))) as pool:
            got = list(pool.map(fetch, by_digest.values()))
        with self._lock:
            report.blobs += sum(1 for n in got if n)
            report.bytes += sum(got)
        with session_scope(self.context.engine, write=True) as session:
            _, created = copies.copy_version(session, self.context.settings, {**doc, "private": private},
                                             upstream=self.upstream, via="mirror")
        if created:
            with self._lock:
                report.versions.append(f"{name}@{version}")
            self.log(f"copied {name}@{version}")
        return created

    def _delete(self, name: str, version: str, reason: str) -> bool:
        with session_scope(self.context.engine, write=True) as session:
            package = session.exec(select(Package).where(Package.full_name == name)).one()
            row = copies.find_version(session, package, version)
            if row is None:
                return False
            packages.drop_version(session, package, row)
            feed.emit(session, "delete", package.full_name, row.version,
                      {"reason": (reason or "taken down upstream")[:500], "upstream": self.upstream})
            return True

    def _yank(self, name: str, version: str, entry: dict[str, Any]) -> int:
        with session_scope(self.context.engine, write=True) as session:
            package = session.exec(select(Package).where(Package.full_name == name)).one()
            row = copies.find_version(session, package, version)
            if row is None:
                return 0
            return int(copies.set_yank(session, package, row, bool(entry.get("yanked")), entry.get("yank_reason")))

    # -- saved state

    def _state(self) -> MirrorState:
        with session_scope(self.context.engine) as session:
            state = session.get(MirrorState, self.upstream)
            return state or MirrorState(upstream=self.upstream, serial=0, filters=self.filters.key())

    def _save(self, serial: int, failed: dict[str, dict[str, Any]], error: str | None) -> None:
        with session_scope(self.context.engine, write=True) as session:
            state = session.get(MirrorState, self.upstream)
            if state is None:
                state = MirrorState(upstream=self.upstream, serial=0)
            state.serial = serial
            state.filters = self.filters.key()
            state.retry = json.dumps(sorted(failed))
            state.last_run_at = utcnow()
            state.last_error = error[:1000] if error else None
            session.add(state)


def mirror_states(context: HubContext) -> list[dict[str, Any]]:
    with session_scope(context.engine) as session:
        rows = session.exec(select(MirrorState).order_by(MirrorState.upstream)).all()
        return [{"upstream": s.upstream, "serial": s.serial, "filters": json.loads(s.filters or "{}"),
                 "retry": json.loads(s.retry or "[]"), "last_run_at": iso(s.last_run_at),
                 "last_error": s.last_error} for s in rows]
