"""Login, tokens, the calling user, and organisations."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from hub.api import bodies
from hub.api._http import Registry, json_response, principal, read_body
from hub.api.access import PUBLIC, Access
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import Organisation, Token, User
from hub.security import Scopes
from hub.services import accounts, throttle
from hub.services.catalog import iso

endpoint = Registry()

_TOKEN = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "prefix": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "created_at": {"type": "string"}, "last_used_at": {"type": "string", "nullable": True},
        "expires_at": {"type": "string", "nullable": True},
        "token": {"type": "string", "description": "the secret; returned once, at creation"},
    },
}


def token_json(token: Token, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": token.id,
        "name": token.name,
        "prefix": token.display_prefix,
        "scopes": token.scopes.split(),
        "created_at": iso(token.created_at),
        "last_used_at": iso(token.last_used_at),
        "expires_at": iso(token.expires_at),
    }
    if secret is not None:
        out["token"] = secret
    return out


def user_json(user: User) -> dict[str, Any]:
    return {"name": user.name, "admin": user.is_admin, "created_at": iso(user.created_at)}


def _scopes(body: bodies.NewToken) -> Scopes:
    try:
        return Scopes.parse(body.scopes)
    except ValueError as exc:  # every scope is valid (the model checked): none were given
        raise HubError("invalid_scope", str(exc)) from exc


@endpoint("POST", "/api/v1/auth/login", "Trade a user name and password for a new API token", "accounts", access=PUBLIC,
          errors=("invalid_credentials", "invalid_scope", "invalid_json", "too_many_attempts", "limiter_unavailable"), status=201, response=_TOKEN,
          body=bodies.Login)
async def login(request: Request) -> Response:
    body: bodies.Login = await read_body(request)
    username, password, expires = body.username, body.password, body.expires_in
    scopes = _scopes(body)
    hub = ctx(request)
    # One budget with the website's sign-in form, shared by every replica (hub/services/throttle.py).
    limiter: throttle.Throttle = request.app.state.login_throttle
    keys = throttle.login_keys(username or "", request.client.host if request.client else None)
    password_right = False

    def work(session: Session) -> dict[str, Any]:
        nonlocal password_right
        user = accounts.authenticate(session, hub.hasher, username or "", password or "")
        password_right = True
        token, secret = accounts.create_token(session, user, scopes, name=body.name or "login", expires_in=expires)
        return token_json(token, secret)

    try:
        await run_sync(throttle.charge, limiter, keys)  # outside the unit of work: the limiter commits on its own
    except throttle.TooManyAttempts as exc:
        return json_response(exc.body(), status=exc.status, headers=exc.headers)
    try:
        return json_response(await in_session(request, work, write=True), status=201)
    finally:
        if password_right:  # after the session ended: SQLite has one writer at a time
            await run_sync(limiter.refund, keys)


@endpoint("GET", "/api/v1/whoami", "The user the token belongs to, and the token's scopes", "accounts",
          access=Access("token"), errors=("unauthenticated",))
async def whoami(request: Request) -> Response:
    who = await principal(request, required=True)
    assert who.user is not None and who.scopes is not None
    return json_response({**user_json(who.user), "scopes": sorted(who.scopes.items)})


@endpoint("GET", "/api/v1/tokens", "List your live tokens (never their secrets)", "accounts",
          access=Access("token"), errors=("unauthenticated",))
async def list_tokens(request: Request) -> Response:
    who = await principal(request, required=True)
    tokens = await in_session(request, accounts.list_tokens, who.require_user())
    return json_response({"tokens": [token_json(t) for t in tokens]})


@endpoint("POST", "/api/v1/tokens", "Create a token; its scopes may not exceed the calling token's", "accounts",
          access=Access("token"), errors=("unauthenticated", "insufficient_scope", "invalid_scope"), status=201,
          body=bodies.NewToken, response=_TOKEN)
async def create_token(request: Request) -> Response:
    who = await principal(request, required=True)
    body: bodies.NewToken = await read_body(request)
    scopes, expires = _scopes(body), body.expires_in
    assert who.scopes is not None
    if not who.scopes.covers(scopes):
        raise HubError("insufficient_scope", "a token cannot create a token with wider scopes than its own")
    token, secret = await in_session(request, accounts.create_token, who.require_user(), scopes,
                                     name=body.name or "token", expires_in=expires, write=True)
    return json_response(token_json(token, secret), status=201)


@endpoint("DELETE", "/api/v1/tokens/{token_id:id}", "Revoke one of your tokens", "accounts",
          access=Access("publish", role="token's owner"), errors=("unauthenticated", "token_not_found"), status=204,
          params=(("token_id", "path", "the token's id"),))
async def revoke_token(request: Request) -> Response:
    who = await principal(request, required=True)
    await in_session(request, accounts.revoke_token, who.require_user(), request.path_params["token_id"], write=True)
    return Response(status_code=204)


def org_json(session: Any, org: Organisation) -> dict[str, Any]:
    return {"name": org.name, "created_at": iso(org.created_at),
            "members": [{"name": u.name, "role": r} for u, r in accounts.org_members(session, org)]}


@endpoint("POST", "/api/v1/orgs", "Create an organisation; you become its owner", "accounts",
          access=Access("publish"), errors=("unauthenticated", "name_taken", "invalid_package_name"), status=201,
          body=bodies.NewOrg)
async def create_org(request: Request) -> Response:
    who = await principal(request, required=True)
    name = (await read_body(request)).name

    def work(session: Session) -> dict[str, Any]:
        return org_json(session, accounts.create_org(session, who.require_user(), name))

    return json_response(await in_session(request, work, write=True), status=201)


@endpoint("GET", "/api/v1/orgs/{org}", "An organisation and its members", "accounts", access=PUBLIC,
          errors=("org_not_found",), params=(("org", "path", "organisation name"),))
async def get_org(request: Request) -> Response:
    def work(session: Session) -> dict[str, Any]:
        return org_json(session, accounts.get_org(session, request.path_params["org"]))

    return json_response(await in_session(request, work))


@endpoint("PUT", "/api/v1/orgs/{org}/members/{user}", "Add a member or change their role (owners only)", "accounts",
          access=Access("publish:ns", role="organisation's owner"), errors=("unauthenticated", "forbidden", "org_not_found", "user_not_found", "invalid_field"),
          body=bodies.OrgMember, params=(("org", "path", "organisation name"), ("user", "path", "user name")))
async def put_member(request: Request) -> Response:
    return await _member(request, await read_body(request))


@endpoint("DELETE", "/api/v1/orgs/{org}/members/{user}", "Remove a member (owners only)", "accounts",
          access=Access("publish:ns", role="organisation's owner"), errors=("unauthenticated", "forbidden", "org_not_found", "user_not_found"),
          params=(("org", "path", "organisation name"), ("user", "path", "user name")))
async def delete_member(request: Request) -> Response:
    return await _member(request, None)


async def _member(request: Request, body: bodies.OrgMember | None) -> Response:
    who = await principal(request, required=True)
    role = body.role if body is not None else None

    def work(session: Session) -> dict[str, Any]:
        org = accounts.get_org(session, request.path_params["org"])
        user = accounts.get_user(session, request.path_params["user"])
        accounts.set_org_member(session, who, org, user, role)
        session.flush()
        return org_json(session, org)

    return json_response(await in_session(request, work, write=True))
