"""The Hugging Face Hub's read protocol over HTTP: ``huggingface_hub`` with ``HF_ENDPOINT`` set to the hub.

The revisions, commit ids and documents are :mod:`hub.services.hf`'s; the mapping, and what is
not served, is in docs/huggingface.md. Lookups and visibility are the native API's: a private
package the caller may not read is "not found", as on ``/api/v1``. A miss answers 404 with the
``X-Error-Code`` the client maps to its error classes (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``). A file is sent by the native download path
(:func:`hub.api.downloads.blob_response`: ``X-Accel-Redirect``, a presigned redirect, or the
bytes), and a ``GET`` of ``cvflow.toml`` counts a download as it does there; ``HEAD``, which the
client sends before every download and every cache check, answers the metadata only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Literal

from pydantic import Field
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from cvflow.manifest import MANIFEST_FILENAME
from hub.api._http import Registry, json_response, principal, read_query
from hub.api.access import OPTIONAL
from hub.api.bodies import Query, QueryInt
from hub.api.downloads import blob_response
from hub.context import ctx, in_session
from hub.errors import HubError
from hub.models import File, row_id
from hub.services import catalog, hf, packages
from hub.services.hf import MAIN, commit_id

endpoint = Registry()

#: ``/{namespace}/{name}/resolve/{revision}/{path}``: the one website-shaped path the protocol owns.
RESOLVE_PATH = re.compile(r"^/[^/]+/[^/]+/resolve/[^/]+/")
#: The client's error classes, by the hub's codes.
_HF_CODES = {"package_not_found": "RepoNotFound", "version_not_found": "RevisionNotFound",
             "file_not_found": "EntryNotFound"}

_PKG = (("namespace", "path", "namespace (user or organisation)"), ("name", "path", "package name"))
_REV = (*_PKG, ("version", "path", f"the revision: a version, `{MAIN}` (the latest version not yanked) "
                                   "or a version's 40-character commit id"))
_FILE = (*_REV, ("path", "path", "the file's path in the package"))
_NOT_FOUND = ("package_not_found", "version_not_found")
_HEADERS = {"X-Error-Code": "on a 404: `RepoNotFound`, `RevisionNotFound` or `EntryNotFound`"}


def is_resolve_path(path: str) -> bool:
    return RESOLVE_PATH.match(path) is not None


# --- endpoints ------------------------------------------------------------------------------


def _hf_errors(func: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Misses answered with the ``X-Error-Code`` the client maps to its error classes."""

    @wraps(func)
    async def handler(request: Request) -> Response:
        try:
            return await func(request)
        except HubError as exc:
            hf_code = _HF_CODES.get(exc.code)
            if hf_code is None:
                raise
            headers = {"x-error-code": hf_code}
            commit = exc.details.pop("commit", None)
            if commit:  # the client remembers that the file is absent at this commit
                headers["x-repo-commit"] = commit
            return json_response(exc.body(), status=exc.status, headers=headers)

    return handler


ModelSort = Literal["downloads", "lastModified", "createdAt", "likes", "trendingScore", "id"]
_SORTS: dict[str, catalog.Sort] = {"lastModified": "recent", "createdAt": "recent", "id": "name"}


class ModelSearch(Query):
    search: str = Field(default="", description="text to find in names, descriptions and tags")
    author: str | None = Field(default=None, description="only this namespace")
    filter: str | None = Field(default=None, description="a tag")
    pipeline_tag: str | None = Field(default=None, description="a task as Hugging Face names it, e.g. object-detection")
    sort: ModelSort = Field(default="downloads", description="the order (likes and trendingScore: by downloads)")
    limit: QueryInt = Field(default=catalog.MAX_PER_PAGE, ge=1, le=1_000_000,
                            description=f"results per page (at most {catalog.MAX_PER_PAGE} a page; "
                                        "the `Link` header names the next page)")
    page: QueryInt = Field(default=1, ge=1, le=1_000_000, description="page number, from 1")


class TreeQuery(Query):
    recursive: bool = Field(default=False, description="list the folders' contents too")
    expand: bool = Field(default=False, description="accepted; no more is known of a file than its size and hashes")


_LIST = {"type": "array", "items": {"type": "object"}}


@endpoint("GET", "/api/models", "Hugging Face protocol: search models (list_models)", "huggingface",
          access=OPTIONAL, query=ModelSearch, response=_LIST, headers={"Link": "the next page, rel=\"next\""})
async def list_models(request: Request) -> Response:
    who = await principal(request)
    q: ModelSearch = read_query(request)
    task = hf.TASKS.get(q.pipeline_tag, q.pipeline_tag) if q.pipeline_tag else None
    per_page = min(q.limit, catalog.MAX_PER_PAGE)
    found = await in_session(request, catalog.search, who, query=q.search.strip()[:200], namespace=q.author or None,
                             tag=q.filter or None, task=task, kind="model", sort=_SORTS.get(q.sort, "downloads"),
                             page=q.page, per_page=per_page)
    headers = {}
    if q.page * per_page < found["total"]:
        headers["link"] = f'<{request.url.include_query_params(page=q.page + 1)}>; rel="next"'
    return json_response([hf.model_summary(p) for p in found["results"]], headers=headers)


