"""package kind: model or dataset

Adds ``packages.kind`` (``model`` or ``dataset``, the manifest's ``package.kind``), indexed,
so search can filter on it (``GET /api/v1/packages?kind=dataset``). Like ``task`` and
``framework`` it follows the package's latest version; publishing sets it.

Existing rows are backfilled from the manifests the hub stores (``versions.manifest``, the
JSON of ``Manifest.to_dict()``): the version named by ``latest_version``, or, for a package
whose versions are all yanked, its newest version. A manifest without ``kind`` is a model.

The column is added with a server default of ``'model'`` because SQLite adds a NOT NULL
column only with one (and without a table rebuild, which would cascade into versions);
PostgreSQL's default is dropped again after the backfill, as in 0006.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def _kind(manifest: str) -> str:
    try:
        kind = json.loads(manifest).get("kind")
    except (ValueError, AttributeError):
        return "model"
    return kind if kind in ("model", "dataset") else "model"


def upgrade() -> None:
    op.add_column('packages', sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16),
                                        nullable=False, server_default='model'))
    op.create_index(op.f('ix_packages_kind'), 'packages', ['kind'], unique=False)
    conn = op.get_bind()
    packages = sa.table('packages', sa.column('id', sa.Integer), sa.column('latest_version', sa.String),
                        sa.column('kind', sa.String))
    versions = sa.table('versions', sa.column('package_id', sa.Integer), sa.column('version', sa.String),
                        sa.column('sort_key', sa.String), sa.column('manifest', sa.Text))
    latest = dict(conn.execute(sa.select(packages.c.id, packages.c.latest_version)).all())
    newest: dict[int, str] = {}  # package id -> the kind of its newest version
    at_latest: dict[int, str] = {}  # package id -> the kind of its latest_version
    rows = conn.execute(sa.select(versions.c.package_id, versions.c.version, versions.c.manifest)
                        .order_by(versions.c.package_id, versions.c.sort_key.desc()))
    for package_id, version, manifest in rows:
        if package_id in newest and version != latest.get(package_id):
            continue
        kind = _kind(manifest)
        newest.setdefault(package_id, kind)
        if version == latest.get(package_id):
            at_latest[package_id] = kind
    for package_id, kind in {**newest, **at_latest}.items():
        if kind != "model":
            conn.execute(sa.update(packages).where(packages.c.id == package_id).values(kind=kind))
    if conn.dialect.name == 'postgresql':
        op.alter_column('packages', 'kind', server_default=None)


def downgrade() -> None:
    op.drop_index(op.f('ix_packages_kind'), table_name='packages')
    op.drop_column('packages', 'kind')
