"""annotation item lease index

The queue first looks for the item the caller already holds (leased_by, project_id); without an
index that walked every item of the project (bench/annotate_page.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 17:55:53.318305
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('annotation_items', schema=None) as batch_op:
        batch_op.create_index('ix_annotation_items_lease', ['leased_by', 'project_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('annotation_items', schema=None) as batch_op:
        batch_op.drop_index('ix_annotation_items_lease')

