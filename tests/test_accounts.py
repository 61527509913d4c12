"""Logging in, API tokens and their scopes, and organisations, over HTTP."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from hub.db import session_scope
from hub.errors import HubError
from hub.services import accounts
from tests.helpers import PASSWORD, error_code, publish, sha256


def login(hub, username: str = "alice", password: str = PASSWORD, **extra):  # type: ignore[no-untyped-def]
    return hub.client().post("/api/v1/auth/login", json={"username": username, "password": password, **extra})


# --- login ------------------------------------------------------------------------------------


def test_login_trades_a_password_for_a_token_shown_once(hub):
    hub.create_user("alice")
    r = login(hub, name="laptop")
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["token"]
    assert secret.startswith("cvf_") and len(secret) > 40
    assert created["name"] == "laptop"
    assert created["scopes"] == ["publish", "read"]
    assert created["prefix"] == secret[:8]

    me = hub.client(secret).get("/api/v1/whoami")
    assert me.status_code == 200
    assert me.json()["name"] == "alice" and me.json()["scopes"] == ["publish", "read"]

    listed = hub.client(secret).get("/api/v1/tokens")
    assert listed.status_code == 200
    mine = [t for t in listed.json()["tokens"] if t["id"] == created["id"]]
    assert len(mine) == 1
    assert "token" not in mine[0]
    assert mine[0]["prefix"] == secret[:8] and mine[0]["name"] == "laptop"
    assert secret not in listed.text


def test_login_with_narrower_scopes_and_an_expiry(hub):
    hub.create_user("alice")
    r = login(hub, scopes=["publish:alice/detector"], expires_in=3600)
    assert r.status_code == 201, r.text
    assert r.json()["scopes"] == ["publish:alice/detector"]
    assert r.json()["expires_at"] is not None
    narrow = hub.client(r.json()["token"])
    assert publish(narrow).status_code == 201
    other = publish(narrow, "alice/other")
    assert other.status_code == 403 and error_code(other) == "insufficient_scope"


def test_wrong_password_and_unknown_user_look_the_same(hub):
    hub.create_user("alice")
    wrong = login(hub, password="not the password")
    unknown = login(hub, username="nobody")
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert error_code(r) == "invalid_credentials"
        assert r.headers["www-authenticate"] == "Bearer"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_a_user_without_a_password_cannot_log_in(hub):
    with session_scope(hub.context.engine, write=True) as session:
        accounts.create_user(session, hub.context.hasher, "demo", None)
    for password in ("", "anything at all"):
        r = login(hub, username="demo", password=password)
        assert r.status_code == 401 and error_code(r) == "invalid_credentials"


BAD_LOGINS = [
    ({"username": "alice"}, "invalid_field"),
    ({"username": "alice", "password": 12345678}, "invalid_field"),
    ({"username": "alice", "password": PASSWORD, "scopes": ["write"]}, "invalid_scope"),
    ({"username": "alice", "password": PASSWORD, "scopes": []}, "invalid_scope"),
    ({"username": "alice", "password": PASSWORD, "scopes": 7}, "invalid_scope"),
    ({"username": "alice", "password": PASSWORD, "expires_in": 0}, "invalid_field"),
    ({"username": "alice", "password": PASSWORD, "expires_in": "60"}, "invalid_field"),
    ({"username": "alice", "password": PASSWORD, "expires_in": True}, "invalid_field"),
]


def test_malformed_login_requests_are_422_and_mint_no_token(hub):
    alice = hub.client(hub.create_user("alice"))
    for body, code in BAD_LOGINS:
        r = hub.client().post("/api/v1/auth/login", json=body)
        assert (r.status_code, error_code(r)) == (422, code), body
    assert len(alice.get("/api/v1/tokens").json()["tokens"]) == 1


def test_a_login_body_that_is_not_a_json_object_is_400(hub):
    for content in (b"username=alice", b"[1, 2]"):
        r = hub.client().post("/api/v1/auth/login", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400 and error_code(r) == "invalid_json"


def test_an_expiry_beyond_the_calendar_is_refused_not_a_server_error(hub):
    hub.create_user("alice")
    r = login(hub, expires_in=10**12)  # ~31,700 years: past datetime.max
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_field"


def test_admin_scope_needs_an_admin_user(hub):
    hub.create_user("alice")
    r = login(hub, scopes=["read", "admin"])
    assert r.status_code == 403 and error_code(r) == "forbidden"

    hub.create_user("root", admin=True)
    r = login(hub, username="root", scopes=["admin"])
    assert r.status_code == 201, r.text
    me = hub.client(r.json()["token"]).get("/api/v1/whoami").json()
    assert (me["name"], me["admin"], me["scopes"]) == ("root", True, ["admin"])


# --- whoami ---------------------------------------------------------------------------------


def test_whoami_names_the_user_and_the_token_scopes(hub):
    client = hub.client(hub.create_user("alice", scopes="read publish:alice"))
    r = client.get("/api/v1/whoami")
    assert r.status_code == 200
    me = r.json()
    assert me["name"] == "alice" and me["admin"] is False
    assert me["scopes"] == ["publish:alice", "read"]
    assert me["created_at"]


def test_whoami_without_a_valid_token_is_401(hub):
    hub.create_user("alice")
    for header in (None, "Bearer", "Basic YWxpY2U6cHc=", "Bearer not-a-token", "Bearer cvf_" + "x" * 43):
        headers = {"authorization": header} if header else {}
        r = hub.client().get("/api/v1/whoami", headers=headers)
        assert (r.status_code, error_code(r)) == (401, "unauthenticated"), header
        assert r.headers["www-authenticate"] == "Bearer"


# --- tokens ---------------------------------------------------------------------------------


def test_a_token_may_create_a_narrower_token(hub):
    client = hub.client(hub.create_user("alice", scopes="read publish:alice"))
    for scopes in (["publish:alice"], ["publish:alice/detector"], ["read"], ["read", "publish:alice/x"]):
        r = client.post("/api/v1/tokens", json={"scopes": scopes, "name": "ci"})
        assert r.status_code == 201, (scopes, r.text)
        created = r.json()
        assert created["token"].startswith("cvf_")
        assert created["scopes"] == sorted(scopes) and created["name"] == "ci"
        assert hub.client(created["token"]).get("/api/v1/whoami").json()["scopes"] == sorted(scopes)

    ci = hub.client(client.post("/api/v1/tokens", json={"scopes": ["publish:alice/detector"]}).json()["token"])
    assert publish(ci).status_code == 201
    r = publish(ci, "alice/other")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"


WIDER = [
    ("publish:alice", ["publish"]),
    ("publish:alice", ["admin"]),
    ("publish:alice", ["read"]),
    ("publish:alice", ["publish:bob"]),
    ("publish:alice/detector", ["publish:alice"]),
    ("publish:alice/detector", ["publish:alice/other"]),
    ("read", ["publish:alice/detector"]),
    ("read publish", ["admin"]),
]


def test_a_token_cannot_create_a_wider_token(hub):
    hub.create_user("alice")
    for own, asked in WIDER:
        client = hub.client(login(hub, scopes=own.split()).json()["token"])
        r = client.post("/api/v1/tokens", json={"scopes": asked})
        assert (r.status_code, error_code(r)) == (403, "insufficient_scope"), (own, asked)
    # Only the tokens minted by create_user and the logins above exist.
    assert len(hub.client(login(hub).json()["token"]).get("/api/v1/tokens").json()["tokens"]) == len(WIDER) + 2


def test_unknown_scopes_are_422(hub):
    client = hub.client(hub.create_user("alice"))
    for scope in ("write", "publish:", "publish:Alice", "publish:alice/Det", "read,publish", "publish:a"):
        r = client.post("/api/v1/tokens", json={"scopes": [scope]})
        assert (r.status_code, error_code(r)) == (422, "invalid_scope"), scope
        assert scope in r.json()["error"]["message"]
    r = client.post("/api/v1/tokens", json={"scopes": []})
    assert (r.status_code, error_code(r)) == (422, "invalid_scope")
    assert len(client.get("/api/v1/tokens").json()["tokens"]) == 1


def test_creating_a_token_needs_a_token(hub):
    r = hub.client().post("/api/v1/tokens", json={"scopes": ["read"]})
    assert r.status_code == 401 and error_code(r) == "unauthenticated"


def test_an_admin_token_may_create_an_admin_token(hub):
    root = hub.client(hub.create_user("root", admin=True, scopes="admin"))
    r = root.post("/api/v1/tokens", json={"scopes": ["admin"]})
    assert r.status_code == 201, r.text
    assert hub.client(r.json()["token"]).get("/api/v1/whoami").json()["admin"] is True


def test_revoked_tokens_stop_working(hub):
    keep = hub.client(hub.create_user("alice"))
    [kept] = keep.get("/api/v1/tokens").json()["tokens"]
    doomed = keep.post("/api/v1/tokens", json={"scopes": ["read"]}).json()
    doomed_client = hub.client(doomed["token"])
    assert doomed_client.get("/api/v1/whoami").status_code == 200

    r = keep.delete(f"/api/v1/tokens/{doomed['id']}")
    assert r.status_code == 204
    r = doomed_client.get("/api/v1/whoami")
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    assert [t["id"] for t in keep.get("/api/v1/tokens").json()["tokens"]] == [kept["id"]]

    again = keep.delete(f"/api/v1/tokens/{doomed['id']}")
    assert again.status_code == 404 and error_code(again) == "token_not_found"
    assert keep.get("/api/v1/whoami").status_code == 200


def test_a_token_may_revoke_itself(hub):
    secret = hub.create_user("alice")
    client = hub.client(secret)
    own_id = client.get("/api/v1/tokens").json()["tokens"][0]["id"]
    assert client.delete(f"/api/v1/tokens/{own_id}").status_code == 204
    assert client.get("/api/v1/whoami").status_code == 401


def test_revoking_someone_elses_token_is_404_and_leaves_it_working(hub):
    alice = hub.client(hub.create_user("alice"))
    bob = hub.client(hub.create_user("bob"))
    bobs_id = bob.get("/api/v1/tokens").json()["tokens"][0]["id"]
    r = alice.delete(f"/api/v1/tokens/{bobs_id}")
    assert r.status_code == 404 and error_code(r) == "token_not_found"
    r = alice.delete("/api/v1/tokens/999999")
    assert r.status_code == 404 and error_code(r) == "token_not_found"
    assert bob.get("/api/v1/whoami").status_code == 200
    assert [t["id"] for t in bob.get("/api/v1/tokens").json()["tokens"]] == [bobs_id]


def test_tokens_list_only_your_own(hub):
    alice = hub.client(hub.create_user("alice"))
    alice.post("/api/v1/tokens", json={"scopes": ["read"], "name": "second"})
    bob = hub.client(hub.create_user("bob"))
    assert [t["name"] for t in alice.get("/api/v1/tokens").json()["tokens"]] == ["token", "second"]
    assert len(bob.get("/api/v1/tokens").json()["tokens"]) == 1


def test_expired_tokens_are_refused(hub):
    hub.create_user("alice")
    r = login(hub, expires_in=1)
    assert r.status_code == 201
    client = hub.client(r.json()["token"])
    assert client.get("/api/v1/whoami").status_code == 200
    time.sleep(1.2)
    r = client.get("/api/v1/whoami")
    assert r.status_code == 401
    assert error_code(r) == "unauthenticated"


def test_using_a_token_records_when_it_was_last_used(hub):
    client = hub.client(hub.create_user("alice"))
    assert client.get("/api/v1/whoami").status_code == 200
    [token] = client.get("/api/v1/tokens").json()["tokens"]
    assert token["last_used_at"] is not None


def test_tokens_are_stored_only_as_their_sha256(hub):
    hub.create_user("alice")
    secret = login(hub).json()["token"]
    with hub.context.engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(sa.text("SELECT * FROM tokens"))]
    assert len(rows) == 2  # create_user's token and the login's
    row = next(r for r in rows if r["token_hash"] == sha256(secret.encode()))
    for column, value in row.items():
        assert secret not in str(value), column
        assert secret[4:] not in str(value), column
    assert row["display_prefix"] == secret[:8]


# --- organisations --------------------------------------------------------------------------


def members(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {m["name"]: m["role"] for m in response.json()["members"]}


def test_creating_an_org_makes_the_caller_its_owner(hub, alice):
    r = alice.post("/api/v1/orgs", json={"name": "acme"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "acme"
    assert members(r) == {"alice": "owner"}
    got = hub.client().get("/api/v1/orgs/acme")
    assert got.status_code == 200 and members(got) == {"alice": "owner"}
    missing = hub.client().get("/api/v1/orgs/nope")
    assert missing.status_code == 404 and error_code(missing) == "org_not_found"


def test_org_names_share_the_namespace_with_users(hub, alice):
    hub.create_user("bob")
    for name in ("alice", "bob"):
        r = alice.post("/api/v1/orgs", json={"name": name})
        assert r.status_code == 409 and error_code(r) == "name_taken"
    assert alice.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
    r = alice.post("/api/v1/orgs", json={"name": "acme"})
    assert r.status_code == 409 and error_code(r) == "name_taken"
    with pytest.raises(HubError) as taken:
        hub.create_user("acme")
    assert taken.value.code == "name_taken"


def test_bad_org_names_are_422(hub, alice):
    for name in ("Acme", "a", "acme_corp", "-acme", "acme--corp"):
        r = alice.post("/api/v1/orgs", json={"name": name})
        assert (r.status_code, error_code(r)) == (422, "invalid_package_name"), name
        assert hub.client().get(f"/api/v1/orgs/{name}").status_code == 404


def test_creating_an_org_needs_a_token(hub):
    r = hub.client().post("/api/v1/orgs", json={"name": "acme"})
    assert r.status_code == 401 and error_code(r) == "unauthenticated"


def test_owners_manage_members_and_members_cannot(hub, alice):
    bob = hub.user_client("bob")
    hub.create_user("carol")
    assert alice.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201

    r = alice.put("/api/v1/orgs/acme/members/bob", json={"role": "member"})
    assert r.status_code == 200, r.text
    assert members(r) == {"alice": "owner", "bob": "member"}

    for attempt in (bob.put("/api/v1/orgs/acme/members/carol", json={"role": "member"}),
                    bob.put("/api/v1/orgs/acme/members/bob", json={"role": "owner"}),
                    bob.delete("/api/v1/orgs/acme/members/alice")):
        assert attempt.status_code == 403 and error_code(attempt) == "forbidden"
    assert members(hub.client().get("/api/v1/orgs/acme")) == {"alice": "owner", "bob": "member"}

    r = alice.put("/api/v1/orgs/acme/members/carol", json={"role": "boss"})
    assert r.status_code == 422 and error_code(r) == "invalid_field"
    r = alice.put("/api/v1/orgs/acme/members/nobody", json={"role": "member"})
    assert r.status_code == 404 and error_code(r) == "user_not_found"
    r = alice.put("/api/v1/orgs/nope/members/carol", json={"role": "member"})
    assert r.status_code == 404 and error_code(r) == "org_not_found"
    r = hub.client().put("/api/v1/orgs/acme/members/carol", json={"role": "member"})
    assert r.status_code == 401 and error_code(r) == "unauthenticated"

    r = alice.delete("/api/v1/orgs/acme/members/bob")
    assert r.status_code == 200 and members(r) == {"alice": "owner"}


def test_the_last_owner_cannot_leave_or_step_down(hub, alice):
    hub.create_user("bob")
    assert alice.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
    for attempt in (alice.delete("/api/v1/orgs/acme/members/alice"),
                    alice.put("/api/v1/orgs/acme/members/alice", json={"role": "member"})):
        assert attempt.status_code == 403 and error_code(attempt) == "forbidden"
    assert members(hub.client().get("/api/v1/orgs/acme")) == {"alice": "owner"}

    assert alice.put("/api/v1/orgs/acme/members/bob", json={"role": "owner"}).status_code == 200
    r = alice.delete("/api/v1/orgs/acme/members/alice")
    assert r.status_code == 200 and members(r) == {"bob": "owner"}


def test_org_members_publish_new_packages_and_outsiders_cannot(hub, alice):
    bob = hub.user_client("bob")
    carol = hub.user_client("carol")
    assert alice.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
    assert alice.put("/api/v1/orgs/acme/members/bob", json={"role": "member"}).status_code == 200

    r = publish(bob, "acme/pkg")
    assert r.status_code == 201, r.text
    assert hub.client().get("/api/v1/packages/acme/pkg").json()["latest_version"] == "1.0.0"

    for attempt in (publish(carol, "acme/other"), publish(carol, "acme/pkg", "1.1.0")):
        assert attempt.status_code == 403 and error_code(attempt) == "forbidden"
    assert hub.client().get("/api/v1/packages/acme/other").status_code == 404

    # The org's owner may publish to a package a member created.
    r = publish(alice, "acme/pkg", "1.1.0")
    assert r.status_code == 201, r.text
    assert hub.client().get("/api/v1/packages/acme/pkg").json()["latest_version"] == "1.1.0"


def test_a_publish_scope_for_the_org_namespace_is_enough(hub, alice):
    assert alice.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
    scoped = hub.client(alice.post("/api/v1/tokens", json={"scopes": ["publish:acme"]}).json()["token"])
    assert publish(scoped, "acme/pkg").status_code == 201
    r = publish(scoped, "alice/detector")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"


def test_private_org_packages_are_visible_to_members_only(hub, alice):
    bob = hub.user_client("bob")
    dave = hub.user_client("dave")
    carol = hub.user_client("carol")
    assert alice.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
    for user in ("bob", "dave"):
        assert alice.put(f"/api/v1/orgs/acme/members/{user}", json={"role": "member"}).status_code == 200

    r = publish(bob, "acme/secret", private=True)
    assert r.status_code == 201, r.text

    for member in (alice, bob, dave):
        got = member.get("/api/v1/packages/acme/secret")
        assert got.status_code == 200, got.text
        assert member.get("/api/v1/packages/acme/secret/versions/1.0.0").status_code == 200
    for outsider in (carol, hub.client()):
        got = outsider.get("/api/v1/packages/acme/secret")
        assert got.status_code == 404 and error_code(got) == "package_not_found"
        got = outsider.get("/api/v1/packages/acme/secret/versions/1.0.0")
        assert got.status_code == 404 and error_code(got) == "package_not_found"

    # Leaving the org takes the access away.
    assert alice.delete("/api/v1/orgs/acme/members/dave").status_code == 200
    assert dave.get("/api/v1/packages/acme/secret").status_code == 404
