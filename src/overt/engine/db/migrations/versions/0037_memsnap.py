"""memsnap: snapshots with memory (their memory volumes) and the snapshot a VM's next
start resumes from

Revision ID: 0037_memsnap
Revises: 0036_iscsirest
Create Date: 2026-12-03 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0037_memsnap'
down_revision = '0036_iscsirest'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('memory_domain_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('memory_volume', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('memory_metadata_volume', sa.Text(), nullable=True))
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resume_snapshot_id', sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('resume_snapshot_id')
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_column('memory_metadata_volume')
        batch_op.drop_column('memory_volume')
        batch_op.drop_column('memory_domain_id')
