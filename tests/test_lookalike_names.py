"""Look-alike package names (issue 10, class 10): names that differ only in ``-``, ``_``, ``.``
(or case) are one name, as PEP 503 normalises them.

A namespace holds one package per normalised name, on every path that creates packages
(publish, the git indexer, mirror sync, pull-through, bundle import), and reading any spelling
finds that package. Real hubs on loopback, on both backends; real git for the indexer.
"""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from sqlmodel import select

from cvflow.api import HubClient
from cvflow.cache import VERSION_FILE, Cache
from cvflow.errors import ResolutionError
from cvflow.names import normalize_name, package_key
from cvflow.resolve import HubSource, resolve
from cvflow.versions import Version
from hub import db
from hub.db import session_scope
from hub.models import Package
from tests.conftest import scratch_pg_database
from tests.helpers import error_code, publish
from tests.indexer._helpers import SOLVER as INDEXED_SOLVER
from tests.indexer._helpers import manifest as indexed_manifest
from tests.indexer._helpers import register, repository, run_jobs
from tests.indexer.conftest import _fresh, _indexer_hubs, git_daemon, make_repo, served_root  # noqa: F401
from tests.mirror._helpers import publish_ok, sync
from tests.mirror.conftest import hub_cli, spawn_hub  # noqa: F401

# Spellings of "alice/a-b" that the name rules accept, and ones they refuse but reads still map.
VALID_VARIANTS = ("a_b", "a.b")
READ_ONLY_VARIANTS = ("A-B", "a--b", "a-_b", "A_.b")


def test_normalisation_is_pep_503s():
    for name in ("a-b", "a_b", "a.b", "A-B", "a--b", "a-_b", "a_.-b", "A.B"):
        assert normalize_name(name) == "a-b", name
    assert normalize_name("ab") == "ab" and normalize_name("a-b-c") == "a-b-c"
    assert package_key("Alice/A_B") == "alice/a-b"
    assert normalize_name("a-b") != normalize_name("ab")  # separators are folded, not dropped


@pytest.mark.parametrize("canonical", ["a-b", "a_b"])
def test_publishing_a_look_alike_is_refused_and_names_the_package(hub, canonical):
    alice = hub.user_client("alice")
    assert publish(alice, f"alice/{canonical}", "1.0.0").status_code == 201
    for variant in ("a-b", "a_b", "a.b"):
        if variant == canonical:
            continue
        r = publish(alice, f"alice/{variant}", "1.0.0")
        assert r.status_code == 409 and error_code(r) == "similar_name_exists", (variant, r.text)
        details = r.json()["error"]["details"]
        assert details == {"package": f"alice/{variant}", "existing": f"alice/{canonical}"}
        assert f"alice/{canonical}" in r.json()["error"]["message"]
    for variant in READ_ONLY_VARIANTS:  # never creatable: the name rules refuse them first
        r = publish(alice, f"alice/{variant}", "1.0.0")
        assert r.status_code == 422 and error_code(r) == "invalid_package_name", (variant, r.text)
    # The canonical name still publishes; another namespace may use any spelling.
    assert publish(alice, f"alice/{canonical}", "1.1.0").status_code == 201
    assert publish(hub.user_client("bob"), "bob/a.b", "1.0.0").status_code == 201
    with session_scope(hub.context.engine) as session:
        rows = sorted((p.full_name, p.normalized_name) for p in session.exec(select(Package)))
    assert rows == [(f"alice/{canonical}", "a-b"), ("bob/a.b", "a-b")]


