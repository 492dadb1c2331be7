"""required networks: the host networks a node reports realised (hosts.reported_networks)

Revision ID: 0013_reqnet
Revises: 0012_cinit
Create Date: 2026-11-30 21:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_reqnet'
down_revision = '0012_cinit'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reported_networks', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('reported_networks')
