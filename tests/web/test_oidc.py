"""Sign-in through OpenID Connect, against a small provider the tests run on loopback
(tests/web/oidc_provider.py): the hub discovers it, redirects to it, checks the state, swaps the
code for an RS256 id_token, verifies it against the provider's keys, and links a local user."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlmodel import select

from hub.db import session_scope
from hub.models import User, UserIdentity
from tests.conftest import reset, running_hub
from tests.helpers import LiveHub
from tests.web.oidc_provider import OIDCProvider
from tests.web.support import browser, csrf, text

CAROL = {"sub": "idp-0001", "preferred_username": "Carol", "email": "carol@example.org", "name": "Carol C."}


@pytest.fixture(scope="module")
def idp() -> Iterator[OIDCProvider]:
    with OIDCProvider(user=dict(CAROL)) as provider:
        yield provider


@pytest.fixture(scope="module")
def oidc_site(make_settings, idp: OIDCProvider) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    providers = [{"name": "testidp", "issuer": idp.issuer, "client_id": "cvflow", "client_secret": "s3cret",
                  "title": "Test IdP"}]
    with running_hub(make_settings("sqlite-file", oidc_providers=json.dumps(providers))) as live:
        yield live


@pytest.fixture
def site(oidc_site: LiveHub, idp: OIDCProvider) -> Iterator[LiveHub]:
    reset(oidc_site)
    idp.user = dict(CAROL)
    idp.id_token_overrides.clear()
    idp.signing_key = None
    yield oidc_site
    oidc_site.close_clients()


def users(hub: LiveHub) -> list[tuple[str, str | None, bool]]:
    with session_scope(hub.context.engine) as session:
        return [(u.name, u.email, u.password_hash is None) for u in session.exec(select(User).order_by(User.id))]


def identities(hub: LiveHub) -> list[tuple[str, str, str]]:
    with session_scope(hub.context.engine) as session:
        rows = session.exec(select(UserIdentity.provider, UserIdentity.subject, User.name)
                            .join(User, User.id == UserIdentity.user_id))  # type: ignore[arg-type]
        return sorted((p, s, n) for p, s, n in rows)


def signed_in_as(client: httpx.Client) -> str | None:
    page = client.get("/").text
    if "Sign out" not in page:
        return None
    tokens = client.get("/settings/tokens")
    assert tokens.status_code == 200
    return page.split('<nav aria-label="Main">', 1)[1].split('<a href="/', 2)[2].split('"', 1)[0]


def oidc_sign_in(client: httpx.Client, next: str | None = None) -> httpx.Response:
    return client.get("/login/oidc/testidp", params={"next": next} if next else None, follow_redirects=True)


def test_sign_in_page_offers_the_provider(site: LiveHub) -> None:
    page = browser(site).get("/login", params={"next": "/settings/tokens"}).text
    assert '<a class="button" href="/login/oidc/testidp?next=/settings/tokens">Test IdP</a>' in page


def test_first_sign_in_creates_a_linked_user_and_the_next_reuses_it(site: LiveHub, idp: OIDCProvider) -> None:
    client = browser(site)
    r = oidc_sign_in(client, next="/settings/tokens")
    assert r.status_code == 200, r.text
    assert r.url.path == "/settings/tokens"
    assert [h.status_code for h in r.history] == [302, 302, 303]
    assert signed_in_as(client) == "carol"
    assert users(site) == [("carol", "carol@example.org", True)]
    assert identities(site) == [("testidp", "idp-0001", "carol")]
    # The hub asked for a code with a state and a nonce, and sent a redirect URI of its own.
    asked = idp.authorize_requests[-1]
    assert asked["response_type"] == "code" and asked["client_id"] == "cvflow"
    assert asked["state"] and asked["nonce"] and "openid" in asked["scope"].split()
    assert asked["redirect_uri"] == f"{site.url}/login/oidc/testidp/callback"

    home = client.get("/").text
    client.post("/logout", data={"csrf_token": csrf(home)})
    assert signed_in_as(client) is None

    again = browser(site)
    assert oidc_sign_in(again).url.path == "/"
    assert signed_in_as(again) == "carol"
    assert users(site) == [("carol", "carol@example.org", True)]  # the same user, not a new one

    # Another person whose provider name is taken here gets a free name, linked to their subject.
    idp.user = {"sub": "idp-0002", "preferred_username": "carol"}
    other = browser(site)
    oidc_sign_in(other)
    name = signed_in_as(other)
    assert name and name.startswith("carol-") and name != "carol"
    assert identities(site) == [("testidp", "idp-0001", "carol"), ("testidp", "idp-0002", name)]


def test_an_account_made_by_sign_in_has_no_password_to_guess(site: LiveHub) -> None:
    oidc_sign_in(browser(site))
    client = browser(site)
    form = client.get("/login").text
    for password in ("", "carol", "None", "oidc"):
        r = client.post("/login", data={"csrf_token": csrf(form), "username": "carol", "password": password})
        assert r.status_code in (401, 429) and "Sign out" not in r.text


def start(client: httpx.Client) -> tuple[str, dict[str, str]]:
    """Go as far as the provider's redirect back; returns the callback path and its query."""
    to_idp = client.get("/login/oidc/testidp")
    assert to_idp.status_code == 302
    back = httpx.get(to_idp.headers["location"])
    assert back.status_code == 302
    url = urlsplit(back.headers["location"])
    return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}


