"""Users, organisations and API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import get_args

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from cvflow.errors import InvalidNameError
from cvflow.names import validate_namespace
from hub import security
from hub.db import session_scope
from hub.errors import HubError, from_validation
from hub.models import Namespace, NamespaceKind, Organisation, OrgMember, OrgRole, Token, User, row_id, utcnow
from hub.security import Scopes

ORG_ROLES: tuple[OrgRole, ...] = get_args(OrgRole)
MAX_TOKEN_LIFETIME = 10 * 365 * 24 * 3600
#: How stale ``tokens.last_used_at`` may get; saves a write on every request.
_LAST_USED_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user and the scopes of the token they used, or nobody."""

    user: User | None = None
    scopes: Scopes | None = None
    token_id: int | None = None
    stale_last_used: bool = False

    @property
    def is_anonymous(self) -> bool:
        return self.user is None

    @property
    def is_admin(self) -> bool:
        return bool(self.user and self.user.is_admin and self.scopes and self.scopes.admin)

    def require_user(self) -> User:
        if self.user is None:
            raise HubError("unauthenticated", "this action needs an API token")
        return self.user


ANONYMOUS = Principal()


def _claim_namespace(session: Session, name: str, kind: NamespaceKind) -> Namespace:
    try:
        validate_namespace(name)
    except InvalidNameError as exc:
        raise from_validation(exc, "invalid_package_name") from exc
    if session.exec(select(Namespace).where(Namespace.name == name)).first():
        raise HubError("name_taken", f"the name {name!r} is already taken")
    ns = Namespace(name=name, kind=kind)
    session.add(ns)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        raise HubError("name_taken", f"the name {name!r} is already taken") from exc
    return ns


