"""Sessions, CSRF, security headers and sign-in rate limits for the website.

- The session is a signed cookie (itsdangerous) holding the user id and a CSRF token:
  ``HttpOnly``, ``SameSite=Lax``, and ``Secure`` whenever the request came over https
  (directly or, behind a proxy, by ``X-Forwarded-Proto`` as uvicorn reports it).
- Every POST form carries the session's CSRF token; a mismatch is a 403.
- Every response gets a CSP without inline script, ``nosniff`` and ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "cvflow_session"
_SESSIONLESS = ("/api/", "/healthz", "/readyz", "/static/")
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


def check_csrf(request: Request, submitted: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and submitted and hmac.compare_digest(str(expected), submitted))


class RateLimiter:
    """At most ``limit`` events per key in a sliding ``window`` (per process).

    Sign-in records an attempt before checking the password, so parallel guesses count at once,
    and hands it back with :meth:`refund` when the password was right: only failures add up, and
    people signing in from one address (an office, a NAT) do not lock each other out.
    """

    def __init__(self, limit: int, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}

    def allow(self, *keys: str) -> bool:
        now = time.monotonic()
        allowed = True
        for key in keys:
            events = self._events.setdefault(key, deque())
            while events and events[0] < now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                allowed = False
        if allowed:
            for key in keys:
                self._events[key].append(now)
        if len(self._events) > 50_000:
            self._events.clear()
        return allowed

    def refund(self, *keys: str) -> None:
        """Take back the newest event of each key (an attempt that turned out legitimate)."""
        for key in keys:
            events = self._events.get(key)
            if events:
                events.pop()
