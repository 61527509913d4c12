"""A small OpenID Connect provider for tests, served on loopback.

It speaks the authorization-code flow the way a real provider does: discovery, ``/authorize``
(which approves at once, as the configured test user), ``/token`` (client authentication, one-use
codes bound to the client and redirect URI, an RS256 ``id_token`` carrying the nonce), ``/jwks``
and ``/userinfo``. Nothing here is trusted by the hub: it fetches the discovery document and the
keys over HTTP and checks the signature, issuer, audience, expiry and nonce itself.

    with OIDCProvider(user={"sub": "u1", "preferred_username": "carol"}) as idp:
        idp.issuer  # http://127.0.0.1:PORT
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.conftest import ServerThread


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    claims: dict[str, Any]


@dataclass
class OIDCProvider:
    """The provider's state: its clients, its signed-in user, and what it has handed out."""

    user: dict[str, Any]
    clients: dict[str, str] = field(default_factory=lambda: {"cvflow": "s3cret"})
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "test-key"}, private=True))
    codes: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Claims to force into the next id_tokens (a wrong nonce, audience, issuer...), for tests.
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    #: Sign id_tokens with this key instead of the published one, for tests.
    signing_key: RSAKey | None = None
    #: What each request to /authorize asked for, newest last, for tests to inspect.
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    server: ServerThread | None = None

    @property
    def issuer(self) -> str:
        assert self.server is not None, "the provider is not running"
        return f"http://127.0.0.1:{self.server.port}"

    def __enter__(self) -> OIDCProvider:
        self.server = ServerThread(self.app()).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.__exit__()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
            Route("/jwks", self.jwks),
            Route("/userinfo", self.userinfo),
        ])

    # --- endpoints

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })

    async def authorize(self, request: Request) -> Response:
        q = dict(request.query_params)
        self.authorize_requests.append(q)
        client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
        if client_id not in self.clients or not redirect_uri.startswith("http"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)  # never redirect to an unknown client
        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
            return _back(redirect_uri, error="unsupported_response_type", state=q.get("state"))
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(client_id, redirect_uri, q.get("nonce"), dict(self.user))
        return _back(redirect_uri, code=code, state=q.get("state"))

    async def token(self, request: Request) -> Response:
        form = await request.form()
        client_id, secret = _client_credentials(request, form)
        if client_id not in self.clients or self.clients[client_id] != secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        grant = self.codes.pop(str(form.get("code") or ""), None)  # a code works once
        if grant is None or grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {**grant.claims, "iss": self.issuer, "aud": client_id, "iat": now, "exp": now + 300}
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.id_token_overrides)
        key = self.signing_key or self.key
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, key)
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = grant.claims
        return JSONResponse({"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
                             "id_token": id_token, "scope": "openid email profile"},
                            headers={"cache-control": "no-store"})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def userinfo(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        claims = self.access_tokens.get(token)
        if claims is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(claims)


def _back(redirect_uri: str, **params: str | None) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}", status_code=302)


def _client_credentials(request: Request, form: Any) -> tuple[str, str]:
    auth = request.headers.get("authorization", "")
    if auth.startswith("Basic "):
        client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        return unquote(client_id), unquote(secret)
    return str(form.get("client_id") or ""), str(form.get("client_secret") or "")