def test_every_spelling_reads_the_canonical_package(hub):
    alice = hub.user_client("alice")
    assert publish(alice, "alice/a-b", "1.0.0", files={"solver.py": b"x = 1\n"}).status_code == 201
    anonymous = hub.client()
    canonical = anonymous.get("/api/v1/packages/alice/a-b").json()
    for variant in VALID_VARIANTS + READ_ONLY_VARIANTS:
        base = f"/api/v1/packages/alice/{variant}"
        doc = anonymous.get(base)
        assert doc.status_code == 200 and doc.json() == canonical, variant
        version = anonymous.get(f"{base}/versions/1.0.0")
        assert version.status_code == 200 and version.json()["package"] == "alice/a-b", variant
        assert version.json()["files"][0]["url"].startswith("/api/v1/packages/alice/a-b/"), variant
        file = anonymous.get(f"{base}/versions/1.0.0/files/solver.py")
        assert file.status_code == 200 and file.content == b"x = 1\n", variant
        assert anonymous.get(f"{base}/downloads").json()["package"] == "alice/a-b", variant
    asked = ["alice/a-b", *(f"alice/{v}" for v in VALID_VARIANTS + READ_ONLY_VARIANTS), "alice/ab", "alice/a-b-c"]
    index = anonymous.post("/api/v1/index", json={"packages": asked}).json()
    assert index["missing"] == ["alice/a-b-c", "alice/ab"]
    for name in asked[:-2]:
        entry = index["packages"][name]
        assert entry["name"] == "alice/a-b" and [v["version"] for v in entry["versions"]] == ["1.0.0"], name
    # Writes through a look-alike reach the package, and the cached canonical document follows.
    assert alice.post("/api/v1/packages/alice/a_b/versions/1.0.0/yank", json={"reason": "bad"}).status_code == 200
    assert anonymous.get("/api/v1/packages/alice/a-b").json()["versions"][0]["yanked"] is True
    assert anonymous.get("/api/v1/packages/alice/a.b").json()["versions"][0]["yanked"] is True


def test_the_website_redirects_a_look_alike_to_the_canonical_page(hub):
    assert publish(hub.user_client("alice"), "alice/a_b", "1.0.0").status_code == 201
    browser = hub.client(follow_redirects=False)
    for variant in ("a-b", "a.b", "A-B", "a--b"):
        r = browser.get(f"/alice/{variant}")
        assert r.status_code == 301 and r.headers["location"] == "/alice/a_b", variant
        r = browser.get(f"/alice/{variant}/v/1.0.0", params={"tab": "files"})
        assert r.status_code == 301 and r.headers["location"] == "/alice/a_b/v/1.0.0?tab=files", variant
    assert browser.get("/alice/a_b").status_code == 200
    assert browser.get("/alice/ab").status_code == 404
    # A dependant that spells the name another way is listed on the page as a dependant.
    assert publish(hub.user_client("bob"), "bob/user", "1.0.0", dependencies={"alice/a.b": "^1"}).status_code == 201
    assert publish(hub.user_client("carol"), "carol/other", "1.0.0", dependencies={"alice/ab": "^1"}).status_code == 201
    page = browser.get("/alice/a_b").text
    assert "bob/user" in page and "carol/other" not in page


def test_a_private_package_s_look_alikes_are_not_found_by_others(hub):
    assert publish(hub.user_client("alice"), "alice/a-b", "1.0.0", private=True).status_code == 201
    bob = hub.user_client("bob")
    for variant in ("a-b", "a_b", "A.B"):
        r = bob.get(f"/api/v1/packages/alice/{variant}")
        assert r.status_code == 404 and error_code(r) == "package_not_found", variant
    assert bob.post("/api/v1/index", json={"packages": ["alice/a_b"]}).json() == {"packages": {},
                                                                                  "missing": ["alice/a_b"]}
    r = bob.get("/alice/a_b", follow_redirects=False)
    assert r.status_code == 404
    # Bob may not create in alice's namespace at all, so the refusal tells him nothing.
    r = publish(bob, "alice/a_b", "1.0.0")
    assert r.status_code == 403 and error_code(r) == "forbidden"


def test_racing_publishers_of_two_spellings_create_one_package(hub):
    alice = hub.user_client("alice")
    spellings = ["r-x", "r_x", "r.x"] * 2
    results: list[int] = [0] * len(spellings)
    start = threading.Barrier(len(spellings))

    def go(i: int) -> None:
        client = hub.client(alice.headers["authorization"].split()[1])
        start.wait()
        results[i] = publish(client, f"alice/{spellings[i]}", f"1.0.{i}").status_code

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(spellings))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with session_scope(hub.context.engine) as session:
        rows = session.exec(select(Package).where(Package.normalized_name == "r-x")).all()
    assert len(rows) == 1, rows
    winner = rows[0].name
    assert all(code == (201 if spellings[i] == winner else 409) for i, code in enumerate(results)), results


# --- every other path that creates packages -----------------------------------------------------


