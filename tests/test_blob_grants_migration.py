"""Migration 0005 grants every stored blob so that nothing already published changes behaviour.

A blob referenced by versions is granted to the publisher of each, the owners of each package
(the user of a user namespace, the owners of an organisation, package owners) and, for copies
from another hub, to the path that copied it; an unreferenced blob is granted to nobody.
Real SQLite and PostgreSQL databases, migrated with Alembic.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command

from hub import db
from tests.conftest import scratch_pg_database

T = "2026-01-01 00:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    with scratch_pg_database("cvflow_grants") as url:
        yield url


def _insert(conn: sa.Connection, table: str, **row: object) -> None:
    cols = ", ".join(row)
    conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + c for c in row)})"), row)


def _seed(conn: sa.Connection) -> None:
    for id_, name, kind in [(1, "alice", "user"), (2, "bob", "user"), (3, "carol", "user"), (4, "acme", "org"),
                            (5, "up", "mirror")]:
        _insert(conn, "namespaces", id=id_, name=name, kind=kind, created_at=T)
    for id_, name in [(1, "alice"), (2, "bob"), (3, "carol")]:
        _insert(conn, "users", id=id_, namespace_id=id_, name=name, is_admin=False, is_active=True, created_at=T)
    _insert(conn, "organisations", id=1, namespace_id=4, name="acme", created_at=T)
    _insert(conn, "org_members", org_id=1, user_id=2, role="owner", created_at=T)
    _insert(conn, "org_members", org_id=1, user_id=3, role="member", created_at=T)
    for id_, ns, name, private in [(1, 1, "alice/a", True), (2, 4, "acme/b", True), (3, 5, "up/c", False)]:
        _insert(conn, "packages", id=id_, namespace_id=ns, name=name.split("/")[1], full_name=name, private=private,
                description="", downloads=0, created_at=T, updated_at=T)
    _insert(conn, "package_roles", package_id=2, user_id=1, role="owner")
    _insert(conn, "package_origins", package_id=3, upstream="https://up.example", via="mirror", synced_at=T)
    for id_, package, by in [(1, 1, 1), (2, 2, 3), (3, 3, None)]:
        _insert(conn, "versions", id=id_, package_id=package, version="1.0.0", precedence="1.0.0", sort_key="1",
                is_prerelease=False, manifest="{}", manifest_toml="", published_by=by, created_at=T, total_size=1,
                file_count=1, yanked=False, downloads=0)
    for digest in "abcd":
        _insert(conn, "blobs", sha256=digest * 64, size=1, created_at=T, touched_at=T)
    for id_, version, digest in [(1, 1, "a"), (2, 2, "b"), (3, 3, "c"), (4, 2, "a")]:
        _insert(conn, "files", id=id_, version_id=version, path=f"f{id_}", size=1, sha256=digest * 64)


def test_existing_blobs_are_granted_to_the_owners_and_publishers_of_their_versions(database):
    cfg = db.alembic_config(database)
    command.upgrade(cfg, "0004")
    engine = db.create_engine(database)
    try:
        with engine.begin() as conn:
            _seed(conn)
        command.upgrade(cfg, "0005")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT sha256, holder FROM blob_grants")).all()
    finally:
        engine.dispose()
    grants: dict[str, set[str]] = {}
    for digest, holder in rows:
        grants.setdefault(digest[0], set()).add(holder)
    assert grants == {
        # alice/a: alice owns the namespace and published it; acme/b has it too (below)
        "a": {"user:1", "user:2", "user:3"},
        # acme/b: bob owns the organisation, alice owns the package, carol (a member) published it
        "b": {"user:1", "user:2", "user:3"},
        # up/c: a mirror copy, no owner here
        "c": {"hub:mirror"},
        # "d": referenced by nothing, granted to nobody
    }
    command.downgrade(cfg, "0004")
    command.upgrade(cfg, "head")