async def _model_info(request: Request, revision: str) -> Response:
    who = await principal(request)
    p = request.path_params

    def work(session: Session) -> dict[str, Any]:
        package, version = hf.resolve(session, who, p["namespace"], p["name"], revision)
        return hf.model_document(session, package, version)

    return json_response(await in_session(request, work))


@endpoint("GET", "/api/models/{namespace}/{name}", "Hugging Face protocol: a model at main (model_info)",
          "huggingface", access=OPTIONAL, errors=_NOT_FOUND, params=_PKG, headers=_HEADERS)
@_hf_errors
async def model_info(request: Request) -> Response:
    return await _model_info(request, MAIN)


@endpoint("GET", "/api/models/{namespace}/{name}/revision/{version}",
          "Hugging Face protocol: a model at a revision (model_info, snapshot_download)", "huggingface",
          access=OPTIONAL, errors=_NOT_FOUND, params=_REV, headers=_HEADERS)
@_hf_errors
async def model_info_at(request: Request) -> Response:
    return await _model_info(request, request.path_params["version"])


@endpoint("GET", "/api/models/{namespace}/{name}/refs", "Hugging Face protocol: main and the versions as tags "
          "(list_repo_refs)", "huggingface", access=OPTIONAL, errors=("package_not_found",), params=_PKG,
          headers=_HEADERS)
@_hf_errors
async def list_refs(request: Request) -> Response:
    who = await principal(request)
    p = request.path_params

    def work(session: Session) -> dict[str, Any]:
        return hf.refs(session, packages.get_package(session, who, p["namespace"], p["name"]))

    return json_response(await in_session(request, work))


async def _tree(request: Request) -> Response:
    who = await principal(request)
    p = request.path_params
    q: TreeQuery = read_query(request)

    def work(session: Session) -> list[dict[str, Any]]:
        package, version = hf.resolve(session, who, p["namespace"], p["name"], p["version"])
        commit = commit_id(package.full_name, version.version)
        entries = hf.tree(hf.files(session, version), p.get("path", ""), q.recursive, commit)
        if entries is None:
            raise HubError("file_not_found", f"{package.full_name}@{version.version} has no folder {p['path']!r}",
                           details={"commit": commit})
        return entries

    return json_response(await in_session(request, work))


@endpoint("GET", "/api/models/{namespace}/{name}/tree/{version}",
          "Hugging Face protocol: the files at a revision (list_repo_tree, list_repo_files)", "huggingface",
          access=OPTIONAL, errors=_NOT_FOUND, params=_REV, query=TreeQuery, response=_LIST, headers=_HEADERS)
@_hf_errors
async def list_tree(request: Request) -> Response:
    return await _tree(request)


@endpoint("GET", "/api/models/{namespace}/{name}/tree/{version}/{path:path}",
          "Hugging Face protocol: a folder's files at a revision (list_repo_tree)", "huggingface",
          access=OPTIONAL, errors=(*_NOT_FOUND, "file_not_found"),
          params=(*_REV, ("path", "path", "a folder in the package")), query=TreeQuery, response=_LIST,
          headers=_HEADERS)
@_hf_errors
async def list_folder(request: Request) -> Response:
    return await _tree(request)


@endpoint("GET", "/{namespace}/{name}/resolve/{version}/{path:path}",
          "Hugging Face protocol: a file at a revision (hf_hub_download; HEAD: its metadata only). "
          "A GET of cvflow.toml counts a download", "huggingface",
          access=OPTIONAL, params=_FILE, request_type="",
          errors=(*_NOT_FOUND, "file_not_found", "invalid_range", "blob_not_found", "storage_unavailable"),
          also={302: "the file, at a presigned URL of the blob store", 304: "the file is the one of If-None-Match"},
          headers={"X-Repo-Commit": "the revision's commit id", "ETag": "the quoted sha256 of the file",
                   "X-Linked-Etag": "the same", "X-Linked-Size": "the file's size", **_HEADERS})
@_hf_errors
async def resolve_file(request: Request) -> Response:
    who = await principal(request)
    p = request.path_params
    head = request.method == "HEAD"
    rng = request.headers.get("range", "")
    # Counted as the native download is: a whole (or from-the-start) GET of the manifest.
    counts = not head and p["path"] == MANIFEST_FILENAME and (not rng or rng.replace(" ", "").startswith("bytes=0-"))

    def lookup(session: Session) -> tuple[str, File, bool, tuple[int, int]]:
        package, version = hf.resolve(session, who, p["namespace"], p["name"], p["version"])
        file = hf.find_file(session, package, version, p["path"])
        fresh = request.headers.get("if-none-match") in (f'"{file.sha256}"', "*")
        return commit_id(package.full_name, version.version), file, fresh, (row_id(version), row_id(package))

    commit, file, fresh, ids = await in_session(request, lookup)
    if counts and not fresh:  # counted in memory, written in batches (hub.context.DownloadCounter)
        ctx(request).downloads.add(*ids)
    meta = {"x-repo-commit": commit, "etag": f'"{file.sha256}"', "x-linked-etag": f'"{file.sha256}"',
            "x-linked-size": str(file.size)}
    if head:
        return Response(headers={**meta, "content-length": str(file.size), "accept-ranges": "bytes",
                                 "content-type": "application/octet-stream"})
    if fresh:
        return Response(status_code=304, headers=meta)
    response = await blob_response(request, ctx(request), file.sha256, file.size, filename=file.path.rsplit("/", 1)[-1])
    response.headers.update(meta)
    return response
