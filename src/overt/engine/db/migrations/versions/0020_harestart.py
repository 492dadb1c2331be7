"""harestart: cluster fencing policy, host unreachable since, VM HA priority

Revision ID: 0020_harestart
Revises: 0019_lease
Create Date: 2026-11-30 23:55:56.277479
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables


revision = '0020_harestart'
down_revision = '0019_lease'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fencing_policy', sa.JSON(), nullable=False,
                                      server_default='{}'))
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unreachable_since',
                                      overt.engine.db.tables.UtcDateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ha_priority', sa.Integer(), nullable=False,
                                      server_default='1'))
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.alter_column('fencing_policy', server_default=None)
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.alter_column('ha_priority', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('ha_priority')
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('unreachable_since')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('fencing_policy')
