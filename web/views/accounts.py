"""Sign-in (password and OpenID Connect), sign-out, and the API tokens page."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cvflow.errors import InvalidNameError
from cvflow.names import validate_namespace
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import User, UserIdentity, row_id
from hub.security import Scopes
from hub.services import accounts, throttle
from web.session import sign_in, web_principal
from web.templating import render

TOKEN_SCOPE_CHOICES = ("read", "publish")


def limiter(request: Request) -> throttle.Throttle:
    """The hub's sign-in limiter: one budget with the API's login, shared by every replica."""
    limiter: throttle.Throttle = request.app.state.login_throttle  # app.state is untyped
    return limiter


def providers(request: Request) -> list[dict[str, str]]:
    raw = ctx(request).settings.oidc_providers
    return json.loads(raw) if raw else []


def _safe_next(value: str | None) -> str:
    # Only same-site paths: never an open redirect. Browsers drop tabs and newlines from URLs
    # and read a backslash as a slash, so "/<tab>/evil" and "/<backslash>evil" would leave the site.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value and value.isprintable():
        return value
    return "/"


async def login_form(request: Request) -> Response:
    return render(request, "login.html", providers=providers(request), error=None,
                  next=_safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    # The CSRF token was checked before this view runs (web.security.CsrfMiddleware).
    form = await request.form()
    nxt = _safe_next(str(form.get("next") or "/"))
    username = str(form.get("username") or "").strip().lower()
    password = str(form.get("password") or "")
    keys = throttle.login_keys(username, request.client.host if request.client else None)
    hub = ctx(request)
    limits = limiter(request)

    try:
        await run_sync(throttle.charge, limits, keys)  # outside the unit of work: the limiter commits on its own
        # write: authenticate may rehash
        user = await in_session(request, accounts.authenticate, hub.hasher, username, password, write=True)
        await run_sync(limits.refund, keys)  # only failures add up; after the session ended
    except throttle.TooManyAttempts as exc:
        page = render(request, "login.html", status=429, providers=providers(request), next=nxt,
                      error="Too many sign-in attempts. Wait a few minutes and try again.")
        page.headers.update(exc.headers)
        return page
    except HubError as exc:
        if exc.code != "invalid_credentials":
            raise
        return render(request, "login.html", status=401, providers=providers(request), next=nxt,
                      error="Wrong user name or password.")
    sign_in(request, user)
    return RedirectResponse(nxt, status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()  # the CSRF token was checked before this view runs
    return RedirectResponse("/", status_code=303)


async def tokens_page(request: Request) -> Response:
    who = await web_principal(request)
    if who.user is None:
        return RedirectResponse("/login?next=/settings/tokens", status_code=303)
    form = await request.form() if request.method == "POST" else None

    def change(session: Session, user: User) -> dict[str, Any] | None:
        assert form is not None
        if form.get("action") == "revoke":
            token_id = str(form.get("token_id") or "")
            accounts.revoke_token(session, user, int(token_id) if token_id.isdigit() else 0)
            return None
        scopes = [s for s in form.getlist("scopes") if s in TOKEN_SCOPE_CHOICES]
        target = str(form.get("publish_to") or "").strip()
        if target:
            scopes = [s for s in scopes if s != "publish"] + [f"publish:{target}"]
        token, secret = accounts.create_token(session, user, Scopes.parse(scopes or ["read"]),
                                              name=str(form.get("name") or "web")[:100])
        return {"name": token.name, "secret": secret, "scopes": token.scopes}

    def work(session: Session) -> tuple[dict[str, Any] | None, str | None, list[Any]]:
        user = session.get(User, row_id(who.require_user()))
        assert user is not None
        created, error = None, None
        if form is not None:
            try:
                with session.begin_nested():  # a refused change is undone; the page still lists the tokens
                    created = change(session, user)
            except (HubError, ValueError) as exc:
                error = exc.message if isinstance(exc, HubError) else str(exc)
        return created, error, accounts.list_tokens(session, user)

    created, error, tokens = await in_session(request, work, write=form is not None)
    return render(request, "tokens.html", tokens=tokens, created=created, error=error,
                  status=400 if error else 200)


# --- OpenID Connect ------------------------------------------------------------------------


def oauth(request: Request) -> Any:
    return request.app.state.oauth


async def oidc_start(request: Request) -> Response:
    import httpx

    name = request.path_params["provider"]
    client = oauth(request).create_client(name) if oauth(request) else None
    if client is None:
        return render(request, "error.html", status=404, title="Not found", message=f"no sign-in provider {name!r}")
    request.session["oidc_next"] = _safe_next(request.query_params.get("next"))
    redirect_uri = str(request.url_for("oidc_callback", provider=name))
    try:
        redirect: Response = await client.authorize_redirect(request, redirect_uri)
        return redirect
    except httpx.HTTPError as exc:
        return _sign_in_failed(request, name, f"the provider did not answer ({type(exc).__name__})", status=502)


def _sign_in_failed(request: Request, provider: str, reason: str, *, status: int = 400) -> Response:
    return render(request, "error.html", status=status, title="Sign-in failed", message=f"{provider}: {reason}")


async def oidc_callback(request: Request) -> Response:
    import httpx
    from authlib.integrations.base_client import OAuthError
    from joserfc.errors import JoseError

    name = request.path_params["provider"]
    client = oauth(request).create_client(name) if oauth(request) else None
    if client is None:
        return render(request, "error.html", status=404, title="Not found", message=f"no sign-in provider {name!r}")
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:  # the provider said no, or the state is wrong, missing or used
        return _sign_in_failed(request, name, str(exc.error or "refused"))
    except JoseError as exc:  # the id_token's signature, issuer, audience, expiry or nonce is wrong
        return _sign_in_failed(request, name, f"the identity token did not verify ({exc.error})")
    except httpx.HTTPError as exc:
        return _sign_in_failed(request, name, f"the provider did not answer ({type(exc).__name__})", status=502)
    claims = token.get("userinfo") or {}
    subject = str(claims.get("sub") or "")
    if not subject:
        return _sign_in_failed(request, name, "the provider sent no subject")
    hub = ctx(request)

    def link(session: Session) -> User:
        identity = session.get(UserIdentity, (name, subject))
        if identity is not None:
            user = session.get(User, identity.user_id)
            assert user is not None
            return user
        user = accounts.create_user(session, hub.hasher, _free_name(session, claims), None,
                                    email=claims.get("email"))
        session.add(UserIdentity(provider=name, subject=subject, user_id=row_id(user)))
        return user

    user = await in_session(request, link, write=True)
    nxt = request.session.pop("oidc_next", "/")
    sign_in(request, user)
    return RedirectResponse(_safe_next(nxt), status_code=303)


def _free_name(session: Any, claims: dict[str, Any]) -> str:
    """A namespace-safe user name from the provider's claims, unique on this hub."""
    from hub.models import Namespace

    base = str(claims.get("preferred_username") or str(claims.get("email") or "").split("@")[0] or "user").lower()
    base = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:30] or "user"
    if len(base) < 2:
        base = f"user-{base}"
    try:
        validate_namespace(base)
    except InvalidNameError:
        base = f"user-{base}"[:30]  # reserved or otherwise unusable as it stands
    candidate = base
    while session.exec(select(Namespace).where(Namespace.name == candidate)).first() is not None:
        candidate = f"{base}-{secrets.randbelow(10_000)}"
    return candidate
