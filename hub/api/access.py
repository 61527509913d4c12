"""Who may call an endpoint: each endpoint declares it where it registers, and the plumbing enforces it.

An :class:`Access` names the token an endpoint needs, and the role the caller must hold on the
resource it touches. The scope is checked here, before the handler runs and before the body is
read, so an endpoint cannot forget it and the OpenAPI document cannot drift from it. The role
needs the database row, so the service that loads the row checks it; the declaration says which
role, and ``tests/test_scope_matrix.py`` calls every endpoint with every kind of token and holds
each answer to the declaration.

Scopes (see :mod:`hub.security`):

=================  ==================================================================
``public``         anyone; a token is neither needed nor looked at
``optional``       anyone; a token, when sent, must be valid and widens what is visible
``token``          any valid token (the calling user's own things: whoami, their tokens)
``read``           a token with ``read``, unscoped ``publish`` or ``admin``
``publish``        unscoped ``publish`` or ``admin``: writes to the account itself
                   (organisations, tokens of other sessions)
``publish:any``    any publish scope; the handler checks the exact target (uploads,
                   a repository named in the body)
``publish:ns``     a publish scope covering the ``namespace`` (or ``org``) path parameter
``publish:pkg``    a publish scope covering ``namespace``/``name`` from the path
``annotate``       a token with ``annotate``, unscoped ``publish`` or ``admin``: writes to
                   annotation projects (the role is checked on the project)
``admin``          the ``admin`` scope (the user must be a hub administrator as well)
=================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hub.errors import HubError
from hub.services.accounts import Principal

Scope = Literal["public", "optional", "token", "read", "publish", "publish:any", "publish:ns", "publish:pkg", "annotate", "admin"]

_DESCRIBE: dict[Scope, str] = {
    "public": "no token needed",
    "optional": "no token needed; a token with `read` (or a publish scope covering the package) also shows private packages",
    "token": "any valid token",
    "read": "a token with `read`, `publish` or `admin`",
    "publish": "a token with unscoped `publish` or `admin`",
    "publish:any": "a token with any publish scope (`publish`, `publish:NS`, `publish:NS/NAME`) or `admin`",
    "publish:ns": "a token with `publish`, `publish:{namespace}` or `admin`",
    "publish:pkg": "a token with `publish`, `publish:{namespace}`, `publish:{namespace}/{name}` or `admin`",
    "annotate": "a token with `annotate`, `publish` or `admin`",
    "admin": "a token with `admin`, held by a hub administrator",
}


@dataclass(frozen=True)
class Access:
    """What a caller needs: a token ``scope`` and, where the resource has one, a ``role`` on it."""

    scope: Scope
    role: str | None = None  # e.g. "package owner", checked by the service that loads the resource
    #: For ``publish:any``: where the handler finds the target it checks the scope against, after
    #: this check: ``body:FIELD`` (a namespace named in the body) or ``repository`` (the namespace,
    #: or package, of the repository in the path).
    target: str | None = None

    @property
    def auth(self) -> Literal["none", "optional", "required"]:
        """The OpenAPI security requirement: ``none``, ``optional`` or ``required``."""
        if self.scope == "public":
            return "none"
        return "optional" if self.scope == "optional" else "required"

    def describe(self) -> str:
        text = "Access: " + _DESCRIBE[self.scope]
        if self.target and self.target.startswith("body:"):
            text += f", covering the namespace named by `{self.target[5:]}` in the body"
        elif self.target == "repository":
            text += ", covering the repository's namespace or package"
        return f"{text}; the caller must be the {self.role}." if self.role else f"{text}."

    def check(self, who: Principal, path_params: dict[str, str]) -> None:
        """Raise ``unauthenticated`` or ``insufficient_scope`` unless ``who`` has the declared scope."""
        if self.scope in ("public", "optional"):
            return
        if who.user is None or who.scopes is None:
            raise HubError("unauthenticated", "this action needs an API token ('Authorization: Bearer ...')")
        scopes = who.scopes
        if self.scope == "token" or scopes.admin:
            return
        items = scopes.items
        if self.scope == "read":
            ok = "read" in items or "publish" in items
        elif self.scope == "publish":
            ok = "publish" in items
        elif self.scope == "publish:any":
            ok = any(s == "publish" or s.startswith("publish:") for s in items)
        elif self.scope == "publish:ns":
            ns = path_params.get("namespace") or path_params.get("org") or ""
            ok = "publish" in items or f"publish:{ns}" in items
        elif self.scope == "annotate":
            ok = scopes.can_annotate
        elif self.scope == "publish:pkg":
            ok = scopes.can_publish(path_params.get("namespace", ""), path_params.get("name", ""))
        else:  # admin, and only admin
            ok = False
        if not ok:
            raise HubError("insufficient_scope", f"this token's scopes do not allow this: it needs {_DESCRIBE[self.scope]}")


PUBLIC = Access("public")
OPTIONAL = Access("optional")
