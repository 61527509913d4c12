"""The access rules of hub/services/access.py agree with themselves, on both backends.

Each rule has two forms a caller may use: "may read" as a check on one package (``can_read``)
and as a WHERE clause for listings (``visible_filter``); "may publish" as a yes/no
(``may_publish``, the website's) and as a check that raises (``require_maintainer``, the
API's). Every kind of caller (anonymous; namespace owner, organisation owner and member,
named maintainer, stranger, admin; each with every kind of token) against every kind of
package (public and private, in a user's and an organisation's namespace) must get the same
answer from both forms, and the answers the docs (docs/architecture.md) promise.
"""

from __future__ import annotations

import itertools

import pytest
from sqlmodel import select

from cvflow.names import PackageName
from hub.db import session_scope
from hub.errors import HubError
from hub.models import Namespace, OrgMember, Package, PackageRole, User
from hub.security import Scopes
from hub.services import access, accounts, packages
from hub.services.accounts import ANONYMOUS, Principal

PACKAGES = ("alice/public", "alice/secret", "lab/public", "lab/secret")
TOKENS = ("read", "publish", "publish:alice", "publish:alice/secret", "publish:lab", "publish:lab/secret",
          "publish:erin", "admin", "read publish admin")
USERS = ("alice", "carol", "bob", "dave", "erin", "root")


@pytest.fixture
def world(hub):  # type: ignore[no-untyped-def]
    """alice owns her namespace; carol owns the organisation lab, bob is a member; dave maintains
    alice/secret and lab/secret; erin is a stranger; root is a hub administrator."""
    with session_scope(hub.context.engine, write=True) as session:
        users = {name: accounts.create_user(session, hub.context.hasher, name, None, admin=name == "root")
                 for name in USERS}
        org = accounts.create_org(session, users["carol"], "lab")
        session.add(OrgMember(org_id=org.id, user_id=users["bob"].id, role="member"))  # type: ignore[arg-type]
        for full in PACKAGES:
            ns = session.exec(select(Namespace).where(Namespace.name == full.split("/")[0])).one()
            package, _ = packages.create_package(session, ns, PackageName.parse(full), private="secret" in full)
            if "secret" in full:
                session.add(PackageRole(package_id=package.id, user_id=users["dave"].id, role="maintainer"))  # type: ignore[arg-type]
    return hub


def principals(session):  # type: ignore[no-untyped-def]
    yield "anonymous", ANONYMOUS
    for name, token in itertools.product(USERS, TOKENS):
        user = session.exec(select(User).where(User.name == name)).one()
        yield f"{name} [{token}]", Principal(user=user, scopes=Scopes.parse(token))


def test_may_read_is_one_rule_for_one_package_and_for_listings(world):  # type: ignore[no-untyped-def]
    with session_scope(world.context.engine) as session:
        rows = {p.full_name: p for p in session.exec(select(Package))}
        assert sorted(rows) == sorted(PACKAGES)
        seen = {}
        for label, who in principals(session):
            listed = set(session.exec(select(Package.full_name).where(access.visible_filter(session, who))))
            readable = {name for name, p in rows.items() if access.can_read(session, who, p)}
            assert listed == readable, label
            seen[label] = readable
    public = {"alice/public", "lab/public"}
    assert seen["anonymous"] == seen["erin [read publish admin]"] == seen["erin [read]"] == public
    assert seen["alice [read]"] == seen["alice [publish:alice]"] == public | {"alice/secret"}
    assert seen["alice [publish:lab]"] == public
    assert seen["carol [read]"] == seen["bob [publish:lab]"] == public | {"lab/secret"}
    assert seen["dave [read]"] == set(PACKAGES)
    assert seen["dave [publish:alice/secret]"] == public | {"alice/secret"}
    assert seen["root [read publish admin]"] == seen["root [admin]"] == set(PACKAGES)
    assert seen["root [read]"] == public  # an administrator's power needs an admin token


def test_may_publish_is_one_rule_for_the_website_and_the_api(world):  # type: ignore[no-untyped-def]
    with session_scope(world.context.engine) as session:
        rows = {p.full_name: p for p in session.exec(select(Package))}
        seen = {}
        for label, who in principals(session):
            allowed = set()
            for name, package in rows.items():
                try:
                    access.require_maintainer(session, who, package)
                    raised = None
                except HubError as exc:
                    raised = exc.code
                assert access.may_publish(session, who, package) == (raised is None), (label, name, raised)
                if raised is None:
                    allowed.add(name)
            seen[label] = allowed
    assert seen["anonymous"] == set()
    assert seen["alice [publish]"] == {"alice/public", "alice/secret"}
    assert seen["alice [publish:alice/secret]"] == {"alice/secret"}
    assert seen["alice [read]"] == set()  # a read token publishes nothing
    assert seen["carol [publish]"] == {"lab/public", "lab/secret"}
    assert seen["bob [publish]"] == set()  # an organisation's members read its packages, owners publish
    assert seen["dave [publish]"] == {"alice/secret", "lab/secret"}
    assert seen["erin [read publish admin]"] == set()
    assert seen["root [admin]"] == set(PACKAGES)
