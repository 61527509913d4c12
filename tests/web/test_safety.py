"""The website's safety rules, over a real socket on both backends: CSRF on every form, session
cookies (HttpOnly, SameSite, Secure over https), security headers on every response, sign-in
rate limits and no open redirects. Script injection has its own module, test_xss.py."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
import uvicorn

from hub.app import create_app
from tests.conftest import free_port, start_hub
from tests.helpers import PASSWORD, LiveHub
from tests.web.support import HTML, browser, csrf, hidden, live_tokens, sign_in


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(hub: LiveHub) -> None:
    hub.create_user("alice")
    client = browser(hub)
    sign_in(client, "alice")
    before = [t.id for t in live_tokens(hub, "alice")]
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
        r = client.post("/settings/tokens", data={**data, "action": "create", "name": "sneaky", "scopes": "publish"})
        assert r.status_code == 403, data
        assert "The form expired" in r.text
    revoke = client.post("/settings/tokens", data={"csrf_token": "forged", "action": "revoke", "token_id": before[0]})
    assert revoke.status_code == 403
    assert [t.id for t in live_tokens(hub, "alice")] == before
    # Signing out needs the token too: without it the session lives on.
    client.post("/logout", data={"csrf_token": "forged"})
    assert client.get("/settings/tokens").status_code == 200
    # And signing in (no login CSRF): a fresh visitor's forged form is refused.
    stranger = browser(hub)
    r = stranger.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "x"})
    assert r.status_code == 403
    assert stranger.get("/settings/tokens").status_code == 303


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith("cvflow_session=")]
    assert len(cookies) == 1, response.headers
    parts = [p.strip() for p in cookies[0].split(";")[1:]]
    return {p.split("=", 1)[0].lower(): (p.split("=", 1)[1] if "=" in p else "") for p in parts}


def test_signing_in_issues_a_new_csrf_token(hub: LiveHub) -> None:
    hub.create_user("alice")
    client = browser(hub)
    before = csrf(client.get("/login").text)
    sign_in(client, "alice")
    after = csrf(client.get("/settings/tokens").text)
    assert after != before
    stale = client.post("/settings/tokens", data={"csrf_token": before, "action": "create", "name": "x"})
    assert stale.status_code == 403


def test_session_cookie_is_httponly_samesite_and_secure_over_https(hub: LiveHub) -> None:
    hub.create_user("alice")
    plain = browser(hub)
    signed_in = sign_in(plain, "alice")
    attrs = cookie_attributes(signed_in)
    assert "httponly" in attrs and attrs["samesite"] == "Lax" and attrs["path"] == "/"
    assert "secure" not in attrs
    # Behind a TLS-terminating proxy on a trusted address (uvicorn trusts 127.0.0.1 by default),
    # X-Forwarded-Proto says the visitor used https.
    tls = browser(hub)
    tls.headers["x-forwarded-proto"] = "https"
    form = tls.get("/login")
    assert "secure" in cookie_attributes(form)
    # httpx keeps a Secure cookie for https only, as browsers do; the socket here is plain http.
    session = form.headers["set-cookie"].split(";", 1)[0]
    signed_in = tls.post("/login", data={"csrf_token": csrf(form.text), "username": "alice", "password": PASSWORD},
                         headers={"cookie": session})
    assert signed_in.status_code == 303
    attrs = cookie_attributes(signed_in)
    assert {"httponly", "secure"} <= attrs.keys() and attrs["samesite"] == "Lax"


def test_forwarded_proto_from_an_untrusted_address_is_ignored(hub: LiveHub) -> None:
    # The same hub behind a server that trusts only a proxy at 10.1.2.3: a client on loopback
    # cannot claim https for itself.
    config = uvicorn.Config(create_app(hub.context.settings, context=hub.context), host="127.0.0.1", port=free_port(),
                            log_level="warning", lifespan="on", proxy_headers=True, forwarded_allow_ips="10.1.2.3")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", headers=HTML) as client:
            form = client.get("/login", headers={"x-forwarded-proto": "https"})
            assert "secure" not in cookie_attributes(form)
    finally:
        server.should_exit = True
        thread.join(10)


def test_every_page_sends_the_security_headers(hub: LiveHub, detector: str) -> None:
    hub.create_user("root", admin=True)
    client = browser(hub)
    paths = ["/", "/search?q=detector", f"/{detector}", f"/{detector}/v/1.0.0", "/zoo", "/zoo/detection", "/alice",
             "/login", "/alice/missing", "/settings/tokens", "/admin", "/static/style.css", "/static/copy.js"]
    signed_in = browser(hub)
    sign_in(signed_in, "root")
    responses = [client.get(p) for p in paths] + [signed_in.get(p) for p in ("/settings/tokens", "/admin")]
    responses.append(client.post("/login", data={}))
    for r in responses:
        csp = r.headers.get("content-security-policy", "")
        assert r.headers.get("x-content-type-options") == "nosniff", r.url
        assert "frame-ancestors 'none'" in csp, r.url
        script = re.search(r"script-src ([^;]+)", csp)
        assert script and script[1].strip() == "'self'", csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp


def test_sign_in_is_rate_limited(make_settings) -> None:  # type: ignore[no-untyped-def]
    live, server = start_hub(make_settings("sqlite-file", login_rate_limit=3))
    try:
        live.create_user("alice")
        client = browser(live)
        # Successful sign-ins do not use up the allowance...
        for _ in range(4):
            assert sign_in(client, "alice").status_code == 303
        # ...failed ones do.
        for _ in range(3):
            r = sign_in(client, "alice", "wrong password!")
            assert r.status_code == 401 and "Wrong user name or password." in r.text
        r = sign_in(client, "alice")
        assert r.status_code == 429 and "Too many sign-in attempts" in r.text
        assert client.get("/settings/tokens").status_code == 200  # still signed in from before, not anew
        # The limit is per address too: another user name from the same address is refused.
        assert sign_in(browser(live), "bob", "wrong password!").status_code == 429
    finally:
        live.close_clients()
        server.__exit__()
        live.context.engine.dispose()


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "/\\evil.example",
                                    "/\t/evil.example", "\\\\evil.example", "javascript:alert(1)"])
def test_sign_in_never_redirects_off_site(hub: LiveHub, target: str) -> None:
    hub.create_user("alice")
    client = browser(hub)
    form = client.get("/login", params={"next": target})
    assert hidden(form.text, "next") == "/"
    r = client.post("/login", data={"csrf_token": csrf(form.text), "username": "alice", "password": PASSWORD,
                                    "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_sign_in_returns_to_the_page_asked_for(hub: LiveHub) -> None:
    hub.create_user("alice")
    r = sign_in(browser(hub), "alice", next="/search?q=cars&task=detection")
    assert r.headers["location"] == "/search?q=cars&task=detection"
