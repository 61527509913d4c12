"""Pages for signed-in people, over a real socket on both backends: API tokens (shown once,
listed, revoked), the administrators' page, and signing out."""

from __future__ import annotations

import re

from tests.helpers import LiveHub
from tests.web.support import browser, csrf, live_tokens, section, sign_in, text


def test_tokens_page_creates_a_token_shown_once_lists_and_revokes_it(hub: LiveHub) -> None:
    hub.create_user("alice")
    client = browser(hub)
    anonymous = client.get("/settings/tokens")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/settings/tokens"
    assert sign_in(client, "alice", next="/settings/tokens").headers["location"] == "/settings/tokens"

    page = client.get("/settings/tokens").text
    created = client.post("/settings/tokens", data={"csrf_token": csrf(page), "action": "create", "name": "laptop",
                                                    "scopes": ["read", "publish"]})
    assert created.status_code == 200
    secret = re.search(r'id="new-token" readonly value="([^"]+)"', created.text)
    assert secret and "shown only once" in created.text
    api = hub.client(secret[1])
    who = api.get("/api/v1/whoami")
    assert who.status_code == 200 and who.json()["name"] == "alice"
    assert who.json()["scopes"] == ["publish", "read"]

    again = client.get("/settings/tokens")
    assert secret[1] not in again.text and "new-token" not in again.text
    row = re.search(r"<tr><td>laptop</td><td><code>([^<]+)…</code></td><td>publish read</td>", again.text)
    assert row and secret[1].startswith(row[1])
    assert again.headers["cache-control"] == "no-store"

    token_id = re.search(r'name="token_id" value="(\d+)">\s*<button type="submit" aria-label="Revoke laptop">',
                         again.text)
    assert token_id
    revoked = client.post("/settings/tokens", data={"csrf_token": csrf(again.text), "action": "revoke",
                                                    "token_id": token_id[1]})
    assert revoked.status_code == 200 and "<td>laptop</td>" not in revoked.text
    assert api.get("/api/v1/whoami").status_code == 401
    assert [t.name for t in live_tokens(hub, "alice")] == ["token"]  # the fixture's, untouched


def test_admin_page_is_for_administrators(hub: LiveHub, detector: str) -> None:
    hub.create_user("root", admin=True)
    bob = browser(hub)
    hub.create_user("bob")
    sign_in(bob, "bob")
    forbidden = bob.get("/admin")
    assert forbidden.status_code == 403 and "Administrators only." in forbidden.text
    assert 'href="/admin"' not in forbidden.text
    assert browser(hub).get("/admin").headers["location"] == "/login?next=/admin"

    root = browser(hub)
    sign_in(root, "root")
    page = root.get("/admin")
    assert page.status_code == 200
    users = section(page.text, "users-h")
    assert listed_users(users) == ["alice", "bob", "root"]
    yanks = text(section(page.text, "yanks-h"))
    assert "alice/detector@1.0.0 yank wrong labels" in yanks
    storage = text(section(page.text, "storage-h"))
    assert re.search(r"Blobs \d+ \([\d.]+ (B|KiB)\) Packages 3", storage)
    assert ("file://" in storage) if hub.backend.endswith("file") else ("s3://" in storage)


def listed_users(html: str) -> list[str]:
    return re.findall(r'<tr><td><a href="/([^"]+)">', html)


def test_revoking_a_token_that_is_not_yours_changes_nothing(hub: LiveHub) -> None:
    hub.create_user("alice")
    hub.create_user("bob")
    bobs = [t.id for t in live_tokens(hub, "bob")]
    client = browser(hub)
    sign_in(client, "alice")
    for token_id in (str(bobs[0]), "not-a-number", ""):
        page = client.get("/settings/tokens").text
        r = client.post("/settings/tokens", data={"csrf_token": csrf(page), "action": "revoke", "token_id": token_id})
        assert r.status_code == 400 and "you have no token with id" in r.text
    assert [t.id for t in live_tokens(hub, "bob")] == bobs


def test_sign_out_ends_the_session(hub: LiveHub) -> None:
    hub.create_user("alice")
    client = browser(hub)
    sign_in(client, "alice")
    home = client.get("/").text
    assert 'href="/alice">alice</a>' in home and "Sign out" in home
    out = client.post("/logout", data={"csrf_token": csrf(home)})
    assert out.status_code == 303
    assert "Sign in" in client.get("/").text
    assert client.get("/settings/tokens").status_code == 303
