"""Git repositories the indexer turns into packages: register, read results, re-index, webhooks."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from hub.api import bodies
from hub.api._http import Registry, json_response, principal, read_body
from hub.api.access import OPTIONAL, PUBLIC, Access
from hub.context import ctx, in_session
from hub.errors import HubError
from hub.models import Repository
from hub.services import packages, webhooks
from hub.services import repositories as registry

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


@endpoint("POST", "/api/v1/repositories", "Register a git repository; its SemVer tags become versions",
          "repositories", access=Access("publish:any", target="body:namespace",
                                       role="member of the namespace (owner, for an organisation)"),
          status=201, response=_DOC,
          errors=("insufficient_scope", "forbidden", "namespace_not_found", "invalid_repository_url",
                  "repository_exists"),
          body=bodies.NewRepository)
async def register(request: Request) -> Response:
    who = await principal(request, required=True)
    body: bodies.NewRepository = await read_body(request)
    hub = ctx(request)

    def work(session: Session) -> dict[str, Any]:
        repo = registry.register(session, hub.settings, who, url=body.url, namespace=body.namespace,
                                 subdir=body.subdir, branch_pattern=body.branch_pattern,
                                 tag_pattern=body.tag_pattern, private=body.private)
        session.flush()
        return registry.document(session, who, repo)

    doc = await in_session(request, work, write=True)
    return json_response(doc, status=201, headers={"location": f"/api/v1/repositories/{doc['id']}"})


@endpoint("GET", "/api/v1/repositories", "The repositories you manage", "repositories", access=Access("read"),
          response={"type": "object", "properties": {"repositories": {"type": "array", "items": _DOC}}})
async def list_repositories(request: Request) -> Response:
    who = await principal(request, required=True)

    def work(session: Session) -> dict[str, Any]:
        return {"repositories": [registry.document(session, who, r) for r in registry.list_managed(session, who)]}

    return json_response(await in_session(request, work))


@endpoint("GET", "/api/v1/repositories/{repository_id:id}",
          "A repository and its last result: indexed versions, skipped tags with reasons, moved tags, errors",
          "repositories", access=OPTIONAL, errors=("repository_not_found",), params=_ID, response=_DOC)
async def get_repository(request: Request) -> Response:
    who = await principal(request)
    repository_id = request.path_params["repository_id"]

    def work(session: Session) -> dict[str, Any]:
        return registry.document(session, who, registry.get_repository(session, who, repository_id))

    return json_response(await in_session(request, work))


@endpoint("DELETE", "/api/v1/repositories/{repository_id:id}",
          "Unregister a repository; the versions it published stay", "repositories",
          access=Access("publish:any", target="repository",
                        role="repository's manager (its registrant, or an owner of its namespace or package)"),
          errors=("repository_not_found", "forbidden"), params=_ID, status=204)
async def delete_repository(request: Request) -> Response:
    who = await principal(request, required=True)
    repository_id = request.path_params["repository_id"]

    def work(session: Session) -> None:
        registry.unregister(session, registry.get_repository(session, who, repository_id, manage=True))

    await in_session(request, work, write=True)
    return Response(status_code=204)


@endpoint("POST", "/api/v1/repositories/{repository_id:id}/reindex", "Queue a re-index now", "repositories",
          access=Access("publish:any", target="repository",
                        role="repository's manager (its registrant, or an owner of its namespace or package)"), errors=("repository_not_found", "forbidden"), params=_ID, status=202,
          response={"type": "object", "properties": {"queued": {"type": "boolean"}, "job": {"type": "integer"}}})
async def reindex(request: Request) -> Response:
    who = await principal(request, required=True)
    repository_id = request.path_params["repository_id"]

    def work(session: Session) -> int:
        return registry.reindex(session, registry.get_repository(session, who, repository_id, manage=True))

    return json_response({"queued": True, "job": await in_session(request, work, write=True)}, status=202)


@endpoint("POST", "/api/v1/repositories/{repository_id:id}/webhook",
          "Webhook for push and tag events from GitHub (X-Hub-Signature-256), GitLab (X-Gitlab-Token) or Gitea "
          "(X-Gitea-Signature), signed with the repository's secret", "repositories", access=PUBLIC,
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
    repository_id = request.path_params["repository_id"]

    def work(session: Session) -> dict[str, Any]:
        repo = session.get(Repository, repository_id)
        if repo is None:
            raise HubError("repository_not_found", f"no repository {repository_id}")
        event = webhooks.verify(request.headers, bytes(body), repo.webhook_secret)
        if not event.relevant:
            return {"queued": False, "event": event.event}
        return {"queued": True, "event": event.event, "job": registry.reindex(session, repo)}

    return json_response(await in_session(request, work, write=True), status=202)


@endpoint("GET", "/api/v1/packages/{namespace}/{name}/repository",
          "The git repository a package is indexed from, with its last result (moved tags included)",
          "repositories", access=OPTIONAL, errors=("package_not_found", "repository_not_found"),
          params=(("namespace", "path", "namespace (user or organisation)"), ("name", "path", "package name")),
          response=_DOC)
async def package_repository(request: Request) -> Response:
    who = await principal(request)
    namespace, name = request.path_params["namespace"], request.path_params["name"]

    def work(session: Session) -> dict[str, Any]:
        package = packages.get_package(session, who, namespace, name)
        repo = registry.for_package(session, package)
        if repo is None:
            raise HubError("repository_not_found", f"{package.full_name} is not indexed from a git repository")
        return registry.document(session, who, repo)

    return json_response(await in_session(request, work))
