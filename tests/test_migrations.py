"""The Alembic migrations and the SQLModel tables describe the same schema, on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import hub.models  # noqa: F401  (registers the tables)
from hub import db
from hub.app import create_app
from hub.settings import Settings
from tests.conftest import ServerThread, scratch_pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    with scratch_pg_database("cvflow_mig") as url:
        yield url


def _diff(url: str) -> list[object]:
    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, SQLModel.metadata))
    finally:
        engine.dispose()


def test_models_and_migrations_agree(empty_database):
    db.migrate(empty_database)
    assert _diff(empty_database) == []


def test_an_unmigrated_database_differs(empty_database):
    # Guards the test above: comparing against nothing must report every table.
    diff = _diff(empty_database)
    added = {d[1].name for d in diff if d[0] == "add_table"}
    assert {t.name for t in SQLModel.metadata.sorted_tables} <= added


def test_migrations_go_down_and_up_again(empty_database):
    cfg = db.alembic_config(empty_database)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    engine = sa.create_engine(empty_database)
    try:
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    command.upgrade(cfg, "head")
    engine = sa.create_engine(empty_database)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head
    finally:
        engine.dispose()
    assert _diff(empty_database) == []


def test_readyz_refuses_until_the_database_is_migrated(empty_database, tmp_path):
    settings = Settings.create(data_dir=tmp_path, database_url=empty_database, environ={}, auto_migrate=False)
    with ServerThread(create_app(settings)) as server:
        url = f"http://127.0.0.1:{server.port}"
        r = httpx.get(url + "/readyz")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "database_unavailable"
        assert "cvflow-hub migrate" in r.json()["error"]["message"]
        assert httpx.get(url + "/healthz").status_code == 200
        db.migrate(empty_database)
        assert httpx.get(url + "/readyz").status_code == 200
