"""migration policies: migration options of clusters and VMs, a VM's max downtime

Revision ID: 0014_migpol
Revises: 0013_reqnet
Create Date: 2026-11-30 21:02:55
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014_migpol'
down_revision = '0013_reqnet'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('migration', sa.JSON(), nullable=False,
                                      server_default='{}'))
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('migration', sa.JSON(), nullable=False,
                                      server_default='{}'))
        batch_op.add_column(sa.Column('migration_downtime_ms', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_column('migration_downtime_ms')
        batch_op.drop_column('migration')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('migration')
