"""Plumbing shared by the API modules: the hub context, endpoint registry, auth and JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cvflow.safeparse import TooDeepError, loads_json
from hub.db import session_scope
from hub.errors import HubError
from hub.services.accounts import ANONYMOUS, Principal, resolve_token, touch_token
from hub.services.blobs import UploadService
from hub.settings import Settings
from hub.storage import BlobStore

T = TypeVar("T")


class MetadataCache:
    """Rendered public documents for a short time, so hot reads skip the database.

    Writes on this replica invalidate at once; other replicas expire entries after ``ttl``.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, bytes, str]] = {}

    def get(self, key: str) -> tuple[bytes, str] | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1], item[2]

    def put(self, key: str, body: bytes, etag: str) -> None:
        if self.ttl > 0:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, body, etag)

    def invalidate(self, prefix: str) -> None:
        for key in [k for k in self._items if k.startswith(prefix)]:
            self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


@dataclass
class HubContext:
    settings: Settings
    engine: Engine
    store: BlobStore
    hasher: PasswordHasher
    uploads: UploadService
    cache: MetadataCache
    schema_head: str


@dataclass
class Endpoint:
    """A route plus what the OpenAPI document says about it."""

    method: str
    path: str
    func: Callable[..., Any]
    summary: str
    tag: str
    auth: str = "none"  # "none" | "optional" | "required"
    errors: tuple[str, ...] = ()
    request: dict[str, Any] | None = None
    request_type: str = "application/json"
    response: dict[str, Any] | None = None
    status: int = 200
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)
    headers: dict[str, str] = field(default_factory=dict)

    def route(self) -> Route:
        return Route(self.path, self.func, methods=[self.method])


#: Methods that never write; any other method is refused by a read-only hub ...
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ... except on these paths: reading the resolver index, signing in, managing tokens.
READ_ONLY_ALLOWED = ("/api/v1/index", "/api/v1/auth/", "/api/v1/tokens")


class Registry:
    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def __call__(self, method: str, path: str, summary: str, tag: str, **meta: Any) -> Callable[[T], T]:
        errors = list(meta.pop("errors", ()))
        # What the shared plumbing can raise is documented on every endpoint that uses it.
        if meta.get("auth", "none") != "none":
            errors.append("unauthenticated")
        if meta.get("request") is not None and meta.get("request_type", "application/json") == "application/json":
            errors += ["invalid_json", "too_deep", "body_too_large", "invalid_field"]
        if method not in SAFE_METHODS and not path.startswith(READ_ONLY_ALLOWED):
            errors.append("read_only")  # answered by hub.mirror.middleware when the hub is read-only
        meta["errors"] = tuple(dict.fromkeys(errors))

        def register(func: T) -> T:
            self.endpoints.append(Endpoint(method, path, func, summary, tag, **meta))  # type: ignore[arg-type]
            return func

        return register


def ctx(request: Request) -> HubContext:
    return request.app.state.hub  # type: ignore[no-any-return]


async def run_sync(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(partial(func, *args, **kwargs))


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise HubError("unauthenticated", "use 'Authorization: Bearer <token>'")
    return value.strip()


async def principal(request: Request, *, required: bool = False) -> Principal:
    """Who is calling. Raises ``unauthenticated`` for a bad token, or for none when required."""
    token = bearer_token(request)
    if token is None:
        if required:
            raise HubError("unauthenticated", "this action needs an API token ('Authorization: Bearer ...')")
        return ANONYMOUS
    hub = ctx(request)

    def resolve() -> Principal:
        with session_scope(hub.engine) as session:
            who = resolve_token(session, token)
        if who.stale_last_used and who.token_id is not None:
            touch_token(hub.engine, who.token_id)
        return who

    return await run_sync(resolve)


async def read_json(request: Request, limit: int = 1 << 20) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HubError("body_too_large", f"the JSON body may be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HubError("body_too_large", f"the JSON body may be at most {limit} bytes")
    try:
        data = loads_json(body)  # nesting is bounded before parsing: no RecursionError
    except TooDeepError as exc:
        raise HubError("too_deep", f"the JSON body is nested more than {exc.max_depth} levels deep") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise HubError("invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HubError("invalid_json", "the body must be a JSON object")
    return data


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
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
