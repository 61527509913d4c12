"""normalised package names: one package per look-alike name in a namespace

Adds ``packages.normalized_name`` (``cvflow.names.normalize_name`` of the name, PEP 503's
rule: runs of ``-``, ``_`` and ``.`` become one ``-``, letters lowercase) and a unique index
on ``(namespace_id, normalized_name)``, so ``alice/a-b`` and ``alice/a_b`` cannot both exist.

Existing rows are backfilled. If a hub already holds look-alikes, the migration does not
fail and changes no name: per namespace, the oldest package (by ``created_at``, then ``id``)
keeps the plain normalised key and is the one every other spelling finds; each later one
gets ``<normalised>~<id>`` (``~`` never occurs in a normalised name, so no lookup lands on
it). Those later packages stay reachable by their exact name, and no new look-alike of any
of them can be created.

The column is added with a server default of ``''`` because SQLite adds a NOT NULL column
only with one; PostgreSQL's is dropped again after the backfill. The unique rule is an
index, not a table constraint, so SQLite needs no table rebuild (a rebuild would drop and
copy ``packages``, which with foreign keys on cascades into versions).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

import re

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_RUNS = re.compile(r"[-_.]+")  # kept here: a migration must not change when cvflow.names does


def upgrade() -> None:
    op.add_column('packages', sa.Column('normalized_name', sqlmodel.sql.sqltypes.AutoString(length=96),
                                        nullable=False, server_default=''))
    conn = op.get_bind()
    packages = sa.table('packages', sa.column('id', sa.Integer), sa.column('namespace_id', sa.Integer),
                        sa.column('name', sa.String), sa.column('created_at', sa.DateTime),
                        sa.column('normalized_name', sa.String))
    rows = conn.execute(sa.select(packages.c.id, packages.c.namespace_id, packages.c.name)
                        .order_by(packages.c.created_at, packages.c.id)).all()
    taken: set[tuple[int, str]] = set()
    for id_, namespace_id, name in rows:
        key = _RUNS.sub("-", name).lower()
        if (namespace_id, key) in taken:
            key = f"{key}~{id_}"
        taken.add((namespace_id, key))
        conn.execute(sa.update(packages).where(packages.c.id == id_).values(normalized_name=key))
    if conn.dialect.name != 'sqlite':
        op.alter_column('packages', 'normalized_name', server_default=None)
    op.create_index('uq_packages_namespace_normalized', 'packages', ['namespace_id', 'normalized_name'],
                    unique=True)


def downgrade() -> None:
    op.drop_index('uq_packages_namespace_normalized', table_name='packages')
    op.drop_column('packages', 'normalized_name')
