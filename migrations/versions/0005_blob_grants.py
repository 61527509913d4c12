"""who may reference a blob: blob_grants

A version may reference a blob only if its publisher uploaded the bytes (a grant) or may read
a version that references it already. Existing blobs are granted to the owners and the
publisher of every version that references them (and copies to the hub path that made them),
so nothing stored changes behaviour.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_REFS = "FROM files f JOIN versions v ON v.id = f.version_id JOIN packages p ON p.id = v.package_id"


def upgrade() -> None:
    op.create_table('blob_grants',
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.ForeignKeyConstraint(['sha256'], ['blobs.sha256'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sha256', 'holder')
    )
    user = "'user:' || CAST({} AS VARCHAR(20))"
    holders = [
        # whoever published a version that references the blob
        f"SELECT f.sha256 AS sha256, {user.format('v.published_by')} AS holder {_REFS} "
        "WHERE v.published_by IS NOT NULL",
        # the user whose namespace owns the package
        f"SELECT f.sha256, {user.format('u.id')} {_REFS} JOIN users u ON u.namespace_id = p.namespace_id",
        # the owners of the organisation that owns it
        f"SELECT f.sha256, {user.format('m.user_id')} {_REFS} "
        "JOIN organisations o ON o.namespace_id = p.namespace_id "
        "JOIN org_members m ON m.org_id = o.id AND m.role = 'owner'",
        # the package's own owners
        f"SELECT f.sha256, {user.format('r.user_id')} {_REFS} "
        "JOIN package_roles r ON r.package_id = p.id AND r.role = 'owner'",
        # copies the hub made itself (mirror sync, pull-through, bundle import)
        f"SELECT f.sha256, 'hub:' || po.via {_REFS} JOIN package_origins po ON po.package_id = p.id",
    ]
    op.execute(f"INSERT INTO blob_grants (sha256, holder) SELECT DISTINCT g.sha256, g.holder FROM "
               f"({' UNION '.join(holders)}) g")


def downgrade() -> None:
    op.drop_table('blob_grants')
