"""Packages and versions: search, documents, publishing, yanking, roles and file downloads."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from sqlmodel import Session, select
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from cvflow.manifest import MANIFEST_FILENAME
from hub.api import bodies
from hub.api._http import Registry, dumps, json_response, principal, read_body, read_query
from hub.api.access import OPTIONAL, Access
from hub.api.downloads import blob_response
from hub.context import HubContext, PublicFile, PublicVersion, ctx, in_session, run_sync
from hub.db import session_scope
from hub.errors import HubError
from hub.mirror.copies import origin_json
from hub.mirror.upstream import UpstreamPool
from hub.models import File, Package, Version, row_id, utcnow
from hub.services import catalog, packages
from hub.services.accounts import ANONYMOUS, Principal, get_user

endpoint = Registry()
log = logging.getLogger(__name__)

_PKG = (("namespace", "path", "namespace (user or organisation)"), ("name", "path", "package name"))
_VER = (*_PKG, ("version", "path", "SemVer version"))
_PUBLISH_ERRORS = (
    "unauthenticated", "insufficient_scope", "forbidden", "namespace_not_found", "invalid_package_name",
    "invalid_manifest", "invalid_version", "invalid_path", "invalid_files", "missing_blobs", "version_exists", "version_deleted",
    "similar_name_exists",
    "manifest_mismatch",
    "body_too_large", "invalid_json", "name_shadows_upstream", "upstream_unavailable", "read_only",
)


def _cache_key(namespace: str, name: str) -> str:
    return f"pkg:{namespace}/{name}"


def _invalidate(request: Request, namespace: str, name: str) -> None:
    # The whole namespace: ``name`` may be a look-alike spelling of the package whose
    # canonical name is the cached key (only canonical spellings are cached).
    ctx(request).cache.invalidate(f"pkg:{namespace.lower()}/")


@endpoint("GET", "/api/v1/packages", "Search and list packages", "packages", access=OPTIONAL,
          errors=("invalid_field",), query=bodies.Search)
async def list_packages(request: Request) -> Response:
    who = await principal(request)
    q: bodies.Search = read_query(request)
    args: dict[str, Any] = dict(query=q.q.strip()[:200], task=q.task or None, tag=q.tag or None,
                namespace=q.namespace or None, kind=q.kind, sort=q.sort, page=q.page, per_page=q.per_page)
    return json_response(await in_session(request, catalog.search, who, **args))


@endpoint("POST", "/api/v1/index", "Versions and dependencies of many packages at once, for resolvers", "packages",
          access=OPTIONAL, errors=("upstream_unavailable",),
          body=bodies.Index,
          response={"type": "object", "properties": {"packages": {"type": "object"},
                                                     "missing": {"type": "array", "items": {"type": "string"}}}})
async def index(request: Request) -> Response:
    who = await principal(request)
    names = (await read_body(request)).packages
    result = await in_session(request, catalog.index, who, sorted(set(names)))
    pool = _pool(request)
    if pool is not None:
        remote = await run_sync(pool.remote_names, names)
        if remote:
            entries = await run_sync(partial(pool.index, remote, known=list(result["packages"])))
            result["packages"].update(entries)
            result["missing"] = sorted(set(result["missing"]) - entries.keys())
    return json_response(result)


@endpoint("GET", "/api/v1/packages/{namespace}/{name}", "A package with all its versions", "packages",
          access=OPTIONAL, errors=("package_not_found", "upstream_unavailable"), params=_PKG,
          headers={"ETag": "a digest of the document; send it back in If-None-Match"})
async def get_package(request: Request) -> Response:
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    hub = ctx(request)
    anonymous = "authorization" not in request.headers
    key = _cache_key(namespace, name)
    if anonymous:
        hit = hub.cache.get_stale(key)
        if hit is not None:
            body, etag, expired = hit
            if expired and hub.cache.begin_refresh(key):
                # This answer and those until the refresh is done get the expired document,
                # and no request waits for the database (a thundering herd every TTL).
                asyncio.get_running_loop().run_in_executor(None, _refresh, hub, _pool(request), key, namespace, name)
            return _document(request, body, etag)
    who = await principal(request)

    pool = _pool(request)
    generation = hub.cache.generation

    def local() -> dict[str, Any]:  # the versions copied here, for when no upstream answers
        # A session of its own: the pool calls this after the upstreams failed, long after the
        # request's unit of work closed (no session is held across calls to other hubs).
        with session_scope(hub.engine) as session:
            package = packages.get_package(session, who, namespace, name)
            return _with_origin(session, package, catalog.package_document(session, package))

    found = await in_session(request, _local_document, pool, who, namespace, name)
    if not isinstance(found, tuple):
        assert pool is not None
        doc = await run_sync(pool.package_document, f"{namespace}/{name}", local=local if found else None)
        found = dumps(doc), False
    body, private = found
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if anonymous and not private:
        hub.cache.put(key, body, etag, generation=generation)
    return _document(request, body, etag)


def _local_document(session: Session, pool: UpstreamPool | None, who: Principal, namespace: str,
                    name: str) -> tuple[bytes, bool] | str | None:
    """The package's document and whether it may not be cached, when it was published here;
    else what the pool knows of the name (``local_kind``)."""
    kind = pool.local_kind(session, f"{namespace}/{name}") if pool is not None else "local"
    if kind == "local":
        package = packages.get_package(session, who, namespace, name)
        doc = _with_origin(session, package, catalog.package_document(session, package))
        # Only a document asked for by its canonical name is cached: writes invalidate that name.
        return dumps(doc), package.private or package.full_name != f"{namespace}/{name}"
    return kind


def _refresh(hub: HubContext, pool: UpstreamPool | None, key: str, namespace: str, name: str) -> None:
    """Build an expired cached document again, in a thread, for anonymous readers. Whatever the
    answer is not (a package gone, made private, or served from an upstream), the entry goes
    and the next request takes the full path."""
    generation = hub.cache.generation
    try:
        with session_scope(hub.engine) as session:
            found = _local_document(session, pool, ANONYMOUS, namespace, name)
        if isinstance(found, tuple) and not found[1]:
            body = found[0]
            hub.cache.put(key, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', generation=generation)
        else:
            hub.cache.invalidate(key)
    except Exception:
        hub.cache.invalidate(key)
        log.debug("refreshing %s failed", key, exc_info=True)
    finally:
        hub.cache.end_refresh(key)


def _pool(request: Request) -> UpstreamPool | None:
    pool: UpstreamPool | None = request.app.state.upstreams  # app.state is untyped
    return pool


def _local_version(session: Session, who: Principal, pool: UpstreamPool | None,
                   p: Any) -> tuple[Package, Version] | None:
    """The package and version the path names, or None when the upstreams should answer instead.

    A miss is asked of the upstreams only when there are some and the package was not
    published here; any other miss raises.
    """
    try:
        package = packages.get_package(session, who, p["namespace"], p["name"], suggest=pool is None)
        return package, packages.get_version(session, package, p["version"])
    except HubError as exc:
        if pool is None or exc.code not in ("package_not_found", "version_not_found"):
            raise
        if pool.local_kind(session, f"{p['namespace']}/{p['name']}") == "local":
            raise
        return None


async def _refuse_shadowing(request: Request, full_name: str) -> None:
    """A new package whose name an upstream has would shadow it: refused unless allowed."""
    pool = _pool(request)
    hub = ctx(request)
    if pool is None or hub.settings.allow_shadowing:
        return

    # Before the publish's own unit of work: asking the upstreams is a network call, and no
    # session (nor SQLite's write lock) is held across one.
    if await in_session(request, pool.local_kind, full_name) is None and await run_sync(pool.shadowed, full_name):
        raise HubError("name_shadows_upstream", f"an upstream hub has a package {full_name}; a package of that name "
                       "here would shadow it (set CVFLOW_HUB_ALLOW_SHADOWING=1 to allow)",
                       details={"package": full_name})


def _with_origin(session: Any, package: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Copies of packages from another hub say where they came from."""
    origin = origin_json(session, package)
    if origin is not None:
        doc["origin"] = origin
    return doc