def test_a_bad_or_missing_state_is_refused(site: LiveHub) -> None:
    client = browser(site)
    path, query = start(client)
    for bad in ({**query, "state": "forged"}, {"code": query["code"]}):
        r = client.get(path, params=bad)
        assert r.status_code == 400, r.text
        assert "Sign-in failed" in r.text
    # A callback in someone else's browser (no state in its session) is refused too.
    path, query = start(browser(site))
    stranger = browser(site)
    assert stranger.get(path, params=query).status_code == 400
    assert signed_in_as(stranger) is None and signed_in_as(client) is None
    assert users(site) == []


def test_a_state_works_once(site: LiveHub) -> None:
    client = browser(site)
    path, query = start(client)
    assert client.get(path, params=query).status_code == 303
    assert client.get(path, params=query).status_code == 400


def test_the_provider_saying_no_is_a_sign_in_failure(site: LiveHub) -> None:
    client = browser(site)
    path, query = start(client)
    r = client.get(path, params={"error": "access_denied", "state": query["state"]})
    assert r.status_code == 400 and "access_denied" in r.text


@pytest.mark.parametrize("tamper", [
    {"nonce": "replayed-nonce"},
    {"aud": "some-other-client"},
    {"iss": "http://127.0.0.1:1/"},
    {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
    "wrong key",
], ids=["nonce", "audience", "issuer", "expired", "signature"])
def test_an_id_token_that_does_not_verify_is_refused(site: LiveHub, idp: OIDCProvider, tamper: Any) -> None:
    if tamper == "wrong key":
        idp.signing_key = RSAKey.generate_key(2048, parameters={"kid": "test-key"}, private=True)
    else:
        idp.id_token_overrides.update(tamper)
    client = browser(site)
    r = oidc_sign_in(client)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("text/html") and "Sign-in failed" in text(r.text)
    assert signed_in_as(client) is None
    assert users(site) == []


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/"])
def test_sign_in_through_the_provider_never_leaves_the_site(site: LiveHub, target: str) -> None:
    r = oidc_sign_in(browser(site), next=target)
    assert r.url.path == "/" and r.url.host == "127.0.0.1"
    assert r.history[-1].headers["location"] == "/"


def test_an_unknown_provider_is_a_404(site: LiveHub) -> None:
    assert browser(site).get("/login/oidc/nosuch").status_code == 404
    assert browser(site).get("/login/oidc/nosuch/callback?code=x&state=y").status_code == 404


def test_browser_signs_in_with_the_provider(site: LiveHub, chromium: Any) -> None:
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(site.url + "/login")
        page.get_by_role("link", name="Test IdP").click()
        page.wait_for_url(site.url + "/")
        nav = page.get_by_role("navigation", name="Main")
        assert nav.get_by_role("link", name="carol").is_visible()
        assert nav.get_by_role("button", name="Sign out").is_visible()
    finally:
        context.close()
