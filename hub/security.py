"""Passwords, API tokens and scopes.

Passwords are hashed with argon2id. API tokens look like ``cvf_<43 url-safe chars>``: the
prefix makes leaked tokens recognisable to secret scanners; the hub keeps only the sha256 of
the whole token (tokens carry 256 bits of randomness, so a slow hash buys nothing).

Scopes, space-separated on a token:

=====================  ===============================================================
``read``               read the private packages the user may see
``publish``            publish, yank and unyank any package the user may publish to
``publish:NS``         ... only packages in namespace ``NS``
``publish:NS/NAME``    ... only the package ``NS/NAME``
``annotate``           label, review and manage the annotation projects where the user holds
                       a role (docs/annotation.md); unscoped ``publish`` implies it
``admin``              administer the hub (the user must be an admin too)
=====================  ===============================================================

A publish scope also lets its token read the packages it may publish to. ``admin`` implies
all others.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cvflow.names import NAME_RE, NAMESPACE_RE

TOKEN_PREFIX = "cvf_"
#: The scopes without a target; ``publish`` also comes as ``publish:NS`` and ``publish:NS/NAME``.
ScopeName = Literal["read", "publish", "annotate", "admin"]
SCOPE_NAMES: frozenset[str] = frozenset(get_args(ScopeName))
DEFAULT_SCOPES: tuple[ScopeName, ...] = ("read", "publish")


def password_hasher(time_cost: int = 3, memory_cost: int = 64 * 1024) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def verify_password(hasher: PasswordHasher, stored: str | None, password: str) -> bool:
    if not stored:
        # Spend the same time as a real check so user names cannot be probed by timing.
        hasher.hash(password)
        return False
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hasher: PasswordHasher, stored: str) -> bool:
    """Whether a stored hash was made with other parameters than ``hasher``'s (the cost settings changed)."""
    try:
        return hasher.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 100


def digests_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Scopes:
    items: frozenset[str]

    @classmethod
    def parse(cls, value: str | list[str] | tuple[str, ...]) -> Scopes:
        """Parse and validate scopes; raise ``ValueError`` naming the first bad one."""
        raw = value.split() if isinstance(value, str) else list(value)
        out = set()
        for scope in raw:
            scope = scope.strip()
            if not scope:
                continue
            if not _valid_scope(scope):
                raise ValueError(
                    f"unknown scope {scope!r}: use read, publish, publish:NAMESPACE, "
                    "publish:NAMESPACE/NAME, annotate or admin"
                )
            out.add(scope)
        if not out:
            raise ValueError("a token needs at least one scope")
        return cls(frozenset(out))

    def __str__(self) -> str:
        return " ".join(sorted(self.items))

    @property
    def admin(self) -> bool:
        return "admin" in self.items

    def can_publish(self, namespace: str, name: str) -> bool:
        return bool(
            self.admin
            or "publish" in self.items
            or f"publish:{namespace}" in self.items
            or f"publish:{namespace}/{name}" in self.items
        )

    def can_read(self, namespace: str, name: str) -> bool:
        return "read" in self.items or self.can_publish(namespace, name)

    @property
    def can_annotate(self) -> bool:
        """Whether the token may write to annotation projects (where its user holds a role)."""
        return bool(self.admin or "annotate" in self.items or "publish" in self.items)

    def covers(self, other: Scopes) -> bool:
        """Whether a token with these scopes may mint a token with ``other``."""
        if self.admin:
            return True
        for scope in other.items:
            if scope == "admin":
                return False
            if scope == "read" and "read" not in self.items:
                return False
            if scope == "annotate" and not self.can_annotate:
                return False
            if scope.startswith("publish"):
                target = scope.partition(":")[2]
                ns, _, name = target.partition("/")
                if not target and "publish" not in self.items:
                    return False
                if target and not name and not (
                    "publish" in self.items or f"publish:{ns}" in self.items
                ):
                    return False
                if name and not self.can_publish(ns, name):
                    return False
        return True


def _valid_scope(scope: str) -> bool:
    if scope in SCOPE_NAMES:
        return True
    if scope.startswith("publish:"):
        target = scope[len("publish:") :]
        ns, sep, name = target.partition("/")
        if not NAMESPACE_RE.fullmatch(ns):
            return False
        return not sep or bool(NAME_RE.fullmatch(name))
    return False
