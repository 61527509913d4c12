"""framework and oidc identities

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:41:41.005509
"""

from __future__ import annotations

import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('user_identities',
    sa.Column('provider', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('provider', 'subject')
    )
    with op.batch_alter_table('user_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_identities_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('framework', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_packages_framework'), ['framework'], unique=False)

    # Fill the new column from each package's latest manifest.
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT p.id, v.manifest FROM packages p JOIN versions v "
        "ON v.package_id = p.id AND v.version = p.latest_version")).all()
    for package_id, manifest in rows:
        framework = (json.loads(manifest).get("framework") or "")[:32] or None
        bind.execute(sa.text("UPDATE packages SET framework = :f WHERE id = :i"), {"f": framework, "i": package_id})



def downgrade() -> None:
    with op.batch_alter_table('packages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_packages_framework'))
        batch_op.drop_column('framework')

    with op.batch_alter_table('user_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_identities_user_id'))

    op.drop_table('user_identities')