class _Document(Response):
    """A JSON document with its headers built once (the hot, cached read path)."""

    media_type = "application/json"

    def __init__(self, body: bytes, etag: str, *, not_modified: bool = False) -> None:
        self.status_code = 304 if not_modified else 200
        self.body = b"" if not_modified else body
        self.background = None
        self.raw_headers = [(b"etag", etag.encode()), (b"cache-control", b"no-cache")]
        if not not_modified:
            self.raw_headers += [(b"content-length", str(len(body)).encode()),
                                 (b"content-type", b"application/json")]


def _document(request: Request, body: bytes, etag: str) -> Response:
    return _Document(body, etag, not_modified=request.headers.get("if-none-match") == etag)


_DOCUMENT_PATH = re.compile(r"/api/v1/packages/([^/]+)/([^/]+)")


def cached_document(hub: HubContext, scope: Scope) -> Response | None:
    """The answer :func:`get_package` would give to an anonymous GET of a package document that
    the cache holds unexpired, or None (anything else, an expired entry included: the endpoint
    serves that one and refreshes it). No other endpoint's path has this shape (a test checks)."""
    if scope["method"] != "GET" or scope.get("query_string"):
        return None
    match = _DOCUMENT_PATH.fullmatch(get_route_path(scope))
    if match is None:
        return None
    if_none_match = None
    for key, value in scope["headers"]:
        if key == b"authorization":
            return None
        if key == b"if-none-match" and if_none_match is None:
            if_none_match = value.decode("latin-1")
    hit = hub.cache.get(_cache_key(*match.groups()))
    if hit is None:
        return None
    body, etag = hit
    return _Document(body, etag, not_modified=if_none_match == etag)


