"""Pull-through: what this hub lacks is fetched from its upstream hubs, stored, and served.

Set ``CVFLOW_HUB_UPSTREAMS`` to one or more hub URLs; they are asked in order and the first
that has a package serves it. What comes through is kept:

* package documents and resolver index entries as ``upstream_documents`` rows, served again
  for ``upstream_metadata_ttl`` seconds before the upstream is asked again, and for as long
  as needed when no upstream answers;
* version documents, kept for good (versions are immutable), so every later byte is checked
  against the digests first seen;
* blobs, one by one as they are asked for, verified against those digests before they are
  stored. When a version has all its blobs it is copied into the catalogue (origin
  ``pull-through``), and from then on it is served like a package published here.

A package published on this hub always wins over an upstream one of the same name, and
creating such a package is refused unless ``allow_shadowing`` is on (dependency confusion).
Upstreams are asked anonymously: only their public packages come through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from cvflow import errors as client_errors
from cvflow.api import HubClient
from hub.context import HubContext
from hub.db import session_scope
from hub.errors import HubError
from hub.mirror import copies
from hub.mirror.fetch import BlobFetcher
from hub.models import PackageOrigin, UpstreamDocument, utcnow
from hub.services import packages


def upstream_pool(hub: HubContext) -> UpstreamPool | None:
    """The pull-through machinery of a hub with upstreams configured; None without."""
    urls = hub.settings.upstream_urls
    return UpstreamPool(hub, urls) if urls else None


class UpstreamPool:
    """The upstreams of one hub, in order. Methods block (call them in a worker thread)."""

    def __init__(self, context: HubContext, urls: Iterable[str]) -> None:
        self.context = context
        self.ttl = context.settings.upstream_metadata_ttl
        self.clients = {url: HubClient(url, timeout=context.settings.upstream_timeout) for url in urls}
        self.fetcher = BlobFetcher(context, via="pull-through")

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    # -- what this hub holds

    def local_kind(self, session: Any, name: str) -> str | None:
        """``local`` (published here, or synced by a mirror), ``pull-through``, or None (not here at all).

        A look-alike spelling of a package here (``a_b`` for ``a-b``) is that package."""
        found = packages.find_packages(session, [name]).get(name)
        if found is None:
            return None
        origin = session.get(PackageOrigin, found[0])
        return "pull-through" if origin is not None and origin.via == "pull-through" else "local"

    def remote_names(self, names: Iterable[str]) -> set[str]:
        """Of ``names``, those whose metadata comes from upstream: absent here, or pull-through copies."""
        names = sorted(set(names))
        with session_scope(self.context.engine) as session:
            found = packages.find_packages(session, names)  # look-alike spellings find the package
            ids = sorted({id_ for id_, _ in found.values()})
            via = dict(session.exec(select(PackageOrigin.package_id, PackageOrigin.via)
                                    .where(col(PackageOrigin.package_id).in_(ids))).all()) if ids else {}
        return {n for n in names if n not in found or via.get(found[n][0]) == "pull-through"}

    # -- stored documents

    def _stored(self, key: str) -> UpstreamDocument | None:
        with session_scope(self.context.engine) as session:
            return session.get(UpstreamDocument, key)

    def _store(self, key: str, upstream: str, doc: Any) -> None:
        with session_scope(self.context.engine, write=True) as session:
            row = session.get(UpstreamDocument, key) or UpstreamDocument(key=key, upstream=upstream, body="")
            row.upstream, row.body, row.fetched_at = upstream, copies.dumps(doc), utcnow()
            session.add(row)

    def _fresh(self, row: UpstreamDocument) -> bool:
        return row.fetched_at + timedelta(seconds=self.ttl) > utcnow()

    def _ordered(self, prefer: str | None) -> list[tuple[str, HubClient]]:
        items = list(self.clients.items())
        return sorted(items, key=lambda item: item[0] != prefer)

    def _ask(self, what: str, call: Callable[[HubClient], Any], prefer: str | None = None) -> tuple[str, Any] | None:
        """The first upstream's answer; None if every upstream says "not found".

        Raises ``upstream_unavailable`` when none has it and some could not be asked.
        """
        unreachable: list[str] = []
        for url, client in self._ordered(prefer):
            try:
                return url, call(client)
            except client_errors.HubNotFoundError:
                continue
            except client_errors.HubError as exc:
                unreachable.append(f"{url}: {exc.message}")
        if unreachable:
            raise HubError("upstream_unavailable", f"{what} is not on this hub and no upstream could be asked "
                           f"({'; '.join(unreachable)})", details={"upstreams": list(self.clients)})
        return None

    # -- documents

    def package_document(self, name: str, *, local: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
        """The upstream's package document. Raises ``package_not_found``, ``upstream_unavailable``."""
        key = f"package:{name}"
        stored = self._stored(key)
        if stored is not None and self._fresh(stored):
            return _decorate(json.loads(stored.body), stored.upstream)
        try:
            found = self._ask(name, lambda c: c.package(name), stored.upstream if stored else None)
        except HubError:
            if stored is not None:
                return _decorate(json.loads(stored.body), stored.upstream)
            if local is not None:
                return local()
            raise
        if found is None or not isinstance(found[1], dict) or found[1].get("private"):
            if local is not None:
                return local()
            raise HubError("package_not_found", f"no package {name} here or on any upstream")
        url, doc = found
        doc.pop("origin", None)
        self._store(key, url, doc)
        return _decorate(doc, url)

    def version_document(self, name: str, version: str) -> tuple[str, dict[str, Any]]:
        """The upstream (URL) and document of a version, fetched once and kept.

        Raises ``version_not_found``, ``upstream_unavailable``, ``upstream_invalid``.
        """
        key = f"version:{name}@{version}"
        stored = self._stored(key)
        if stored is not None:
            return stored.upstream, json.loads(stored.body)
        package = self._stored(f"package:{name}")
        prefer = package.upstream if package else None
        found = self._ask(f"{name}@{version}", lambda c: c.version(name, version), prefer)
        if found is None:
            raise HubError("version_not_found", f"{name} has no version {version} here or on any upstream")
        url, doc = found
        if not isinstance(doc, dict) or doc.get("package") != name or not isinstance(doc.get("manifest_toml"), str):
            raise HubError("upstream_invalid", f"{url} sent a malformed document for {name}@{version}")
        copies.file_list(doc)  # malformed file lists are refused before they are kept
        doc.pop("origin", None)
        self._store(key, url, doc)
        return url, doc

    def index(self, names: Iterable[str], *, known: Iterable[str] = ()) -> dict[str, Any]:
        """Resolver entries (``{"versions": [...]}``) of those of ``names`` some upstream has.

        Raises ``upstream_unavailable`` when a name is known nowhere (``known``: names this
        hub has entries of, the versions copied here) and some upstream was down.
        """
        out: dict[str, Any] = {}
        stale: dict[str, Any] = {}
        need = []
        for name in sorted(set(names)):
            stored = self._stored(f"index:{name}")
            if stored is not None and self._fresh(stored):
                out[name] = json.loads(stored.body)
            else:
                need.append(name)
                if stored is not None:
                    stale[name] = json.loads(stored.body)
        unreachable = []
        for url, client in self.clients.items():
            if not need:
                break
            try:
                body = client.index(need)
            except client_errors.HubError as exc:
                unreachable.append(f"{url}: {exc.message}")
                continue
            for name, entry in (body.get("packages") or {}).items():
                if name in need and isinstance(entry, dict):
                    self._store(f"index:{name}", url, entry)
                    out[name] = entry
            need = [n for n in need if n not in out]
        for name in list(need):
            if name in stale:
                out[name] = stale[name]
                need.remove(name)
        need = [n for n in need if n not in set(known)]
        if need and unreachable:
            raise HubError("upstream_unavailable", f"{', '.join(need)}: not on this hub and no upstream could be "
                           f"asked ({'; '.join(unreachable)})", details={"packages": need})
        return out

    # -- blobs

    def fetch_file(self, name: str, version: str, path: str) -> dict[str, Any]:
        """Make sure the blob of ``path`` in ``name@version`` is stored here; its file entry.

        Any upstream may send the bytes (they are checked against the digest first seen);
        the one the document came from is asked first. Raises ``file_not_found``,
        ``version_not_found``, ``upstream_invalid``, ``upstream_unavailable``.
        """
        url, doc = self.version_document(name, version)
        entry = next((f for f in copies.file_list(doc) if f["path"] == path), None)
        if entry is None:
            raise HubError("file_not_found", f"{name}@{doc['version']} has no file {path!r}")
        errors: list[HubError] = []
        for _source, client in self._ordered(url):
            try:
                self.fetcher.fetch(client, client.file_path(name, str(doc["version"]), path), entry["sha256"],
                                   entry["size"], what=f"{name}@{doc['version']}: {path}")
                break
            except HubError as exc:
                if exc.code not in ("upstream_unavailable", "upstream_invalid"):
                    raise
                errors.append(exc)
        else:
            invalid = [e for e in errors if e.code == "upstream_invalid"]
            raise (invalid or errors)[0]
        self._materialize(name, url, doc)
        return entry

    def _materialize(self, name: str, url: str, doc: dict[str, Any]) -> None:
        """Copy the version into the catalogue once all its blobs are here."""
        digests = {f["sha256"]: f["size"] for f in copies.file_list(doc)}
        if not all(self.fetcher.has(d, s) for d, s in digests.items()):
            return
        for attempt in range(2):
            try:
                with session_scope(self.context.engine, write=True) as session:
                    copies.copy_version(session, self.context.settings, {**doc, "package": name, "private": False},
                                        upstream=url, via="pull-through")
                break
            except HubError as exc:
                if exc.code != "version_exists":
                    raise
                break
            except sa.exc.IntegrityError:  # another request created the package at the same moment
                if attempt:
                    raise
                time.sleep(0.05)
        self.context.cache.invalidate(f"pkg:{name}")

    # -- the dependency-confusion guard

    def shadowed(self, name: str) -> bool:
        """Whether some upstream has a package ``name``. Raises ``upstream_unavailable`` when it cannot tell."""
        if self._stored(f"package:{name}") is not None:
            return True
        return self._ask(name, lambda c: c.package(name)) is not None


def _decorate(doc: dict[str, Any], upstream: str) -> dict[str, Any]:
    return {**doc, "origin": {"upstream": upstream, "via": "pull-through"}}
