"""snapshots: snapshots and snapshot_volumes

Revision ID: 0015_snap
Revises: 0014_migpol
Create Date: 2026-11-30 21:01:22.518733
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables


revision = '0015_snap'
down_revision = '0014_migpol'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('snapshots',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('vm_id', sa.Uuid(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('preview_of', sa.Uuid(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['preview_of'], ['snapshots.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshots_vm_id'), ['vm_id'], unique=False)

    op.create_table('snapshot_volumes',
    sa.Column('pk', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('snapshot_id', sa.Uuid(), nullable=False),
    sa.Column('disk_id', sa.Uuid(), nullable=False),
    sa.Column('image_path', sa.Text(), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['disk_id'], ['disks.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['snapshot_id'], ['snapshots.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pk'),
    sa.UniqueConstraint('snapshot_id', 'disk_id')
    )
    with op.batch_alter_table('snapshot_volumes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshot_volumes_disk_id'), ['disk_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_snapshot_volumes_snapshot_id'), ['snapshot_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('snapshot_volumes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_snapshot_volumes_snapshot_id'))
        batch_op.drop_index(batch_op.f('ix_snapshot_volumes_disk_id'))

    op.drop_table('snapshot_volumes')
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_snapshots_vm_id'))

    op.drop_table('snapshots')