def test_the_indexer_refuses_a_repository_whose_package_is_a_look_alike(_indexer_hubs, make_repo,  # noqa: F811
                                                                         git_daemon):  # noqa: F811
    hub = _fresh(_indexer_hubs("sqlite-file" if "sqlite-file" in _backends() else _backends()[0]))
    alice = hub.user_client("alice")
    assert publish(alice, "alice/a-b", "1.0.0").status_code == 201
    repo, name = make_repo()
    repo.write({"cvflow.toml": indexed_manifest("alice/a_b", "2.0.0"), "solver.py": INDEXED_SOLVER})
    repo.commit("look-alike")
    repo.tag("v2.0.0")
    doc = register(alice, git_daemon.url(name))
    run_jobs(hub)
    doc = repository(alice, doc["id"])
    assert [(e["tag"], e["code"]) for e in doc["last_result"]["errors"]] == [("v2.0.0", "similar_name_exists")]
    assert "alice/a-b" in doc["last_result"]["errors"][0]["message"]
    with session_scope(hub.context.engine) as session:
        assert session.exec(select(Package.full_name)).all() == ["alice/a-b"]
    hub.close_clients()


def _backends() -> list[str]:
    from tests.conftest import BACKENDS

    return list(BACKENDS)


def test_mirror_sync_refuses_a_look_alike_of_a_local_package(hub, spawn_hub):  # noqa: F811
    upstream, mirror = spawn_hub(), hub
    publish_ok(upstream.user_client("alice"), "alice/a_b", "1.0.0")
    publish_ok(upstream.user_client("bob"), "bob/other", "1.0.0")
    publish_ok(mirror.user_client("alice"), "alice/a-b", "9.0.0")
    report = sync(mirror, upstream, ok=False)
    assert [(f["package"], f["code"]) for f in report["failures"]] == [("alice/a_b", "similar_name_exists")]
    assert report["versions"] == ["bob/other@1.0.0"]
    doc = mirror.client().get("/api/v1/packages/alice/a_b").json()
    assert doc["name"] == "alice/a-b" and [v["version"] for v in doc["versions"]] == ["9.0.0"]


def test_pull_through_serves_the_local_package_for_a_look_alike(hub, spawn_hub):  # noqa: F811
    upstream = spawn_hub()
    # On the backend under test; ``hub`` has just emptied its database, which the proxy shares.
    proxy = spawn_hub(hub.backend, upstreams=upstream.url)
    publish_ok(proxy.user_client("alice"), "alice/a-b", "9.0.0")
    publish_ok(upstream.user_client("alice"), "alice/a_b", "1.0.0")
    anonymous = proxy.client()
    doc = anonymous.get("/api/v1/packages/alice/a_b").json()
    assert doc["name"] == "alice/a-b" and [v["version"] for v in doc["versions"]] == ["9.0.0"]
    entry = anonymous.post("/api/v1/index", json={"packages": ["alice/a_b"]}).json()["packages"]["alice/a_b"]
    assert entry["name"] == "alice/a-b" and [v["version"] for v in entry["versions"]] == ["9.0.0"]
    r = anonymous.get("/api/v1/packages/alice/a_b/versions/1.0.0/files/cvflow.toml")
    assert r.status_code == 404 and error_code(r) == "version_not_found"
    with session_scope(proxy.context.engine) as session:
        assert session.exec(select(Package.full_name)).all() == ["alice/a-b"]


def test_bundle_import_refuses_a_look_alike_and_keeps_nothing_of_it(hub, spawn_hub, tmp_path):  # noqa: F811
    source, target = spawn_hub(), hub
    publish_ok(source.user_client("alice"), "alice/a.b", "1.0.0")
    publish_ok(target.user_client("alice"), "alice/a-b", "9.0.0")
    out = tmp_path / "models.cvflow"
    assert hub_cli(source, "export", "--out", str(out), "--json").exit_code == 0
    result = hub_cli(target, "import", str(out))
    assert result.exit_code == 1 and "similar_name_exists" in result.output and "alice/a-b" in result.output
    with session_scope(target.context.engine) as session:
        assert session.exec(select(Package.full_name)).all() == ["alice/a-b"]


# --- migration 0006 on a hub that already has look-alikes ---------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    if not any(b.startswith("postgres") for b in _backends()):
        pytest.skip("PostgreSQL is not among CVFLOW_TEST_BACKENDS")
    with scratch_pg_database("cvflow_lookalike") as url:
        yield url


