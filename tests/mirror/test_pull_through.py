"""Pull-through: misses are fetched from the upstreams in order, verified, stored and served; the guard
against dependency confusion; a read-only hub."""

from __future__ import annotations

import json
import re

from tests.helpers import error_code, publish, sha256
from tests.mirror._helpers import feed, publish_ok, stored_blobs, version_doc

FILES = ("cvflow.toml", "solver.py", "weights.safetensors")


def _get(live, path, **kw):  # type: ignore[no-untyped-def]
    return live.client().get(path, **kw)


def test_a_miss_is_fetched_once_then_served_from_here_also_when_the_upstream_is_down(hub, spawn_hub):
    upstream = hub
    alice = upstream.user_client("alice")
    publish_ok(alice, "alice/base", "1.0.0")
    publish_ok(alice, "alice/base", "1.1.0")
    proxy = spawn_hub(upstreams=upstream.url)

    doc = _get(proxy, "/api/v1/packages/alice/base").json()
    assert [v["version"] for v in doc["versions"]] == ["1.1.0", "1.0.0"]
    assert doc["origin"] == {"upstream": upstream.url, "via": "pull-through"}
    assert version_doc(proxy, "alice/base", "1.1.0")["files"] == version_doc(upstream, "alice/base", "1.1.0")["files"]
    index = proxy.client().post("/api/v1/index", json={"packages": ["alice/base", "nobody/none"]}).json()
    assert [v["version"] for v in index["packages"]["alice/base"]["versions"]] == ["1.1.0", "1.0.0"]
    assert index["missing"] == ["nobody/none"]
    for path in FILES:
        r = _get(proxy, f"/api/v1/packages/alice/base/versions/1.1.0/files/{path}")
        assert r.status_code == 200 and r.headers["etag"] == f'"{sha256(r.content)}"', path
    # With all its blobs here, the version is in this hub's catalogue and on its feed.
    assert {f["sha256"] for f in version_doc(upstream, "alice/base", "1.1.0")["files"]} <= stored_blobs(proxy)
    assert [(e["action"], e["package"], e["version"]) for e in feed(proxy)] == [("publish", "alice/base", "1.1.0")]
    assert version_doc(proxy, "alice/base", "1.1.0")["origin"]["via"] == "pull-through"
    ranged = _get(proxy, "/api/v1/packages/alice/base/versions/1.1.0/files/weights.safetensors",
                  headers={"range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.content) == 10

    # No upstream answers: a miss is a clear 503 (serving while upstreams are down: the next test).
    proxy_only = spawn_hub(upstreams="http://127.0.0.1:9")  # nothing listens there
    r = _get(proxy_only, "/api/v1/packages/alice/base")
    assert r.status_code == 503 and error_code(r) == "upstream_unavailable"
    r = proxy_only.client().post("/api/v1/index", json={"packages": ["alice/base"]})
    assert r.status_code == 503 and error_code(r) == "upstream_unavailable"


def test_upstreams_are_asked_in_order_and_the_cache_outlives_them(spawn_hub):
    first, second = spawn_hub(), spawn_hub()
    publish_ok(first.user_client("alice"), "alice/det", "1.0.0", description="from the first")
    publish_ok(second.user_client("alice"), "alice/det", "1.0.0", description="from the second")
    publish_ok(second.user_client("bob"), "bob/only-second", "2.0.0")
    proxy = spawn_hub(upstreams=f"{first.url},{second.url}", upstream_metadata_ttl=0)

    assert _get(proxy, "/api/v1/packages/alice/det").json()["description"] == "from the first"
    assert _get(proxy, "/api/v1/packages/bob/only-second").json()["origin"]["upstream"] == second.url
    for path in FILES:
        assert _get(proxy, f"/api/v1/packages/bob/only-second/versions/2.0.0/files/{path}").status_code == 200
    _get(proxy, "/api/v1/packages/alice/det/versions/1.0.0")  # the document only: no blob yet
    assert "alice/det" in proxy.client().post("/api/v1/index", json={"packages": ["alice/det"]}).json()["packages"]

    # Both upstreams stop. Metadata seen before is served however old; files fetched are served.
    for live in (first, second):
        live.close_clients()
    from tests.mirror.conftest import stop_hub

    stop_hub(first)
    stop_hub(second)
    assert _get(proxy, "/api/v1/packages/alice/det").json()["description"] == "from the first"
    assert version_doc(proxy, "bob/only-second", "2.0.0")["version"] == "2.0.0"
    for path in FILES:
        assert _get(proxy, f"/api/v1/packages/bob/only-second/versions/2.0.0/files/{path}").status_code == 200
    r = _get(proxy, "/api/v1/packages/alice/det/versions/1.0.0/files/weights.safetensors")
    assert r.status_code == 503 and error_code(r) == "upstream_unavailable"
    # The index: alice/det as last seen upstream, bob/only-second from the version copied here.
    index = proxy.client().post("/api/v1/index", json={"packages": ["alice/det", "bob/only-second"]}).json()
    assert set(index["packages"]) == {"alice/det", "bob/only-second"}
    r = proxy.client().post("/api/v1/index", json={"packages": ["carol/never-seen"]})
    assert r.status_code == 503 and error_code(r) == "upstream_unavailable"


def test_a_lying_upstream_is_refused_and_nothing_of_it_is_stored(spawn_hub):
    upstream = spawn_hub()
    publish_ok(upstream.user_client("alice"), "alice/det", "1.0.0")
    files = version_doc(upstream, "alice/det", "1.0.0")["files"]
    weights = next(f for f in files if f["path"] == "weights.safetensors")
    path = upstream.context.store.local_path(weights["sha256"])
    path.chmod(0o644)
    path.write_bytes(b"Y" * weights["size"])
    proxy = spawn_hub(upstreams=upstream.url)

    r = _get(proxy, "/api/v1/packages/alice/det/versions/1.0.0/files/weights.safetensors")
    assert r.status_code == 502 and error_code(r) == "upstream_invalid"
    assert weights["sha256"] not in stored_blobs(proxy)
    assert feed(proxy) == []  # never copied into the catalogue


def test_local_names_an_upstream_has_are_refused_unless_shadowing_is_allowed(spawn_hub):
    upstream = spawn_hub()
    publish_ok(upstream.user_client("alice"), "alice/det", "1.0.0")
    proxy = spawn_hub(upstreams=upstream.url)
    alice = proxy.user_client("alice")

    r = publish(alice, "alice/det", "9.9.9")
    assert r.status_code == 409 and error_code(r) == "name_shadows_upstream"
    assert publish(alice, "alice/internal", "1.0.0").status_code == 201
    # Published here first, it stays here; later upstream releases of the name do not replace it.
    publish_ok(upstream.user_client("bob"), "bob/x", "1.0.0")
    assert _get(proxy, "/api/v1/packages/alice/internal").json().get("origin") is None

    lenient = spawn_hub(upstreams=upstream.url, allow_shadowing=True)
    assert publish(lenient.user_client("alice"), "alice/det", "9.9.9").status_code == 201
    assert _get(lenient, "/api/v1/packages/alice/det").json()["latest_version"] == "9.9.9"

    blind = spawn_hub(upstreams="http://127.0.0.1:9")  # cannot tell: refuse
    r = publish(blind.user_client("alice"), "alice/new", "1.0.0")
    assert r.status_code == 503 and error_code(r) == "upstream_unavailable"


def test_a_read_only_hub_serves_and_refuses_writes(spawn_hub):
    live = spawn_hub(read_only=True)
    token = live.create_user("alice")
    client = live.client(token)
    r = client.post("/api/v1/uploads", json={"size": 3})
    assert r.status_code == 403 and error_code(r) == "read_only"
    r = client.post("/api/v1/packages/alice/det/versions", json={"manifest": "", "files": []})
    assert r.status_code == 403 and error_code(r) == "read_only"
    assert client.get("/api/v1/whoami").status_code == 200
    assert client.post("/api/v1/index", json={"packages": ["alice/det"]}).status_code == 200

    # The OpenAPI document lists read_only on exactly the writes the middleware refuses.
    spec = client.get("/api/v1/openapi.json").json()
    documented = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            concrete = re.sub(r"{[^}]+}", "x", path).replace("/packages/x/x", "/packages/alice/det")
            says = "read_only" in json.dumps(op.get("responses", {}).get("403", {}))
            r = client.request(method.upper(), concrete, json={})
            refused = r.status_code == 403 and error_code(r) == "read_only"
            assert refused == says, (method, path, r.status_code, r.text[:200])
            documented += says
    assert documented >= 10
