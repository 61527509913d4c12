"""Plumbing shared by the API modules: endpoint registry, auth and JSON.

The hub context and the request's unit of work are public, in :mod:`hub.context`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cvflow.safeparse import TooDeepError, loads_json
from hub.api.access import Access
from hub.api.bodies import Body, Query, parse
from hub.context import ctx, run_sync
from hub.db import session_scope
from hub.errors import ErrorCode, HubError
from hub.services.accounts import ANONYMOUS, Principal, resolve_token, touch_token

#: A request handler, returned unchanged by the endpoint decorator.
H = TypeVar("H", bound=Callable[[Request], Awaitable[Response]])


@dataclass
class Endpoint:
    """A route plus what the OpenAPI document says about it."""

    method: str
    path: str
    func: Callable[..., Any]
    summary: str
    tag: str
    access: Access  # who may call it; enforced by ``guarded`` before the handler runs
    errors: tuple[ErrorCode, ...] = ()
    request: dict[str, Any] | None = None  # a body that is not JSON (its schema); JSON bodies are ``body``
    body: type[Body] | None = None  # validates and documents the JSON body: ``await read_body(request)``
    query: type[Query] | None = None  # validates and documents the query string: ``read_query(request)``
    request_type: str = "application/json"
    response: dict[str, Any] | None = None
    status: int = 200
    #: Other success answers the endpoint gives: status -> what it means (e.g. 204: nothing to claim).
    also: dict[int, str] = field(default_factory=dict)
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def auth(self) -> str:
        return self.access.auth

    def route(self) -> Route:
        return Route(self.path, self.func, methods=[self.method])


def guarded(access: Access, func: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``func`` behind its declared access: the token's scope is checked before the handler runs."""
    if access.scope == "public":
        return func

    @wraps(func)
    async def handler(request: Request) -> Response:
        who = await principal(request, required=access.auth == "required")
        access.check(who, request.path_params)
        return await func(request)

    return handler


def with_models(body: type[Body] | None, query: type[Query] | None,
                func: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``func`` with its registered models at hand for :func:`read_body` and :func:`read_query`."""
    if body is None and query is None:
        return func

    @wraps(func)
    async def handler(request: Request) -> Response:
        request.scope["cvflow.models"] = (body, query)
        return await func(request)

    return handler


#: Methods that never write; any other method is refused by a read-only hub ...
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ... except on these paths: reading the resolver index, signing in, managing tokens.
READ_ONLY_ALLOWED = ("/api/v1/index", "/api/v1/auth/", "/api/v1/tokens")


class Registry:
    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def __call__(self, method: str, path: str, summary: str, tag: str, *, access: Access,
                 **meta: Any) -> Callable[[H], H]:
        errors = list(meta.pop("errors", ()))
        # What the shared plumbing can raise is documented on every endpoint that uses it.
        if access.auth != "none":
            errors.append("unauthenticated")
        if access.auth == "required" and access.scope != "token":
            errors.append("insufficient_scope")
        if access.role:
            errors.append("forbidden")
        if meta.get("body") is not None:
            errors += ["invalid_json", "too_deep", "body_too_large", "invalid_field", *meta["body"].codes.values()]
        if meta.get("query") is not None:
            errors += ["invalid_field", *meta["query"].codes.values()]
        if method not in SAFE_METHODS and not path.startswith(READ_ONLY_ALLOWED):
            errors.append("read_only")  # answered by hub.mirror.middleware when the hub is read-only
        meta["errors"] = tuple(dict.fromkeys(errors))

        def register(func: H) -> H:
            handler = with_models(meta.get("body"), meta.get("query"), func)
            self.endpoints.append(Endpoint(method, path, guarded(access, handler), summary, tag,
                                           access, **meta))
            return func

        return register


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HubError("unauthenticated", "use 'Authorization: Bearer <token>'")
    return value.strip()


async def principal(request: Request, *, required: bool = False) -> Principal:
    """Who is calling. Raises ``unauthenticated`` for a bad token, or for none when required.

    Resolved once per request: the access check and the handler share the answer.
    """
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None:
        who = await _resolve_principal(request)
        request.state.principal = who
    if required and who.user is None:
        raise HubError("unauthenticated", "this action needs an API token ('Authorization: Bearer ...')")
    return who


async def _resolve_principal(request: Request) -> Principal:
    token = bearer_token(request)
    if token is None:
        return ANONYMOUS
    hub = ctx(request)

    # Its own short session, not the handler's unit of work: the principal is resolved before
    # the handler runs (the access check needs it), once per request, and a stale last_used is
    # touched in a separate write so a read-only request never takes SQLite's write lock.
    def resolve() -> Principal:
        with session_scope(hub.engine) as session:
            who = resolve_token(session, token)
        if who.stale_last_used and who.token_id is not None:
            touch_token(hub.engine, who.token_id)
        return who

    return await run_sync(resolve)


async def read_bytes(request: Request, limit: int, what: str = "the body") -> bytearray:
    """The whole body, refused with ``body_too_large`` past ``limit`` bytes (before reading any,
    when Content-Length says so)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HubError("body_too_large", f"{what} may be at most {limit} bytes", details={"limit": limit})
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HubError("body_too_large", f"{what} may be at most {limit} bytes", details={"limit": limit})
    return body


async def read_json(request: Request, limit: int = 1 << 20) -> dict[str, Any]:
    body = await read_bytes(request, limit, "the JSON body")
    try:
        data = loads_json(body)  # nesting is bounded before parsing: no RecursionError
    except TooDeepError as exc:
        raise HubError("too_deep", f"the JSON body is nested more than {exc.max_depth} levels deep") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise HubError("invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HubError("invalid_json", "the body must be a JSON object")
    return data


async def read_body(request: Request, limit: int = 1 << 20) -> Any:
    """The JSON body, validated by the model the endpoint registered (``body=``)."""
    body, _ = request.scope["cvflow.models"]
    return parse(body, await read_json(request, limit))


def read_query(request: Request) -> Any:
    """The query string, validated by the model the endpoint registered (``query=``)."""
    _, query = request.scope["cvflow.models"]
    return parse(query, dict(request.query_params))


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


def field_str(data: dict[str, Any], key: str, *, required: bool = True, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise HubError("invalid_field", f"'{key}' must be a string")
    return value


def query_int(request: Request, key: str, default: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise HubError("invalid_field", f"'{key}' must be an integer") from exc
