"""Who is signed in to the website: the session's user, as a principal for the services."""

from __future__ import annotations

from starlette.requests import Request

from hub.context import in_session
from hub.models import User
from hub.security import Scopes
from hub.services.accounts import ANONYMOUS, Principal

_SIGNED_IN = Scopes.parse("read publish annotate")  # annotate: the annotation page (docs/annotation.md)
_ADMIN = Scopes.parse("read publish annotate admin")


def principal_for(user: User) -> Principal:
    return Principal(user=user, scopes=_ADMIN if user.is_admin else _SIGNED_IN)


async def web_principal(request: Request) -> Principal:
    """The signed-in user (also set as ``scope["web_user"]`` for templates), or anonymous."""
    if "web_principal" in request.scope:
        known: Principal = request.scope["web_principal"]  # set below, on the first call
        return known
    who = ANONYMOUS
    uid = request.session.get("uid")
    if isinstance(uid, int):
        # A short session of its own, before the view's unit of work (like the API's token
        # lookup): the principal is known before the view runs, and templates read it after.
        user = await in_session(request, lambda session: session.get(User, uid))
        if user is not None and user.is_active and request.session.get("pw") == _fingerprint(user):
            who = principal_for(user)
        else:
            request.session.clear()
    request.scope["web_principal"] = who
    request.scope["web_user"] = who.user
    return who


def sign_in(request: Request, user: User) -> None:
    # A fresh session on sign-in, CSRF token included: whatever a visitor's browser held before
    # (perhaps planted by someone else) is worth nothing once they are signed in.
    request.session.clear()
    request.session.update({"uid": user.id, "pw": _fingerprint(user)})


def _fingerprint(user: User) -> str:
    # Changing the password (or its hash) ends every session signed in with the old one.
    return (user.password_hash or "oidc")[-16:]
