"""git indexer: repositories, index jobs and published tags

New tables only. ``index_jobs`` has a partial unique index so that at most one job per
repository waits at a time, on SQLite and PostgreSQL alike.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:13:42.267500
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('repositories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace_id', sa.Integer(), nullable=False),
    sa.Column('registered_by', sa.Integer(), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('display_url', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('subdir', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('branch_pattern', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('tag_pattern', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('private', sa.Boolean(), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=True),
    sa.Column('webhook_secret', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('last_polled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_indexed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('last_result', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['namespace_id'], ['namespaces.id'], ),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], ),
    sa.ForeignKeyConstraint(['registered_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('display_url', 'subdir', name='uq_repositories_url_subdir')
    )
    with op.batch_alter_table('repositories', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_repositories_last_polled_at'), ['last_polled_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_repositories_namespace_id'), ['namespace_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_repositories_package_id'), ['package_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_repositories_registered_by'), ['registered_by'], unique=False)

    op.create_table('index_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('lease_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('index_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_index_jobs_repository_id'), ['repository_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_index_jobs_state'), ['state'], unique=False)
        batch_op.create_index('uq_index_jobs_one_queued', ['repository_id'], unique=True, sqlite_where=sa.text("state = 'queued'"), postgresql_where=sa.text("state = 'queued'"))

    op.create_table('repository_tags',
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('commit', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('repository_id', 'tag')
    )


def downgrade() -> None:
    op.drop_table('repository_tags')
    with op.batch_alter_table('index_jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_index_jobs_one_queued', sqlite_where=sa.text("state = 'queued'"), postgresql_where=sa.text("state = 'queued'"))
        batch_op.drop_index(batch_op.f('ix_index_jobs_state'))
        batch_op.drop_index(batch_op.f('ix_index_jobs_repository_id'))

    op.drop_table('index_jobs')
    with op.batch_alter_table('repositories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_repositories_registered_by'))
        batch_op.drop_index(batch_op.f('ix_repositories_package_id'))
        batch_op.drop_index(batch_op.f('ix_repositories_namespace_id'))
        batch_op.drop_index(batch_op.f('ix_repositories_last_polled_at'))

    op.drop_table('repositories')