def create_user(
    session: Session,
    hasher: PasswordHasher,
    name: str,
    password: str | None,
    *,
    email: str | None = None,
    admin: bool = False,
) -> User:
    """Create a user and their namespace. Raises ``name_taken`` or ``invalid_package_name``."""
    if password is not None and len(password) < 8:
        raise HubError("invalid_field", "a password needs at least 8 characters")
    ns = _claim_namespace(session, name, "user")
    user = User(
        namespace_id=row_id(ns),
        name=name,
        email=email,
        is_admin=admin,
        password_hash=security.hash_password(hasher, password) if password else None,
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise HubError("user_not_found", f"no user named {name!r}")
    return user


def authenticate(session: Session, hasher: PasswordHasher, name: str, password: str) -> User:
    """The user with this name and password, or ``invalid_credentials``.

    A hash made at another argon2 cost than ``hasher``'s is replaced by one at the current
    cost (the session must be able to write): raising the cost reaches every active account.
    """
    user = session.exec(select(User).where(User.name == name)).first()
    stored = user.password_hash if user and user.is_active else None
    if not security.verify_password(hasher, stored, password) or user is None or stored is None:
        raise HubError("invalid_credentials")
    if security.needs_rehash(hasher, stored):
        user.password_hash = security.hash_password(hasher, password)
        session.add(user)
        session.flush()
    return user


def create_token(
    session: Session,
    user: User,
    scopes: Scopes,
    *,
    name: str = "token",
    expires_in: int | None = None,
) -> tuple[Token, str]:
    """Mint a token; returns the row and the secret, which is never shown again."""
    if expires_in is not None and not 0 < expires_in <= MAX_TOKEN_LIFETIME:
        raise HubError("invalid_field", f"expires_in must be 1 to {MAX_TOKEN_LIFETIME} seconds (10 years)")
    if scopes.admin and not user.is_admin:
        raise HubError("forbidden", "only hub administrators may hold the admin scope")
    secret = security.new_token()
    token = Token(
        user_id=row_id(user),
        name=(name or "token")[:100],
        token_hash=security.token_digest(secret),
        display_prefix=secret[:8],
        scopes=str(scopes),
        expires_at=utcnow() + timedelta(seconds=expires_in) if expires_in else None,
    )
    session.add(token)
    session.flush()
    return token, secret


def resolve_token(session: Session, secret: str) -> Principal:
    """The principal a bearer token stands for. Raises ``unauthenticated``."""
    if not security.looks_like_token(secret):
        raise HubError("unauthenticated", "the token is malformed")
    token = session.exec(
        select(Token).where(Token.token_hash == security.token_digest(secret))
    ).first()
    now = utcnow()
    if token is None or token.revoked_at is not None:
        raise HubError("unauthenticated", "the token is unknown or revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise HubError("unauthenticated", "the token has expired")
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        raise HubError("unauthenticated", "the token's user is disabled")
    return Principal(user=user, scopes=Scopes.parse(token.scopes), token_id=token.id,
                     stale_last_used=token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION)


def touch_token(engine: Engine, token_id: int) -> None:
    """Record that a token was used; best effort, in its own short write transaction."""
    try:
        with session_scope(engine, write=True) as session:
            session.exec(sa.update(Token).where(col(Token.id) == token_id).values(last_used_at=utcnow()))
    except sa.exc.OperationalError:
        pass  # a busy database must not fail the request that used the token


def list_tokens(session: Session, user: User) -> list[Token]:
    return list(
        session.exec(
            select(Token).where(Token.user_id == user.id, col(Token.revoked_at).is_(None))
            .order_by(col(Token.id))
        )
    )


def revoke_token(session: Session, user: User, token_id: int) -> Token:
    token = session.get(Token, token_id)
    if token is None or token.user_id != user.id or token.revoked_at is not None:
        raise HubError("token_not_found", f"you have no token with id {token_id}")
    token.revoked_at = utcnow()
    session.add(token)
    return token


def create_org(session: Session, owner: User, name: str) -> Organisation:
    ns = _claim_namespace(session, name, "org")
    org = Organisation(namespace_id=row_id(ns), name=name)
    session.add(org)
    session.flush()
    session.add(OrgMember(org_id=row_id(org), user_id=row_id(owner), role="owner"))
    session.flush()
    return org


def get_org(session: Session, name: str) -> Organisation:
    org = session.exec(select(Organisation).where(Organisation.name == name)).first()
    if org is None:
        raise HubError("org_not_found", f"no organisation named {name!r}")
    return org


def org_role(session: Session, org_id: int, user_id: int) -> OrgRole | None:
    member = session.get(OrgMember, (org_id, user_id))
    return member.role if member else None


def org_members(session: Session, org: Organisation) -> list[tuple[User, OrgRole]]:
    rows = session.exec(
        select(User, col(OrgMember.role))
        .join(OrgMember, col(OrgMember.user_id) == User.id)
        .where(OrgMember.org_id == org.id)
        .order_by(User.name)
    )
    return [(u, r) for u, r in rows]


def set_org_member(
    session: Session, principal: Principal, org: Organisation, user: User, role: OrgRole | None
) -> None:
    """Add, change or (``role=None``) remove a member. Only owners (or admins) may."""
    actor = principal.require_user()
    if not principal.is_admin and org_role(session, row_id(org), row_id(actor)) != "owner":
        raise HubError("forbidden", f"only owners of {org.name!r} manage its members")
    if role is not None and role not in ORG_ROLES:
        raise HubError("invalid_field", f"role must be one of {', '.join(ORG_ROLES)}")
    member = session.get(OrgMember, (org.id, user.id))
    if role is None or (member and member.role == "owner" and role != "owner"):
        owners = session.exec(
            select(sa.func.count()).select_from(OrgMember)
            .where(OrgMember.org_id == org.id, OrgMember.role == "owner")
        ).one()
        if member and member.role == "owner" and owners <= 1:
            raise HubError("forbidden", "an organisation keeps at least one owner")
    if role is None:
        if member:
            session.delete(member)
        return
    if member:
        member.role = role
        session.add(member)
    else:
        session.add(OrgMember(org_id=row_id(org), user_id=row_id(user), role=role))