@endpoint("PATCH", "/api/v1/packages/{namespace}/{name}", "Change package settings (owners only)", "packages",
          access=Access("publish:pkg", role="package's owner"), errors=("unauthenticated", "forbidden", "package_not_found", "invalid_field"),
          params=_PKG, body=bodies.PackageSettings)
async def patch_package(request: Request) -> Response:
    who = await principal(request, required=True)
    private = (await read_body(request)).private
    namespace, name = request.path_params["namespace"], request.path_params["name"]

    def work(session: Session) -> dict[str, Any]:
        package = packages.update_package(session, who, namespace, name, private=private)
        session.flush()
        return catalog.package_document(session, package)

    doc = await in_session(request, work, write=True)
    _invalidate(request, namespace, name)
    return json_response(doc)


@endpoint("POST", "/api/v1/packages/{namespace}/{name}/versions",
          "Publish a version: its cvflow.toml and its file list; every blob must be uploaded first", "packages",
          access=Access("publish:pkg", role="package's owner or maintainer (for a new package: a member of its namespace)"),
          errors=_PUBLISH_ERRORS, status=201, params=_PKG,
          body=bodies.Publish)
async def publish(request: Request) -> Response:
    who = await principal(request, required=True)
    hub = ctx(request)
    body: bodies.Publish = await read_body(request, limit=hub.settings.max_manifest_size + 4 * 1024 * 1024)
    manifest, private = body.manifest, body.private
    files = [f.model_dump() for f in body.files]
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    await _refuse_shadowing(request, f"{namespace}/{name}")

    def work(session: Session) -> dict[str, Any]:
        version = packages.publish(session, hub.settings, who, namespace, name,
                                   manifest_toml=manifest, files=files, private=private)
        package = packages.get_package(session, who, namespace, name)
        return catalog.version_document(session, package, version)

    doc = await in_session(request, work, write=True)
    _invalidate(request, namespace, name)
    return json_response(doc, status=201, headers={"location": f"/api/v1/packages/{namespace}/{name}/versions/{doc['version']}"})


@endpoint("GET", "/api/v1/packages/{namespace}/{name}/versions/{version}",
          "A version: manifest, files with sizes and sha256, dependencies", "packages", access=OPTIONAL,
          errors=("package_not_found", "version_not_found", "upstream_unavailable", "upstream_invalid"), params=_VER)
async def get_version(request: Request) -> Response:
    who = await principal(request)
    p = request.path_params
    pool = _pool(request)

    def work(session: Session) -> dict[str, Any] | None:
        found = _local_version(session, who, pool, p)
        if found is None:
            return None
        package, version = found
        doc = catalog.version_document(session, package, version)
        doc["manifest_toml"] = version.manifest_toml  # mirrors copy the manifest byte for byte
        return _with_origin(session, package, doc)

    doc = await in_session(request, work)
    if doc is None:
        assert pool is not None
        url, upstream_doc = await run_sync(pool.version_document, f"{p['namespace']}/{p['name']}", p["version"])
        doc = {**upstream_doc, "origin": {"upstream": url, "via": "pull-through"}}
    return json_response(doc)


