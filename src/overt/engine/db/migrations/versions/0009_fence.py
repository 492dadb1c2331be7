"""power management: hosts' pm_enabled and their fence agents (passwords sealed)

Revision ID: 0009_fence
Revises: 0008_storage
Create Date: 2026-11-30 17:58:27.277330
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables


revision = '0009_fence'
down_revision = '0008_storage'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fence_agents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('host_id', sa.Uuid(), nullable=False),
    sa.Column('order', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('password_sealed', sa.Text(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fence_agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fence_agents_host_id'), ['host_id'], unique=False)

    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pm_enabled', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('pm_enabled')

    with op.batch_alter_table('fence_agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fence_agents_host_id'))

    op.drop_table('fence_agents')
