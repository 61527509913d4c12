"""CSRF is checked once, by a middleware, for every unsafe website request: the class, not one form.

Every route of the website (enumerated from ``web.routes()``, so a new page is covered the day
it is added) is sent every unsafe method by a signed-in browser whose session holds a CSRF
token, with no token, a forged one, an empty one and another session's: each is a 403 before
any view runs, including methods a route does not take and paths no route serves (fail closed).
The real token gets through, and the view still reads the whole form the middleware read first.
Over a real socket, on both backends.
"""

from __future__ import annotations

import re

import httpx
from starlette.routing import Mount, Route

import web
from tests.helpers import LiveHub
from tests.web.support import browser, csrf, live_tokens, sign_in

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
#: A value for every path parameter the website's routes use; a test fails on one not listed here.
PARAMS = {"namespace": "alice", "name": "detector", "version": "1.1.0", "task": "detection",
          "provider": "testidp", "repository_id": "1", "item_id": "1", "image": "train/a.png",
          "fmt": "coco", "job_id": "1"}


def website_paths() -> list[tuple[str, frozenset[str]]]:
    """Every website route as a concrete path, with the methods it takes."""
    out = []
    for route in web.routes():
        if isinstance(route, Mount):
            assert route.path == "/static", f"a mount the CSRF test does not know: {route.path}"
            continue
        assert isinstance(route, Route), route
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAMS[m[1]], route.path)
        out.append((path, frozenset(route.methods or ())))
    return out


def signed_in(hub: LiveHub) -> tuple[httpx.Client, str]:
    client = browser(hub)
    assert sign_in(client, "alice").status_code == 303
    return client, csrf(client.get("/settings/tokens").text)


def test_every_unsafe_website_request_without_the_token_is_refused(hub: LiveHub, detector: str) -> None:
    client, token = signed_in(hub)
    _, other_token = signed_in(hub)  # a real token, but another session's
    paths = website_paths()
    assert any("POST" in methods for _, methods in paths)
    tokens_before = [t.id for t in live_tokens(hub, "alice")]
    paths.append(("/no/such/page/here", frozenset()))
    checked = 0
    for path, _methods in paths:
        for method in UNSAFE:
            for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}, {"csrf_token": other_token}):
                r = client.request(method, path, data={**data, "action": "create", "name": "sneaky"})
                assert r.status_code == 403, (method, path, data, r.status_code)
                assert "The form expired" in r.text
                checked += 1
            r = client.request(method, path, headers={"x-csrf-token": "forged"})
            assert r.status_code == 403, (method, path, "header")
    assert checked >= 4 * 4 * 10
    # Nothing changed: no token was made, and the session lives on.
    assert [t.id for t in live_tokens(hub, "alice")] == tokens_before
    assert client.get("/settings/tokens").status_code == 200


def test_a_visitor_without_a_session_is_refused_too(hub: LiveHub) -> None:
    for path, methods in website_paths():
        for method in sorted(methods & set(UNSAFE)):
            r = browser(hub).request(method, path, data={"csrf_token": "guess"})
            assert r.status_code == 403, (method, path)


def test_the_real_token_gets_through_and_the_view_reads_the_whole_form(hub: LiveHub, detector: str) -> None:
    # What each view answers this form once it runs: never the middleware's 403.
    answers = {"/login": 401, "/logout": 303, "/settings/tokens": 200, "/publish/git": 400,
               "/publish/git/1/reindex": 404, "/publish/dataset": 400, "/projects": 400,
               "/projects/alice/detector/-/members": 404,
               "/projects/alice/detector/-/images": 404, "/projects/alice/detector/-/snapshots": 404,
               "/projects/alice/detector/-/next": 404, "/projects/alice/detector/-/items/1/review": 404,
               "/projects/alice/detector/-/training": 404, "/projects/alice/detector/-/training-jobs": 404}
    for path, methods in website_paths():
        if "POST" in methods:
            client, token = signed_in(hub)
            data = {"csrf_token": token, "username": "alice", "password": "wrong password!"}
            assert client.post(path, data=data).status_code == answers[path], path
    # Urlencoded and multipart bodies reach the view whole, after the middleware read them.
    client, token = signed_in(hub)
    r = client.post("/settings/tokens", data={"csrf_token": token, "action": "create", "name": "laptop",
                                              "scopes": ["read", "publish"]})
    assert r.status_code == 200 and 'id="new-token"' in r.text
    r = client.post("/settings/tokens", files={"csrf_token": (None, token), "action": (None, "create"),
                                               "name": (None, "multipart-" + "x" * 50)})
    assert r.status_code == 200 and 'id="new-token"' in r.text
    # The token may come in a header instead of the form.
    r = client.post("/settings/tokens", data={"action": "create", "name": "by-header"},
                    headers={"x-csrf-token": token})
    assert r.status_code == 200 and 'id="new-token"' in r.text
    names = sorted(t.name for t in live_tokens(hub, "alice"))
    assert {"laptop", "multipart-" + "x" * 50, "by-header"} <= set(names)
    # A body too large for any of the site's forms is refused before a view reads it.
    big = client.post("/settings/tokens", data={"csrf_token": token, "name": "x" * (2 << 20)})
    assert big.status_code == 413
    # Signing out with the token ends the session.
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/settings/tokens").status_code == 303


def test_the_api_is_not_subject_to_csrf(hub: LiveHub) -> None:
    # The API authenticates with bearer tokens, never a cookie: no CSRF token there.
    hub.create_user("alice")
    r = hub.client().post("/api/v1/auth/login", json={"username": "alice", "password": "wrong password!"})
    assert r.status_code == 401
