"""The OpenAPI document, and the JSON errors for paths and methods no endpoint serves.

These do not depend on the storage backend, so they run once, on a hub built here on SQLite
+ files and served over a real loopback socket.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from hub.api import endpoints
from hub.app import build_context, create_app
from hub.db import session_scope
from hub.errors import CODES
from hub.security import Scopes
from hub.services import accounts
from tests.conftest import ServerThread
from tests.helpers import PASSWORD, error_code

OPENAPI = "/api/v1/openapi.json"


@pytest.fixture(scope="module")
def served(make_settings) -> Iterator[tuple[Starlette, httpx.Client, str]]:  # type: ignore[no-untyped-def]
    """The app, a client for it, and a read+publish token of user ``alice``."""
    settings = make_settings("sqlite-file")
    context = build_context(settings)
    with session_scope(context.engine, write=True) as session:
        alice = accounts.create_user(session, context.hasher, "alice", PASSWORD)
        _, token = accounts.create_token(session, alice, Scopes.parse("read publish"))
    app = create_app(settings, context=context)
    with ServerThread(app) as server, httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        yield app, client, token
    context.engine.dispose()


@pytest.fixture(scope="module")
def spec(served) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = served[1].get(OPENAPI)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return r.json()  # type: ignore[no-any-return]


def _openapi_path(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", r"{\1}", path)


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_route_is_documented_with_its_methods(served, spec):
    app = served[0]
    served_ops = set()
    for route in app.routes:
        # The API and the probes are documented; the website's pages are not an API.
        if not isinstance(route, Route) or route.path == OPENAPI or route.endpoint.__module__.startswith("web."):
            continue
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET route
                served_ops.add((_openapi_path(route.path), method.lower()))
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert served_ops - documented == set(), "routes missing from the document"
    assert documented - served_ops == set(), "documented operations no route serves"


def test_every_path_parameter_is_declared(spec):
    for path, ops in spec["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_every_error_code_an_endpoint_names_is_in_the_document(spec):
    enum = set(spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    listed = spec["x-error-codes"]
    named = {code for ep in endpoints() for code in ep.errors}
    # The router's own errors, for paths and methods no endpoint serves.
    named |= {"not_found", "method_not_allowed"}
    assert named <= set(CODES)
    for code in sorted(named):
        assert code in enum, code
        assert listed[code]["status"] == CODES[code][0], code
        assert listed[code]["description"] == CODES[code][1], code
    assert set(listed) == enum == set(CODES)


def test_each_operation_documents_its_errors_under_their_status(spec):
    for ep in endpoints():
        op = spec["paths"][_openapi_path(ep.path)][ep.method.lower()]
        assert str(ep.status) in op["responses"], (ep.method, ep.path)
        for code in ep.errors:
            response = op["responses"].get(str(CODES[code][0]))
            assert response is not None, (ep.method, ep.path, code)
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}
            assert content["examples"][code]["value"]["error"]["code"] == code
        if ep.auth == "required":
            assert op["security"] == [{"token": []}], (ep.method, ep.path)


# Requests that provoke an error: (id, method, url, request keywords, with alice's token?, documented path).
NOT_JSON = {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}
BOGUS_TOKEN = {"headers": {"authorization": "Bearer cvf_" + "x" * 43}}
PROVOKED = [
    ("whoami-anonymous", "GET", "/api/v1/whoami", {}, False, "/api/v1/whoami"),
    ("login-unknown-user", "POST", "/api/v1/auth/login", {"json": {"username": "nobody", "password": "whatever1"}},
     False, "/api/v1/auth/login"),
    ("login-bad-scope", "POST", "/api/v1/auth/login", {"json": {"username": "a", "password": "b", "scopes": ["x"]}},
     False, "/api/v1/auth/login"),
    ("login-not-json", "POST", "/api/v1/auth/login", NOT_JSON, False, "/api/v1/auth/login"),
    ("login-no-password", "POST", "/api/v1/auth/login", {"json": {"username": "nobody"}}, False, "/api/v1/auth/login"),
    ("login-bad-expiry", "POST", "/api/v1/auth/login", {"json": {"username": "a", "password": "b", "expires_in": -1}},
     False, "/api/v1/auth/login"),
    ("tokens-anonymous", "POST", "/api/v1/tokens", {"json": {}}, False, "/api/v1/tokens"),
    ("tokens-wider", "POST", "/api/v1/tokens", {"json": {"scopes": ["admin"]}}, True, "/api/v1/tokens"),
    ("tokens-not-json", "POST", "/api/v1/tokens", NOT_JSON, True, "/api/v1/tokens"),
    ("tokens-bad-expiry", "POST", "/api/v1/tokens", {"json": {"expires_in": 0}}, True, "/api/v1/tokens"),
    ("revoke-unknown", "DELETE", "/api/v1/tokens/999999", {}, True, "/api/v1/tokens/{token_id}"),
    ("org-unknown", "GET", "/api/v1/orgs/nope", {}, False, "/api/v1/orgs/{org}"),
    ("org-create-not-json", "POST", "/api/v1/orgs", NOT_JSON, True, "/api/v1/orgs"),
    ("org-create-name-not-string", "POST", "/api/v1/orgs", {"json": {"name": 5}}, True, "/api/v1/orgs"),
    ("org-member-not-json", "PUT", "/api/v1/orgs/nope/members/alice", NOT_JSON, True, "/api/v1/orgs/{org}/members/{user}"),
    ("package-unknown", "GET", "/api/v1/packages/nobody/nothing", {}, False, "/api/v1/packages/{namespace}/{name}"),
    ("package-bogus-token", "GET", "/api/v1/packages/nobody/nothing", BOGUS_TOKEN, False,
     "/api/v1/packages/{namespace}/{name}"),
]


@pytest.mark.parametrize(("method", "url", "kw", "with_token", "path"), [p[1:] for p in PROVOKED],
                         ids=[p[0] for p in PROVOKED])
def test_errors_the_api_returns_are_documented_on_their_operation(served, spec, method, url, kw, with_token, path):
    _, client, token = served
    if with_token:
        kw = {**kw, "headers": {**kw.get("headers", {}), "authorization": f"Bearer {token}"}}
    r = client.request(method, url, **kw)
    assert r.status_code >= 400, r.text
    code = error_code(r)
    assert CODES[code][0] == r.status_code
    documented = spec["paths"][path][method.lower()]["responses"].get(str(r.status_code), {})
    examples = documented.get("content", {}).get("application/json", {}).get("examples", {})
    assert code in examples, f"{method} {url} returned {r.status_code} {code}, which its operation does not document"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("url", ["/a/b/c/d", "/nope/x/y/z/w", "/api/v1/nope", "/api/v2/packages", "/api/v1/tokens/not-a-number",
                                 "/api/v1/packages/a/b/c/d/e/f"])
def test_unknown_paths_are_json_404_not_found(served, method, url):
    r = served[1].request(method, url)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert error_code(r) == "not_found"


@pytest.mark.parametrize(("method", "url", "allowed"), [
    ("DELETE", "/healthz", "GET"),
    ("POST", "/api/v1/whoami", "GET"),
    ("PUT", "/api/v1/auth/login", "POST"),
    ("GET", "/api/v1/tokens/1", "DELETE"),
    ("POST", OPENAPI, "GET"),
])
def test_a_wrong_method_is_json_405_method_not_allowed(served, method, url, allowed):
    r = served[1].request(method, url)
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/json")
    assert error_code(r) == "method_not_allowed"
    assert allowed in r.headers["allow"]
