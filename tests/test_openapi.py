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
from hub.app import ApiRoutes, create_app
from hub.context import build_context
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
    api_routes = [r for route in app.routes if isinstance(route, ApiRoutes) for r in route.routes]
    assert api_routes, "the API's routes are matched apart from the website's"
    for route in api_routes:
        if not isinstance(route, Route) or route.path == OPENAPI:
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


UNKNOWN_API_PATHS = [
    "/api/v1/nope", "/api/v2/packages", "/api/v1/tokens/not-a-number", "/api/v1/packages/a/b/c/d/e/f", "/api",
    "/api/v1", "/api/", "/api/v1/", "/api/v1/whoami/", "/api/v1/packages/a/b/", "/healthz/x", "/healthz/", "/readyz/x",
    "/healthzx", "/readyz/a/b", "/api/v1/tokens/99999999999999999999", "/api/v1/tokens/2147483648", "/api/v1/repositories/2147483648/reindex",
]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("url", UNKNOWN_API_PATHS)
def test_unknown_api_paths_are_json_404_not_found(served, method, url):
    # The website's catch-all pages (/{namespace}/{name}) once answered some of these with a 500.
    r = served[1].request(method, url, headers={"accept": "text/html"})
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith("application/json")
    if method != "HEAD":
        assert error_code(r) == "not_found"


@pytest.mark.parametrize("url", ["/a/b/c/d", "/nope/x/y/z/w"])
def test_unknown_website_paths_are_404(served, url):
    # Unsafe methods on website paths meet the CSRF check first (a 403), by design.
    r = served[1].get(url)
    assert r.status_code == 404
    assert error_code(r) == "not_found"


def _methods_by_path(spec) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    return {path: {m.upper() for m in ops} for path, ops in spec["paths"].items()}


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: "1" if m.group(1).endswith("_id") else "ab", path)


def test_every_405_lists_all_the_methods_of_its_path_in_allow(served, spec):
    """For every documented path and every method it does not take: 405, JSON, and an Allow
    that lists exactly the documented methods (HEAD with GET)."""
    client = served[1]
    checked = 0
    for path, methods in _methods_by_path(spec).items():
        expected = methods | ({"HEAD"} if "GET" in methods else set())
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} - methods):
            r = client.request(method, _concrete(path))
            assert r.status_code == 405, (method, path, r.status_code)
            assert r.headers["content-type"].startswith("application/json")
            assert error_code(r) == "method_not_allowed"
            assert {m.strip() for m in r.headers["allow"].split(",")} == expected, (method, path)
            checked += 1
    assert checked > 50


# --- the document states what the handlers enforce -------------------------------------------------


def test_every_json_body_is_one_model_that_validates_and_documents_it(spec):
    with_body = 0
    for ep in endpoints():
        assert ep.request is None or ep.request_type != "application/json", (ep.method, ep.path, "use body=")
        if ep.body is None:
            continue
        op = spec["paths"][_openapi_path(ep.path)][ep.method.lower()]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{ep.body.__name__}"
        schema = ep.body.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        assert spec["components"]["schemas"][ep.body.__name__] == schema
        with_body += 1
    assert with_body >= 14


def test_name_patterns_read_the_same_as_cvflow_names():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from cvflow.names import NAME_RE, NAMESPACE_RE
    from hub.api.bodies import NAME_LENGTH, NAME_PATTERN, NAMESPACE_LENGTH, NAMESPACE_PATTERN

    def reading(pattern: str, length: tuple[int, int]):  # type: ignore[no-untyped-def]
        rx = re.compile(pattern.removesuffix("$") + r"\Z")
        return lambda v: bool(rx.match(v)) and length[0] <= len(v) <= length[1]

    cases = ((NAMESPACE_RE, reading(NAMESPACE_PATTERN, NAMESPACE_LENGTH)), (NAME_RE, reading(NAME_PATTERN, NAME_LENGTH)))

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="ab09-_.A \n", max_size=70) | st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,70}", fullmatch=True))
    def agree(value: str) -> None:
        for rx, ours in cases:
            assert bool(rx.match(value)) == ours(value), (rx.pattern, value)

    agree()


def _bodies() -> list[tuple[str, str, str]]:
    out = []
    for ep in endpoints():
        if ep.body is not None:
            for prop in ep.body.model_json_schema()["properties"]:
                out.append((ep.method, ep.path, prop))
    return out


WRONG_VALUES = [None, 0, -1, 1.5, True, "", "x", [], [1], [{}], {}, {"a": [1]}, 10**30]


@pytest.mark.parametrize(("method", "path", "prop"), _bodies(), ids=lambda v: str(v))
def test_a_field_of_the_wrong_type_is_a_4xx_never_a_500(served, method, path, prop):
    """Every field of every body, given every JSON type (non-string scopes once gave a 500)."""
    _, client, token = served
    url = re.sub(r"{(\w+)(:\w+)?}", lambda m: "1" if m.group(1).endswith("_id") else "alice", path)
    for auth in ({}, {"authorization": f"Bearer {token}"}):
        for value in WRONG_VALUES:
            r = client.request(method, url, json={prop: value}, headers=auth)
            assert r.status_code < 500, (method, url, prop, value, r.text)
            assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("scopes", [[1], [{}], [None], [["read"]], "read", [" read"], ["read\n"], [], 5])
def test_non_string_scopes_are_invalid_scope_at_login_and_token_creation(served, scopes):
    _, client, token = served
    r = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD, "scopes": scopes})
    assert r.status_code == 422 and error_code(r) in ("invalid_scope", "invalid_field"), r.text
    r = client.post("/api/v1/tokens", json={"scopes": scopes}, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 422 and error_code(r) in ("invalid_scope", "invalid_field"), r.text


@pytest.mark.parametrize(("url", "code"), [
    ("/api/v1/packages?page=0", "invalid_field"), ("/api/v1/packages?page=x", "invalid_field"),
    ("/api/v1/packages?page=", "invalid_field"), ("/api/v1/packages?page=1_0", "invalid_field"),
    ("/api/v1/packages?per_page=101", "invalid_field"), ("/api/v1/packages?sort=stars", "invalid_field"),
    ("/api/v1/changes?since=-1", "invalid_field"), ("/api/v1/changes?limit=0", "invalid_field"),
    ("/api/v1/changes?since=99999999999999999999", "invalid_field"),
])
def test_query_parameters_are_checked_as_documented(served, spec, url, code):
    r = served[1].get(url)
    assert r.status_code == 422 and error_code(r) == code, r.text
    path, _, query = url.partition("?")
    name = query.partition("=")[0]
    (param,) = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name]
    assert param["schema"].get("type") == "string" or "enum" in param["schema"] or param["schema"]["type"] == "integer"
