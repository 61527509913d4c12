"""Sessions, CSRF and security headers for the website.

- The session is a signed cookie (itsdangerous) holding the user id and a CSRF token:
  ``HttpOnly``, ``SameSite=Lax``, and ``Secure`` whenever the request came over https
  (directly or, behind a proxy, by ``X-Forwarded-Proto`` as uvicorn reports it).
- :class:`CsrfMiddleware` checks every unsafe website request (any method but GET, HEAD,
  OPTIONS, TRACE, on any path outside the token-authenticated API) before a view runs: the
  form field ``csrf_token`` or the header ``X-CSRF-Token`` must equal the session's token.
  Anything else (no session, no token, an unreadable body) is a 403. Views never check it.
- Every response gets a CSP without inline script, ``nosniff`` and ``frame-ancestors 'none'``.

Sign-in limits are the hub's, shared with the API: :mod:`hub.services.throttle`.
"""

from __future__ import annotations

import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "cvflow_session"
_SESSIONLESS = ("/api/", "/healthz", "/readyz", "/static/")
#: Methods that change nothing; every other one needs the CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: Largest website form body read to find the token (the site's forms are a few KiB).
MAX_FORM_BODY = 1 << 20
MAX_AGE = 14 * 24 * 3600
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


_RAW_SECURITY_HEADERS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def secret_key(configured: str, data_dir: Path) -> str:
    """The configured key, or one generated once and kept in the data directory."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        try:
            with path.open("x") as f:
                f.write(key)
        except FileExistsError:
            return path.read_text().strip()
        path.chmod(0o600)
        return key


class SessionMiddleware:
    """A signed-cookie session in ``scope["session"]``; written back only when it changed."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.serializer = URLSafeTimedSerializer(secret, salt="cvflow.session")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_SESSIONLESS):
            # The API authenticates with tokens; it neither reads nor sets the cookie.
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        raw = conn.cookies.get(COOKIE)
        data: dict[str, Any] = {}
        if raw:
            try:
                loaded = self.serializer.loads(raw, max_age=MAX_AGE)
                data = loaded if isinstance(loaded, dict) else {}
            except (BadSignature, ValueError):
                data = {}
        scope["session"] = data
        before = json.dumps(data, sort_keys=True)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                after = json.dumps(scope["session"], sort_keys=True)
                if after != before:
                    headers = MutableHeaders(scope=message)
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    if scope["session"]:
                        value = self.serializer.dumps(scope["session"])
                        cookie = f"{COOKIE}={value}; Path=/; Max-Age={MAX_AGE}; HttpOnly; SameSite=Lax{secure}"
                    else:
                        cookie = f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_RAW_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(request: Request) -> str:
    session = request.session
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["csrf"])


class LazyCsrfToken:
    """Renders as the CSRF token, creating it only if a page really has a form."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def __str__(self) -> str:
        return csrf_token(self.request)

    def __html__(self) -> str:
        return str(self)


def check_csrf(session: dict[str, Any] | None, submitted: str | None) -> bool:
    expected = session.get("csrf") if isinstance(session, dict) else None
    return bool(expected and submitted and hmac.compare_digest(str(expected).encode(), submitted.encode()))


def csrf_exempt(path: str) -> bool:
    """Paths outside the website: the API (tokens, no cookie) and the sessionless probes and assets."""
    return path == "/api" or path.startswith(_SESSIONLESS)


class CsrfMiddleware:
    """Refuses (403) every unsafe website request without the session's CSRF token: fail closed.

    Runs inside :class:`SessionMiddleware`. The body is read here (at most ``MAX_FORM_BODY``)
    and replayed to the view unchanged, so the view parses its form as if nothing had read it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or csrf_exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        session = scope.get("session")
        header = Headers(scope=scope).get(CSRF_HEADER)
        if header is not None:
            if check_csrf(session, header):
                await self.app(scope, receive, send)
            else:
                await _refuse(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _TooLarge:
            await _refuse(scope, receive, send, status=413, message="The form is too large.")
            return
        except _Disconnected:
            return
        replay = _replay(body, receive)
        if not check_csrf(session, await _form_token(scope, body)):
            await _refuse(scope, replay, send)
            return
        await self.app(scope, replay, send)


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BODY:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then waits on the real one (for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _form_token(scope: Scope, body: bytes) -> str | None:
    """The ``csrf_token`` field of an urlencoded or multipart body; None when there is none or it does not parse."""
    # A Request of its own over a copy of the scope: nothing it caches reaches the view's Request.
    request = Request(dict(scope), _replay(body, _no_more))
    try:
        form = await request.form()
    except Exception:  # whatever makes a body unreadable, the answer is the same: no token, refused
        return None
    try:
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    finally:
        await form.close()


async def _no_more() -> Message:
    return {"type": "http.disconnect"}


async def _refuse(scope: Scope, receive: Receive, send: Send, *, status: int = 403,
                  message: str = "The form expired; reload the page.") -> None:
    from web.templating import render

    title = "Forbidden" if status == 403 else "Too large"
    response = render(Request(scope, receive), "error.html", status=status, title=title, message=message)
    await response(scope, receive, send)