async def _version_change(request: Request, change: Callable[..., dict[str, Any]]) -> Response:
    """A change to one version that needs a reason (yank, unyank, delete): ``change(session, who,
    namespace, name, version, reason)`` makes it in one transaction and returns the answer."""
    who = await principal(request, required=True)
    reason = (await read_body(request)).reason
    p = request.path_params
    doc = await in_session(request, change, who, p["namespace"], p["name"], p["version"], reason, write=True)
    _invalidate(request, p["namespace"], p["name"])
    return json_response(doc)


async def _yank(request: Request, yanked: bool) -> Response:
    def change(session: Session, who: Principal, namespace: str, name: str, version: str, reason: str) -> dict[str, Any]:
        row = packages.set_yanked(session, who, namespace, name, version, yanked=yanked, reason=reason)
        return catalog.version_summary(row)

    return await _version_change(request, change)


_YANK: dict[str, Any] = dict(access=Access("publish:pkg", role="package's owner or maintainer"), params=_VER,
             errors=("unauthenticated", "insufficient_scope", "forbidden", "package_not_found", "version_not_found",
                     "invalid_field"),
             body=bodies.VersionChange)


@endpoint("POST", "/api/v1/packages/{namespace}/{name}/versions/{version}/yank",
          "Yank a version: resolvers skip it unless pinned; it is never deleted", "packages", **_YANK)
async def yank(request: Request) -> Response:
    return await _yank(request, True)


@endpoint("POST", "/api/v1/packages/{namespace}/{name}/versions/{version}/unyank", "Undo a yank", "packages", **_YANK)
async def unyank(request: Request) -> Response:
    return await _yank(request, False)


@endpoint("DELETE", "/api/v1/packages/{namespace}/{name}/versions/{version}",
          "Take a version down (administrators only): it disappears, mirrors drop it, its number is never reused",
          "packages", access=Access("admin", role="hub administrator"), params=_VER, status=200,
          errors=("unauthenticated", "forbidden", "package_not_found", "version_not_found", "invalid_field"),
          body=bodies.VersionChange,
          response={"type": "object", "properties": {"package": {"type": "string"}, "version": {"type": "string"},
                                                     "deleted": {"type": "boolean"}, "reason": {"type": "string"}}})
async def delete_version(request: Request) -> Response:
    def change(session: Session, who: Principal, namespace: str, name: str, version: str, reason: str) -> dict[str, Any]:
        row = packages.delete_version(session, who, namespace, name, version, reason=reason)
        return {"package": f"{namespace}/{name}", "version": row.version, "deleted": True, "reason": reason.strip()}

    return await _version_change(request, change)


@endpoint("GET", "/api/v1/packages/{namespace}/{name}/versions/{version}/files/{path:path}",
          "Download a file of a version (Range, ETag = sha256, If-None-Match); cvflow.toml counts a download",
          "packages",
          access=OPTIONAL, params=(*_VER, ("path", "path", "the file's path in the package")), request_type="",
          errors=("package_not_found", "version_not_found", "file_not_found", "invalid_range", "blob_not_found",
                  "upstream_unavailable", "upstream_invalid", "storage_unavailable"),
          headers={"ETag": "the quoted sha256 of the file", "Digest": "sha-256 of the whole file"})
async def download_file(request: Request) -> Response:
    who = await principal(request)
    p = request.path_params
    hub = ctx(request)
    rng = request.headers.get("range", "")
    # A version is downloaded once per fetch of its manifest, which every pull needs and a
    # client that already has the version does not fetch again (the way Hugging Face counts
    # a model's config file). Resumed ranges and 304s are not new downloads.
    counts = p["path"] == MANIFEST_FILENAME and (not rng or rng.replace(" ", "").startswith("bytes=0-"))
    # A public package's file is everyone's to read. The first miss of a public version reads
    # all its files at once (a pull asks for each of them next); the map is served without a
    # query until the cache's TTL, or until a change to the catalog on this replica clears it.
    key = (p["namespace"], p["name"], p["version"], p["path"])
    file = hub.cache.get_file(key)
    loader = False
    if file is None:
        pending = hub.cache.loading(key[:3])
        loader = pending is None
        if pending is not None:  # another request is reading this version's files
            await pending.wait()
            file = hub.cache.get_file(key)  # None: not a public file, or dropped since; ask
    if file is None:
        try:
            file = await _lookup_file(request, who, key)
        finally:
            if loader:
                hub.cache.loaded(key[:3])
        if file is None:  # fetched from an upstream, verified and stored, then sent from here
            pool = _pool(request)
            assert pool is not None
            entry = await run_sync(pool.fetch_file, f"{p['namespace']}/{p['name']}", p["version"], p["path"])
            return await blob_response(request, hub, entry["sha256"], entry["size"],
                                       filename=p["path"].rsplit("/", 1)[-1])
    etag = f'"{file.sha256}"'
    if request.headers.get("if-none-match") in (etag, "*"):
        return Response(status_code=304, headers={"etag": etag})
    if counts:  # counted in memory, written in batches (hub.context.DownloadCounter)
        hub.downloads.add(file.version_id, file.package_id)
    return await blob_response(request, hub, file.sha256, file.size, filename=file.path.rsplit("/", 1)[-1])


