"""Builds the hub's Starlette application from settings."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

import web
from hub import api
from hub.api import hf, openapi
from hub.api._http import dumps, json_response
from hub.api.packages import cached_document
from hub.context import HubContext, build_context, run_sync
from hub.errors import ErrorCode, HubError
from hub.mirror.feed import SerialTracker
from hub.mirror.middleware import ReadOnlyMiddleware, SerialHeaderMiddleware
from hub.mirror.upstream import upstream_pool
from hub.services import throttle, training
from hub.settings import Settings
from hub.storage import BlobNotFound, StorageError
from web import security as web_security
from web.views import docs as web_docs

log = logging.getLogger("cvflow.hub")


__all__ = ["build_context", "create_app"]  # build_context lives in hub.context; kept importable here


def create_app(settings: Settings, *, context: HubContext | None = None) -> Starlette:
    """The hub's app. A ``context`` passed in stays the caller's: the app never closes it.

    The app's own resources (the upstream pool's HTTP clients, the login limiter and its Redis
    client, and the context when the app built it) are opened and closed by its lifespan, so a
    server must run it with lifespan events (uvicorn's default).
    """
    hub = context or build_context(settings)
    spec = dumps(openapi.build())

    async def openapi_json(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    routes = [ApiRoutes([*api.routes(), Route("/api/v1/openapi.json", openapi_json, methods=["GET"])]),
              *web.routes()]
    secret = web_security.secret_key(settings.secret_key, settings.data_dir)
    serial = SerialTracker(hub.engine)
    mirror_middleware = [Middleware(SerialHeaderMiddleware, tracker=serial)]
    if settings.read_only:
        mirror_middleware.append(Middleware(ReadOnlyMiddleware))
    app = Starlette(
        routes=routes,
        middleware=[
            *mirror_middleware,
            Middleware(web_security.SecurityHeadersMiddleware),
            Middleware(CachedDocumentMiddleware, hub=hub),  # outside what an API GET never needs
            Middleware(web_security.SessionMiddleware, secret=secret),
            Middleware(QueryTokenMiddleware),  # innermost: its error page may read the session
            Middleware(CsrfMiddleware),  # inside the session: it reads the session's token
        ],
        exception_handlers={
            HubError: _hub_error,
            HTTPException: _http_error,
            sa.exc.OperationalError: _db_error,  # the server is down, restarting, or cut us off
            sa.exc.InterfaceError: _db_error,  # a connection it closed, used again
            sa.exc.DBAPIError: _db_error,  # others: a 503 when the connection was lost, else a 500
            sa.exc.TimeoutError: _db_error,  # every pooled connection busy for pool_timeout
            StorageError: _storage_error,
            Exception: _unexpected,
        },
        lifespan=partial(_lifespan, owns_context=context is None),
    )
    app.state.hub = hub
    training.attach(hub)  # saves and approvals on this engine may queue fine-tunes (docs/training.md)
    app.state.serial = serial
    app.state.oauth = _oauth(settings)  # configuration only: Authlib opens a client per call
    app.state.api_docs_page = web_docs.api_docs_page  # /api/docs (hub.api.docs) in the site's layout
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette, *, owns_context: bool) -> AsyncIterator[None]:
    """Opens what the app holds for its lifetime and closes it at shutdown, in reverse order."""
    hub: HubContext = app.state.hub
    async with contextlib.AsyncExitStack() as stack:
        if owns_context:
            stack.callback(hub.close)
        hub.downloads.start()  # stopped before the context closes: its last batch needs the engine
        stack.push_async_callback(run_sync, hub.downloads.stop)
        app.state.login_throttle = limiter = throttle.open_throttle(hub.settings, hub.engine)
        stack.callback(getattr(limiter, "close", _nothing))  # the Redis limiter holds a client
        app.state.upstreams = pool = upstream_pool(hub)
        if pool is not None:
            stack.callback(pool.close)
        yield


def _nothing() -> None:
    pass


#: Paths the API and the probes own. The website's catch-all pages (``/{namespace}/{name}``)
#: never answer under them: a path here that no endpoint serves is a JSON 404 (or 405).
API_PREFIXES = ("/api/", "/healthz", "/readyz")


def is_api_path(path: str) -> bool:
    """Under :data:`API_PREFIXES`, or the Hugging Face protocol's ``/{namespace}/{name}/resolve/...``
    (``hub.api.hf``), which a package page's path would otherwise reach."""
    return path == "/api" or path.startswith(API_PREFIXES) or hf.is_resolve_path(path)


class CsrfMiddleware(web_security.CsrfMiddleware):
    """The website's CSRF check, on the website's paths only: every API path (:func:`is_api_path`,
    the resolve path included) takes a token and never reads the session cookie."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class CachedDocumentMiddleware:
    """Answers an anonymous GET of a package document the cache holds from here: the bytes and
    headers its endpoint would send (:func:`hub.api.packages.cached_document`), without the
    session, query-token, CSRF, exception and routing layers, which such a request never needs
    (no cookie is read on an API path, the query string is empty, nothing can raise). The
    serial and security headers are added outside, as on every answer."""

    def __init__(self, app: ASGIApp, hub: HubContext) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            answer = cached_document(self.hub, scope)
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ApiRoutes(BaseRoute):
    """The API's routes, matched before the website's for every path under :data:`API_PREFIXES`.

    Inside, Starlette's router answers a path no endpoint serves with 404 and a method a path
    does not take with 405 and its ``Allow``; both become JSON errors in :func:`_http_error`.
    """

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = routes
        self.router = Router(routes, redirect_slashes=False)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and is_api_path(get_route_path(scope)):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        return self.router.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.router(scope, receive, send)


#: Query parameters that carry credentials by convention, and what an API token looks like.
_TOKEN_PARAMS = frozenset({"token", "access_token", "api_key", "apikey"})
_TOKEN_VALUE = re.compile(r"cvf_[A-Za-z0-9_-]{8,}")


def token_in_query(query_string: bytes) -> bool:
    """Whether a query string carries a token: by a credential's name, or by a value like ``cvf_...``."""
    if not query_string:
        return False
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key.lower() in _TOKEN_PARAMS or _TOKEN_VALUE.search(value) or _TOKEN_VALUE.search(key):
            return True
    return False


class QueryTokenMiddleware:
    """Refuses every request whose query string carries a token, before anything reads it.

    URLs are written to access logs, proxies' logs, browser history and ``Referer`` headers;
    a token belongs in the ``Authorization`` header. The token is never looked up.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and token_in_query(scope.get("query_string", b"")):
            error = HubError("token_in_query")
            response = await _hub_error(Request(scope, receive), error)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _oauth(settings: Settings) -> Any:
    """An Authlib registry with the configured OpenID Connect providers (None if none)."""
    if not settings.oidc_providers:
        return None
    import json
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # authlib's own notice about httpx, on import
        from authlib.integrations.starlette_client import OAuth

    oauth = OAuth()
    for p in json.loads(settings.oidc_providers):
        oauth.register(
            p["name"], client_id=p["client_id"], client_secret=p.get("client_secret"),
            server_metadata_url=p["issuer"].rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email profile"},
        )
    return oauth


def _page(request: Request, status: int, title: str, message: str) -> Response:
    from web.templating import render

    return render(request, "error.html", status=status, title=title, message=message)


async def _hub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubError)
    headers = dict(exc.headers)
    if exc.status == 401:
        headers["www-authenticate"] = "Bearer"
    if _wants_page(request):
        page = _page(request, exc.status, "Something went wrong" if exc.status >= 500 else "Cannot do that",
                     exc.message)
        page.headers.update(headers)
        return page
    return json_response(exc.body(), status=exc.status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _wants_page(request):
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Bad request")
        return _page(request, exc.status_code, title, str(exc.detail))
    codes: dict[int, ErrorCode] = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "bad_request")
    err = HubError(code, exc.detail if exc.status_code not in (404, 405) else None)
    return json_response(err.body(), status=exc.status_code, headers=exc.headers)


def _wants_page(request: Request) -> bool:
    return not is_api_path(request.url.path) and "text/html" in request.headers.get("accept", "")


async def _db_error(request: Request, exc: Exception) -> Response:
    """The database is away (down, restarting, its connections cut): 503 ``database_unavailable``
    with Retry-After. Other driver errors (a constraint, bad SQL) are bugs: 500, logged."""
    lost = isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)
    if not lost:
        return await _unexpected(request, exc)
    first_line = str(exc).split("\n", 1)[0]
    if str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "").startswith("40"):
        # Class 40, transaction rollback: a deadlock or serialization failure. The server is
        # fine and a retry will do, but two of the hub's own transactions met in the wrong order.
        log.error("transaction rolled back by the database on %s %s: %s", request.method, request.url.path,
                  first_line)
        return await _hub_error(request, HubError(
            "database_unavailable", "the database rolled this transaction back for a conflicting one; retry"))
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, first_line)
    return await _hub_error(request, HubError("database_unavailable"))


async def _storage_error(request: Request, exc: Exception) -> Response:
    """A blob store error that no endpoint translated: 503 ``storage_unavailable`` with Retry-After,
    or 404 ``blob_not_found`` for a blob that is recorded but missing."""
    log.warning("blob store error on %s %s: %s", request.method, request.url.path, exc)
    if isinstance(exc, BlobNotFound):
        return await _hub_error(request, HubError("blob_not_found", "the blob is recorded but missing from storage"))
    return await _hub_error(request, HubError("storage_unavailable", str(exc)))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    if _wants_page(request):
        return _page(request, 500, "Something went wrong", "An unexpected error; the hub logged it.")
    return json_response(HubError("internal_error").body(), status=500)


def app_from_env() -> Any:
    """ASGI factory for servers started by hand: ``uvicorn --factory hub.app:app_from_env``."""
    return create_app(Settings.create())