def test_migration_0006_backfills_and_keeps_the_oldest_look_alike_canonical(database_url):
    db.migrate(database_url, "0005")
    engine = sa.create_engine(database_url)
    rows = [  # id, namespace, name, created (the later a_b and a.b collide with the older a-b)
        (1, 1, "a_b", "2026-01-03"), (2, 1, "a-b", "2026-01-01"), (3, 1, "a.b", "2026-01-02"),
        (4, 1, "ab", "2026-01-01"), (5, 2, "a_b", "2026-01-05"),
    ]
    with engine.begin() as conn:
        for ns_id, ns in ((1, "alice"), (2, "bob")):
            conn.execute(sa.text("INSERT INTO namespaces (id, name, kind, created_at) VALUES (:i, :n, 'user', :t)"),
                         {"i": ns_id, "n": ns, "t": "2026-01-01 00:00:00"})
        for id_, ns_id, name, created in rows:
            ns = "alice" if ns_id == 1 else "bob"
            conn.execute(sa.text(
                "INSERT INTO packages (id, namespace_id, name, full_name, private, description, downloads, "
                "created_at, updated_at) VALUES (:i, :ns, :n, :f, false, '', 0, :t, :t)"),
                {"i": id_, "ns": ns_id, "n": name, "f": f"{ns}/{name}", "t": f"{created} 00:00:00"})
    engine.dispose()
    db.migrate(database_url)

    engine = db.create_engine(database_url)
    try:
        with engine.connect() as conn:
            keys = dict(conn.execute(sa.text("SELECT full_name, normalized_name FROM packages")).all())
        assert keys == {"alice/a-b": "a-b", "alice/a.b": "a-b~3", "alice/a_b": "a-b~1", "alice/ab": "ab",
                        "bob/a_b": "a-b"}
        with session_scope(engine) as session:
            from hub.services import packages

            # Each old package keeps its exact name; any other spelling finds the oldest.
            for asked, found in (("a_b", "alice/a_b"), ("a.b", "alice/a.b"), ("a--b", "alice/a-b"),
                                 ("A-B", "alice/a-b")):
                package = packages.find_package(session, "alice", asked)
                assert package is not None and package.full_name == found, asked
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the index holds from now on
            conn.execute(sa.text(
                "INSERT INTO packages (namespace_id, name, normalized_name, full_name, private, description, "
                "downloads, created_at, updated_at) VALUES (2, 'a.b', 'a-b', 'bob/a.b', false, '', 0, "
                "'2026-01-06', '2026-01-06')"))
    finally:
        engine.dispose()


# --- the client: its resolver and cache take every spelling for one package ----------------------


def test_the_resolver_picks_one_version_of_a_package_however_dependencies_spell_it(hub):
    alice = hub.user_client("alice")
    for v in ("1.0.0", "1.1.0"):
        assert publish(alice, "alice/a-b", v).status_code == 201
    assert publish(alice, "alice/lib", "1.0.0", dependencies={"alice/a_b": ">=1.1.0"}).status_code == 201
    assert publish(alice, "alice/app", "1.0.0", dependencies={"alice/a.b": "*", "alice/lib": "*"}).status_code == 201
    with HubClient(hub.url) as client:
        got = resolve({"alice/app": "*"}, HubSource(client))
        assert {package_key(n) for n in got} == {"alice/app", "alice/lib", "alice/a-b"} and len(got) == 3
        assert got["alice/a.b"] == Version.parse("1.1.0")
        # A pin under one spelling and a floor under another are one conflict, not two packages.
        with pytest.raises(ResolutionError):
            resolve({"alice/a-b": "=1.0.0", "alice/lib": "*"}, HubSource(client))


def test_the_cache_keeps_one_folder_per_package_whatever_the_spelling(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.save_metadata("alice/a_b", {"name": "alice/a_b", "versions": []})
    assert cache.load_metadata("alice/a-b") == {"name": "alice/a_b", "versions": []}
    assert cache.load_metadata("alice/a.b") == {"name": "alice/a_b", "versions": []}
    assert [p.name for p in (tmp_path / "cache" / "index" / "alice").iterdir()] == ["a_b.json"]
    snapshot = cache.snapshot_path("alice/a_b", "1.0.0")
    snapshot.mkdir(parents=True)
    (snapshot / VERSION_FILE).write_text(json.dumps({"package": "alice/a_b", "version": "1.0.0", "files": []}))
    assert cache.snapshot_path("alice/a-b", "1.0.0") == snapshot
    assert cache.snapshot_path("alice/ab", "1.0.0") != snapshot
    cache.prune([("alice/a-b", "1.0.0")])  # kept under another spelling: it stays
    assert snapshot.is_dir()
    cache.prune([])
    assert not snapshot.exists()
