"""Search by kind: ``GET /api/v1/packages?kind=dataset`` and the website's kind filter, the
``kind`` in package and version documents, and migration 0009, which adds and backfills
``packages.kind`` (real SQLite and PostgreSQL, migrated with Alembic)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from hub import db
from tests.conftest import scratch_pg_database
from tests.helpers import LiveHub, error_code, publish

DATASET_TOML = """[package]
name = "{name}"
version = "{version}"
description = "{description}"
license = "CC0-1.0"
kind = "dataset"

[dataset]
task = "classification"
classes = ["cat", "dog"]
splits = {{ train = 1 }}
"""
COCO = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 1, "height": 1}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 2}],
                   "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}).encode()


def publish_dataset(client: httpx.Client, name: str, version: str = "1.0.0", description: str = "pets") -> None:
    text = DATASET_TOML.format(name=name, version=version, description=description)
    r = publish(client, name, version, manifest_text=text,
                files={"annotations/train.json": COCO, "images/train/a.png": b"\x89PNG not decoded by the hub"})
    assert r.status_code == 201, r.text


def names(found: dict[str, object]) -> list[str]:
    results = found["results"]
    assert isinstance(results, list)
    return [r["name"] for r in results]


def test_search_filters_by_kind_and_documents_carry_it(hub: LiveHub) -> None:
    client = hub.client(hub.create_user("alice"))
    assert publish(client, "alice/detector", description="finds pets").status_code == 201
    publish_dataset(client, "alice/pets", description="pets")
    anyone = hub.client()
    assert names(anyone.get("/api/v1/packages", params={"q": "pets", "sort": "name"}).json()) == [
        "alice/detector", "alice/pets"]
    datasets = anyone.get("/api/v1/packages", params={"kind": "dataset"}).json()
    assert names(datasets) == ["alice/pets"] and datasets["total"] == 1
    assert datasets["results"][0]["kind"] == "dataset"
    models = anyone.get("/api/v1/packages", params={"kind": "model"}).json()
    assert names(models) == ["alice/detector"] and models["results"][0]["kind"] == "model"
    # kind combines with the other filters: a dataset's task comes from its [dataset] table
    assert names(anyone.get("/api/v1/packages", params={"kind": "dataset", "task": "classification"}).json()) == [
        "alice/pets"]
    assert names(anyone.get("/api/v1/packages", params={"kind": "dataset", "task": "detection"}).json()) == []

    r = anyone.get("/api/v1/packages", params={"kind": "weights"})
    assert r.status_code == 422 and error_code(r) == "invalid_field"

    assert anyone.get("/api/v1/packages/alice/pets").json()["kind"] == "dataset"
    assert anyone.get("/api/v1/packages/alice/detector").json()["kind"] == "model"
    doc = anyone.get("/api/v1/packages/alice/pets/versions/1.0.0").json()
    assert doc["kind"] == "dataset"
    assert doc["dataset"] == {"task": "classification", "classes": ["cat", "dog"], "splits": {"train": 1},
                              "annotations": None}
    assert anyone.get("/api/v1/packages/alice/detector/versions/1.0.0").json()["dataset"] is None
    assert anyone.get("/api/v1/packages/alice/detector/versions/1.0.0").json()["kind"] == "model"


def test_kind_follows_the_latest_version(hub: LiveHub) -> None:
    client = hub.client(hub.create_user("alice"))
    assert publish(client, "alice/switch", "1.0.0").status_code == 201
    publish_dataset(client, "alice/switch", "2.0.0")
    anyone = hub.client()
    assert names(anyone.get("/api/v1/packages", params={"kind": "dataset"}).json()) == ["alice/switch"]
    r = client.post("/api/v1/packages/alice/switch/versions/2.0.0/yank", json={"reason": "wrong kind"})
    assert r.status_code == 200, r.text
    assert names(anyone.get("/api/v1/packages", params={"kind": "dataset"}).json()) == []
    assert names(anyone.get("/api/v1/packages", params={"kind": "model"}).json()) == ["alice/switch"]


def test_private_datasets_are_found_only_by_who_may_see_them(hub: LiveHub) -> None:
    alice = hub.client(hub.create_user("alice"))
    text = DATASET_TOML.format(name="alice/secret", version="1.0.0", description="secret pets")
    r = publish(alice, "alice/secret", manifest_text=text, private=True,
                files={"annotations/train.json": COCO, "images/train/a.png": b"\x89PNG"})
    assert r.status_code == 201, r.text
    assert names(hub.client().get("/api/v1/packages", params={"kind": "dataset"}).json()) == []
    assert names(alice.get("/api/v1/packages", params={"kind": "dataset"}).json()) == ["alice/secret"]
    page = hub.client().get("/search", params={"kind": "dataset"})
    assert page.status_code == 200 and "alice/secret" not in page.text


def test_the_website_search_filters_by_kind(hub: LiveHub) -> None:
    client = hub.client(hub.create_user("alice"))
    assert publish(client, "alice/detector", description="finds pets").status_code == 201
    publish_dataset(client, "alice/pets")
    anyone = hub.client()
    page = anyone.get("/search", params={"kind": "dataset"})
    assert page.status_code == 200
    assert 'href="/alice/pets"' in page.text and 'href="/alice/detector"' not in page.text
    assert re.search(r'<select id="f-kind" name="kind">', page.text)
    assert re.search(r'<option value="dataset"\s+selected>', page.text)
    page = anyone.get("/search", params={"kind": "model"})
    assert 'href="/alice/detector"' in page.text and 'href="/alice/pets"' not in page.text
    everything = anyone.get("/search", params={"kind": ""})
    assert 'href="/alice/detector"' in everything.text and 'href="/alice/pets"' in everything.text
    bad = anyone.get("/search", params={"kind": "<b>weights</b>"})
    assert bad.status_code == 400 and "<b>weights" not in bad.text and "kind must be one of" in bad.text
    # the model zoo counts models only: the dataset's task (classification) has none
    zoo = anyone.get("/zoo").text
    assert re.search(r'<a href="/zoo/classification">classification</a> <span class="meta">0</span>', zoo)
    assert re.search(r'<a href="/zoo/detection">detection</a> <span class="meta">1</span>', zoo)


# --- migration 0009 -----------------------------------------------------------------------------

T = "2026-01-01 00:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    with scratch_pg_database("cvflow_kind") as url:
        yield url


def _insert(conn: sa.Connection, table: str, **row: object) -> None:
    cols = ", ".join(row)
    conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + c for c in row)})"), row)


def _seed(conn: sa.Connection) -> None:
    _insert(conn, "namespaces", id=1, name="alice", kind="user", created_at=T)
    # (id, name, latest_version, [(version, sort_key, manifest)])
    packages = [
        (1, "model", "1.0.0", [("1.0.0", "1", {"kind": "model"})]),
        (2, "data", "1.0.0", [("1.0.0", "1", {"kind": "dataset", "dataset": {}})]),
        (3, "old", "1.0.0", [("1.0.0", "1", {"name": "alice/old"})]),  # from before kinds: a model
        # the latest release is a dataset, a newer pre-release is a model: latest_version decides
        (4, "pre", "1.0.0", [("1.0.0", "1", {"kind": "dataset"}), ("2.0.0-rc.1", "2", {"kind": "model"})]),
        (5, "yanked", None, [("1.0.0", "1", {"kind": "model"}), ("2.0.0", "2", {"kind": "dataset"})]),
        (6, "empty", None, []),
    ]
    version_id = 0
    for id_, name, latest, versions in packages:
        _insert(conn, "packages", id=id_, namespace_id=1, name=name, normalized_name=name, full_name=f"alice/{name}",
                private=False, description="", downloads=0, created_at=T, updated_at=T, latest_version=latest)
        for version, key, doc in versions:
            version_id += 1
            _insert(conn, "versions", id=version_id, package_id=id_, version=version, precedence=version,
                    sort_key=key, is_prerelease="-" in version, manifest=json.dumps(doc), manifest_toml="",
                    created_at=T, total_size=1, file_count=1, yanked=latest is None, downloads=0)


def test_migration_0009_backfills_kind_from_the_stored_manifests_and_goes_down(database: str) -> None:
    cfg = db.alembic_config(database)
    command.upgrade(cfg, "0008")
    engine = db.create_engine(database)
    try:
        with engine.begin() as conn:
            _seed(conn)
        command.upgrade(cfg, "0009")
        with engine.connect() as conn:
            kinds = dict(conn.execute(sa.text("SELECT name, kind FROM packages")).all())
        assert kinds == {"model": "model", "data": "dataset", "old": "model", "pre": "dataset",
                         "yanked": "dataset", "empty": "model"}
        with engine.begin() as conn:  # a row added after the migration gets the model's default
            _insert(conn, "packages", id=7, namespace_id=1, name="new", normalized_name="new", full_name="alice/new",
                    private=False, description="", downloads=0, created_at=T, updated_at=T, kind="model")
        command.downgrade(cfg, "0008")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("packages")}
            assert "kind" not in columns
            assert conn.execute(sa.text("SELECT count(*) FROM packages")).scalar() == 7
        command.upgrade(cfg, "head")
    finally:
        engine.dispose()