async def _lookup_file(request: Request, who: Principal, key: tuple[str, str, str, str]) -> PublicFile | None:
    """The file ``key`` names, or None when the upstreams should answer; a public version's
    whole file map goes into the cache on the way."""
    hub = ctx(request)
    pool = _pool(request)
    generation = hub.cache.generation  # taken before the query: see MetadataCache.put_version
    namespace, name, version_name, path = key

    def lookup(session: Session) -> tuple[PublicFile, PublicVersion | None] | None:
        found = _local_version(session, who, pool, {"namespace": namespace, "name": name, "version": version_name})
        if found is None:
            return None
        package, version = found
        ids = row_id(version), row_id(package)
        if package.private:
            row = session.exec(select(File).where(File.version_id == version.id, File.path == path)).first()
            hit = None if row is None else (row.sha256, row.size)
            public = None
        else:
            query = select(File.path, File.sha256, File.size).where(File.version_id == version.id)
            public = PublicVersion(*ids, {p: (sha256, size) for p, sha256, size in session.exec(query)})
            hit = public.files.get(path)
        if hit is None:
            raise HubError("file_not_found", f"{package.full_name}@{version.version} has no file {path!r}")
        return PublicFile(hit[0], hit[1], path, *ids), public

    found = await in_session(request, lookup)
    if found is None:
        return None
    file, public = found
    if public is not None:
        hub.cache.put_version(key[:3], public, generation=generation)
    return file


@endpoint("GET", "/api/v1/packages/{namespace}/{name}/downloads", "Downloads per day over the last 90 days",
          "packages", access=OPTIONAL, errors=("package_not_found",), params=_PKG)
async def downloads(request: Request) -> Response:
    who = await principal(request)
    p = request.path_params

    def work(session: Session) -> dict[str, Any]:
        package = packages.get_package(session, who, p["namespace"], p["name"])
        since = (utcnow() - timedelta(days=90)).date()
        return {"package": package.full_name, "total": package.downloads,
                "days": catalog.download_history(session, package, since)}

    return json_response(await in_session(request, work))


@endpoint("PUT", "/api/v1/packages/{namespace}/{name}/roles/{user}", "Make a user owner or maintainer (owners only)",
          "packages", access=Access("publish:pkg", role="package's owner"), params=(*_PKG, ("user", "path", "user name")),
          errors=("unauthenticated", "forbidden", "package_not_found", "user_not_found", "invalid_field"),
          status=204, body=bodies.PackageRole)
async def put_role(request: Request) -> Response:
    return await _role(request, await read_body(request))


@endpoint("DELETE", "/api/v1/packages/{namespace}/{name}/roles/{user}", "Remove a user's role (owners only)",
          "packages", access=Access("publish:pkg", role="package's owner"), params=(*_PKG, ("user", "path", "user name")),
          errors=("unauthenticated", "forbidden", "package_not_found", "user_not_found"), status=204)
async def delete_role(request: Request) -> Response:
    return await _role(request, None)


async def _role(request: Request, body: bodies.PackageRole | None) -> Response:
    who = await principal(request, required=True)
    role = body.role if body is not None else None
    p = request.path_params

    def work(session: Session) -> None:
        packages.set_role(session, who, p["namespace"], p["name"], get_user(session, p["user"]), role)

    await in_session(request, work, write=True)
    _invalidate(request, p["namespace"], p["name"])
    return Response(status_code=204)
