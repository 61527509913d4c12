"""Git repositories the indexer turns into packages: register, read results, re-index, webhooks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hub.api._http import Registry, ctx, json_response, principal, read_json, run_sync
from hub.db import session_scope
from hub.errors import HubError
from hub.models import Repository
from hub.services import packages
from indexer import registry, webhooks

endpoint = Registry()

_ID = (("repository_id", "path", "the repository's id"),)
_WEBHOOK_BODY_LIMIT = 25 << 20  # GitHub's own cap on payloads
_DOC = {"type": "object", "properties": {
    "id": {"type": "integer"}, "url": {"type": "string", "description": "without credentials"},
    "namespace": {"type": "string"}, "package": {"type": ["string", "null"]}, "subdir": {"type": "string"},
    "branch_pattern": {"type": ["string", "null"]}, "tag_pattern": {"type": ["string", "null"]},
    "status": {"type": "string", "description": "new, queued, indexing, ok or error"},
    "last_result": {"type": ["object", "null"], "description": "versions, skipped tags with reasons, moved tags, "
                                                                 "errors and notes of the last run"},
    "webhook_url": {"type": "string"},
    "webhook_secret": {"type": "string", "description": "only for those who manage the repository"}}}


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise HubError("invalid_field", f"'{key}' must be a string")
    return value


@endpoint("POST", "/api/v1/repositories", "Register a git repository; its SemVer tags become versions",
          "repositories", auth="required", status=201, response=_DOC,
          errors=("insufficient_scope", "forbidden", "namespace_not_found", "invalid_repository_url",
                  "repository_exists"),
          request={"type": "object", "required": ["url"], "properties": {
              "url": {"type": "string", "description": "https://, http:// or git:// URL of the repository"},
              "namespace": {"type": "string", "description": "where its package goes [default: your own]"},
              "subdir": {"type": "string", "description": "the package's directory in the repository"},
              "branch_pattern": {"type": "string", "description": "only tags on a branch matching this glob"},
              "tag_pattern": {"type": "string", "description": "only tags matching this glob, e.g. v*"},
              "private": {"type": "boolean", "description": "make the package it creates private"}}})
async def register(request: Request) -> Response:
    who = await principal(request, required=True)
    data = await read_json(request)
    private = data.get("private", False)
    if not isinstance(private, bool):
        raise HubError("invalid_field", "'private' must be true or false")
    if not isinstance(data.get("url"), str):
        raise HubError("invalid_field", "'url' must be a string")
    namespace = _optional_str(data, "namespace")
    hub = ctx(request)

    def work() -> dict[str, Any]:
        with session_scope(hub.engine, write=True) as session:
            repo = registry.register(session, hub.settings, who, url=data["url"], namespace=namespace,
                                     subdir=data.get("subdir"), branch_pattern=data.get("branch_pattern"),
                                     tag_pattern=data.get("tag_pattern"), private=private)
            session.flush()
            return registry.document(session, who, repo)

    doc = await run_sync(work)
    return json_response(doc, status=201, headers={"location": f"/api/v1/repositories/{doc['id']}"})


@endpoint("GET", "/api/v1/repositories", "The repositories you manage", "repositories", auth="required",
          response={"type": "object", "properties": {"repositories": {"type": "array", "items": _DOC}}})
async def list_repositories(request: Request) -> Response:
    who = await principal(request, required=True)
    hub = ctx(request)

    def work() -> dict[str, Any]:
        with session_scope(hub.engine) as session:
            return {"repositories": [registry.document(session, who, r) for r in registry.list_managed(session, who)]}

    return json_response(await run_sync(work))


@endpoint("GET", "/api/v1/repositories/{repository_id:int}",
          "A repository and its last result: indexed versions, skipped tags with reasons, moved tags, errors",
          "repositories", auth="optional", errors=("repository_not_found",), params=_ID, response=_DOC)
async def get_repository(request: Request) -> Response:
    who = await principal(request)
    hub = ctx(request)
    repository_id = request.path_params["repository_id"]

    def work() -> dict[str, Any]:
        with session_scope(hub.engine) as session:
            return registry.document(session, who, registry.get_repository(session, who, repository_id))

    return json_response(await run_sync(work))


@endpoint("DELETE", "/api/v1/repositories/{repository_id:int}",
          "Unregister a repository; the versions it published stay", "repositories", auth="required",
          errors=("repository_not_found", "forbidden"), params=_ID, status=204)
async def delete_repository(request: Request) -> Response:
    who = await principal(request, required=True)
    hub = ctx(request)
    repository_id = request.path_params["repository_id"]

    def work() -> None:
        with session_scope(hub.engine, write=True) as session:
            registry.unregister(session, registry.get_repository(session, who, repository_id, manage=True))

    await run_sync(work)
    return Response(status_code=204)


@endpoint("POST", "/api/v1/repositories/{repository_id:int}/reindex", "Queue a re-index now", "repositories",
          auth="required", errors=("repository_not_found", "forbidden"), params=_ID, status=202,
          response={"type": "object", "properties": {"queued": {"type": "boolean"}, "job": {"type": "integer"}}})
async def reindex(request: Request) -> Response:
    who = await principal(request, required=True)
    hub = ctx(request)
    repository_id = request.path_params["repository_id"]

    def work() -> int:
        with session_scope(hub.engine, write=True) as session:
            return registry.reindex(session, registry.get_repository(session, who, repository_id, manage=True))

    return json_response({"queued": True, "job": await run_sync(work)}, status=202)


@endpoint("POST", "/api/v1/repositories/{repository_id:int}/webhook",
          "Webhook for push and tag events from GitHub (X-Hub-Signature-256), GitLab (X-Gitlab-Token) or Gitea "
          "(X-Gitea-Signature), signed with the repository's secret", "repositories",
          errors=("bad_request", "invalid_signature", "repository_not_found", "body_too_large"), params=_ID,
          status=202, request_type="",
          response={"type": "object", "properties": {"queued": {"type": "boolean"}, "event": {"type": "string"},
                                                     "job": {"type": "integer"}}})
async def webhook(request: Request) -> Response:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > _WEBHOOK_BODY_LIMIT:
        raise HubError("body_too_large", f"webhook bodies may be at most {_WEBHOOK_BODY_LIMIT} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _WEBHOOK_BODY_LIMIT:
            raise HubError("body_too_large", f"webhook bodies may be at most {_WEBHOOK_BODY_LIMIT} bytes")
    hub = ctx(request)
    repository_id = request.path_params["repository_id"]

    def work() -> dict[str, Any]:
        with session_scope(hub.engine, write=True) as session:
            repo = session.get(Repository, repository_id)
            if repo is None:
                raise HubError("repository_not_found", f"no repository {repository_id}")
            event = webhooks.verify(request.headers, bytes(body), repo.webhook_secret)
            if not event.relevant:
                return {"queued": False, "event": event.event}
            return {"queued": True, "event": event.event, "job": registry.reindex(session, repo)}

    return json_response(await run_sync(work), status=202)


@endpoint("GET", "/api/v1/packages/{namespace}/{name}/repository",
          "The git repository a package is indexed from, with its last result (moved tags included)",
          "repositories", auth="optional", errors=("package_not_found", "repository_not_found"),
          params=(("namespace", "path", "namespace (user or organisation)"), ("name", "path", "package name")),
          response=_DOC)
async def package_repository(request: Request) -> Response:
    who = await principal(request)
    hub = ctx(request)
    namespace, name = request.path_params["namespace"], request.path_params["name"]

    def work() -> dict[str, Any]:
        with session_scope(hub.engine) as session:
            package = packages.get_package(session, who, namespace, name)
            repo = registry.for_package(session, package)
            if repo is None:
                raise HubError("repository_not_found", f"{package.full_name} is not indexed from a git repository")
            return registry.document(session, who, repo)

    return json_response(await run_sync(work))
