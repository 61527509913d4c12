"""training jobs and version lineage

Training jobs that workers claim (docs/training.md), fine-tune settings on annotation projects,
and the lineage of fine-tuned versions.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 20:54:04.746863
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('training_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('base_package', sqlmodel.sql.sqltypes.AutoString(length=104), nullable=False),
    sa.Column('base_version', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('trainer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('dataset_package', sqlmodel.sql.sqltypes.AutoString(length=104), nullable=False),
    sa.Column('dataset_version', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('target_package', sqlmodel.sql.sqltypes.AutoString(length=104), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('claimed_by', sa.Integer(), nullable=True),
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('lease_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('lease_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=True),
    sa.Column('history', sa.JSON(), nullable=False),
    sa.Column('log_tail', sa.Text(), nullable=False),
    sa.Column('checkpoint_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('checkpoint_state', sa.JSON(), nullable=True),
    sa.Column('preview_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('result_version', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('metric', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('base_metric', sa.Float(), nullable=True),
    sa.Column('result_metric', sa.Float(), nullable=True),
    sa.Column('promoted', sa.Boolean(), nullable=True),
    sa.Column('device', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['checkpoint_sha256'], ['blobs.sha256'], ),
    sa.ForeignKeyConstraint(['claimed_by'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['preview_sha256'], ['blobs.sha256'], ),
    sa.ForeignKeyConstraint(['project_id'], ['annotation_projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_jobs_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_training_jobs_state', ['state', 'id'], unique=False)
        batch_op.create_index('uq_training_jobs_one_active', ['project_id'], unique=True, sqlite_where=sa.text("state IN ('queued', 'running')"), postgresql_where=sa.text("state IN ('queued', 'running')"))

    op.create_table('version_lineage',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('base_package', sqlmodel.sql.sqltypes.AutoString(length=104), nullable=False),
    sa.Column('base_version', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('base_version_id', sa.Integer(), nullable=True),
    sa.Column('dataset_package', sqlmodel.sql.sqltypes.AutoString(length=104), nullable=False),
    sa.Column('dataset_version', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('dataset_version_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['base_version_id'], ['versions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['versions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id')
    )
    with op.batch_alter_table('version_lineage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_version_lineage_base_version_id'), ['base_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_version_lineage_dataset_version_id'), ['dataset_version_id'], unique=False)

    with op.batch_alter_table('annotation_projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('finetune_every', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('finetune_target', sqlmodel.sql.sqltypes.AutoString(length=104), nullable=True))
        batch_op.add_column(sa.Column('finetune_trainer', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('finetune_hyperparameters', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('finetune_accepted', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('model_metric', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('annotation_projects', schema=None) as batch_op:
        batch_op.drop_column('model_metric')
        batch_op.drop_column('finetune_accepted')
        batch_op.drop_column('finetune_hyperparameters')
        batch_op.drop_column('finetune_trainer')
        batch_op.drop_column('finetune_target')
        batch_op.drop_column('finetune_every')

    with op.batch_alter_table('version_lineage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_version_lineage_dataset_version_id'))
        batch_op.drop_index(batch_op.f('ix_version_lineage_base_version_id'))

    op.drop_table('version_lineage')
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_training_jobs_one_active', sqlite_where=sa.text("state IN ('queued', 'running')"), postgresql_where=sa.text("state IN ('queued', 'running')"))
        batch_op.drop_index('ix_training_jobs_state')
        batch_op.drop_index(batch_op.f('ix_training_jobs_project_id'))

    op.drop_table('training_jobs')
