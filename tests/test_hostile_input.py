"""Hostile structure: JSON and TOML nested 100,000 deep, at every place the hub reads them.

Every endpoint that declares a JSON body (taken from the registry the app is built from, so a
new one joins by being registered) answers a body nested 100,000 deep with ``400 too_deep``
over a real socket, before it is parsed: with a token that may call it, and without one (then
an endpoint that needs a token says ``401 unauthenticated`` and never reads the body). The
server answers normally afterwards. A manifest nested deep is refused at publish with
``422 invalid_manifest`` and a ``too_deep`` problem, and by ``cvflow validate``. The client
refuses a hub answer nested past any hub document, and a bundle index nested deep.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cvflow.api import HubClient
from cvflow.bundle import BundleError, BundleManifest
from cvflow.errors import HubError, HubUnavailableError, ManifestError
from cvflow.manifest import MANIFEST_FILENAME, load_package_dir
from hub import api
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.helpers import PASSWORD, LiveHub, error_code, manifest, publish, upload

DEEP = 100_000

#: Bodies nested 100,000 deep: well formed, cut short, and deep inside an object.
BODIES = {
    "arrays": b"[" * DEEP + b"]" * DEEP,
    "objects-unterminated": b'{"a":' * DEEP,
    "inside-an-object": b'{"packages": ' + b"[" * DEEP + b"]" * DEEP + b"}",
}

#: TOML nested 100,000 deep (about 200 KB, under the manifest size limit), one per construct.
TOML_TAILS = {
    "arrays": "\n[extra]\nx = " + "[" * DEEP + "]" * DEEP + "\n",
    "dotted-key": "\n[extra]\n" + "a." * (DEEP - 1) + "a = 1\n",
    "table-header": "\n[" + "a." * (DEEP - 1) + "a]\n",
    "array-of-tables": "\n[[" + "a." * (DEEP - 1) + "a]]\n",
    "inline-tables": "\n[extra]\nx = " + "{a=" * 60_000 + "1" + "}" * 60_000 + "\n",
}


def json_endpoints() -> list[api.Endpoint]:
    return [e for e in api.endpoints()
            if getattr(e, "body", None) is not None
            or (e.request is not None and e.request_type == "application/json")]


def test_the_registry_declares_the_json_bodies_we_know_of() -> None:
    """The loop below cannot pass by finding nothing."""
    declared = {(e.method, e.path) for e in json_endpoints()}
    assert {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/index"), ("POST", "/api/v1/tokens"),
            ("POST", "/api/v1/packages/{namespace}/{name}/versions")} <= declared
    assert len(declared) >= 10


class World:
    """alice (a hub administrator) owns alice/pkg 1.0.0 and the organisation acme; bob exists;
    alice has an open upload session."""

    def __init__(self, hub: LiveHub) -> None:
        self.token = hub.create_user("alice", admin=True, scopes="read publish admin")
        hub.create_user("bob")
        self.owner = hub.client(self.token)
        r = publish(self.owner, "alice/pkg", "1.0.0")
        assert r.status_code == 201, r.text
        r = self.owner.post("/api/v1/orgs", json={"name": "acme"})
        assert r.status_code == 201, r.text
        created = self.owner.post("/api/v1/uploads", json={"size": 4})
        assert created.status_code == 201, created.text
        self.params = {"namespace": "alice", "name": "pkg", "version": "1.0.0", "org": "acme", "user": "bob",
                       "upload_id": created.json()["location"].rstrip("/").rsplit("/", 1)[1], "item_id": "1", "repository_id": "1",
                       "job_id": "1"}

    def url(self, path: str) -> str:
        for key, value in self.params.items():
            for convertor in ("", ":int", ":id", ":path"):
                path = path.replace("{" + key + convertor + "}", str(value))
        assert "{" not in path, path
        return path


@pytest.fixture
def world(hub: LiveHub) -> World:
    return World(hub)


def _still_answers(hub: LiveHub) -> None:
    with httpx.Client(base_url=hub.url, timeout=30) as fresh:
        assert fresh.get("/healthz").status_code == 200
        r = fresh.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("shape", sorted(BODIES))
def test_every_json_endpoint_refuses_a_body_nested_100000_deep(hub, world, shape):
    body = BODIES[shape]
    anonymous = hub.client()
    checked = []
    for endpoint in json_endpoints():
        url = world.url(endpoint.path)
        headers = {"content-type": "application/json"}
        # With a token that may call it: the body is read, and refused before it is parsed.
        r = world.owner.request(endpoint.method, url, content=body, headers=headers)
        assert (r.status_code, error_code(r)) == (400, "too_deep"), (endpoint.method, endpoint.path, r.text[:300])
        assert "64 levels" in r.json()["error"]["message"]
        # Without a token: read and refused the same way, unless a token is needed first.
        r = anonymous.request(endpoint.method, url, content=body, headers=headers)
        expected = (401, "unauthenticated") if endpoint.auth == "required" else (400, "too_deep")
        assert (r.status_code, error_code(r)) == expected, (endpoint.method, endpoint.path, r.text[:300])
        checked.append(endpoint.path)
    assert "/api/v1/auth/login" in checked and "/api/v1/index" in checked
    _still_answers(hub)


def test_too_deep_is_documented_on_every_json_endpoint(hub):
    doc = httpx.get(f"{hub.url}/api/v1/openapi.json", timeout=30).json()
    for endpoint in json_endpoints():
        operation = doc["paths"][endpoint.path.replace(":int", "").replace(":id", "").replace(":path", "")][endpoint.method.lower()]
        assert "too_deep" in str(operation), (endpoint.method, endpoint.path)


def test_a_body_within_the_bound_is_read_as_before(hub, world):
    """The bound is on depth, not on validity: a deep-ish (but allowed) body gets the usual answer."""
    nested = b'{"packages": ["alice/pkg"], "extra": ' + b"[" * 60 + b"]" * 60 + b"}"
    r = world.owner.post("/api/v1/index", content=nested, headers={"content-type": "application/json"})
    assert r.status_code in (200, 422), r.text  # an unknown field may be refused, but never as too_deep
    assert r.status_code == 200 or error_code(r) != "too_deep"
    r = world.owner.post("/api/v1/index", content=b'{"packages": ["alice/pkg"]}',
                         headers={"content-type": "application/json"})
    assert r.status_code == 200 and "alice/pkg" in r.text


@pytest.mark.parametrize("shape", sorted(TOML_TAILS))
def test_publishing_a_manifest_nested_deep_is_refused(hub, world, shape):
    text = manifest("alice/pkg", "2.0.0") + TOML_TAILS[shape]
    assert len(text.encode()) < hub.context.settings.max_manifest_size
    data = text.encode()
    files = [{"path": MANIFEST_FILENAME, "size": len(data), "sha256": upload(world.owner, data)}]
    r = world.owner.post("/api/v1/packages/alice/pkg/versions", json={"manifest": text, "files": files})
    assert (r.status_code, error_code(r)) == (422, "invalid_manifest"), r.text[:500]
    problems = r.json()["error"]["details"]["problems"]
    assert [p["code"] for p in problems] == ["too_deep"], problems
    _still_answers(hub)


@pytest.mark.parametrize("shape", sorted(TOML_TAILS))
def test_cvflow_validate_and_the_loader_refuse_a_deep_manifest(tmp_path: Path, shape: str) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / MANIFEST_FILENAME).write_text(manifest("alice/pkg", "1.0.0") + TOML_TAILS[shape])
    (package / "solver.py").write_text("class Detector: pass\n")
    with pytest.raises(ManifestError) as caught:
        load_package_dir(package)
    assert [p.code for p in caught.value.problems] == ["too_deep"]
    result = run_cli(cli_env(tmp_path / "home", None), "validate", str(package))
    assert result.exit_code == 1
    assert "nested too deep" in result.stderr and "Traceback" not in result.output


class _DeepHub(http.server.BaseHTTPRequestHandler):
    """A "hub" that answers every request with JSON nested 100,000 deep (200 or 400)."""

    def do_GET(self) -> None:
        status = 400 if "error" in self.path else 200
        body = b"[" * DEEP + b"]" * DEEP if status == 200 else b'{"error": ' + b"[" * DEEP + b"]" * DEEP + b"}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def deep_hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DeepHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_client_refuses_a_hub_answer_nested_deep(deep_hub: str) -> None:
    with HubClient(deep_hub) as client:
        with pytest.raises(HubUnavailableError, match="did not answer like a CVFlow hub"):
            client.whoami()
        with pytest.raises(HubError) as caught:  # an error answer nested deep is still an error, not a crash
            client.request("GET", "/error")
        assert caught.value.status == 400


def test_a_bundle_index_nested_deep_is_refused() -> None:
    with pytest.raises(BundleError, match="not JSON"):
        BundleManifest.from_json(b'{"format": ' + b"[" * DEEP + b"]" * DEEP + b"}")
