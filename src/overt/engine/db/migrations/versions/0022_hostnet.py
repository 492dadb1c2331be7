"""hostnet: IPv6 assignments of host network attachments

Revision ID: 0022_hostnet
Revises: 0021_cdrom
Create Date: 2026-12-01 01:04:41.029552
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables

revision = '0022_hostnet'
down_revision = '0021_cdrom'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('host_network_attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ipv6_boot_protocol', sa.String(length=16), server_default='none', nullable=False))
        batch_op.add_column(sa.Column('ipv6_address', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('ipv6_prefix', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ipv6_gateway', sa.String(length=64), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('host_network_attachments', schema=None) as batch_op:
        batch_op.drop_column('ipv6_gateway')
        batch_op.drop_column('ipv6_prefix')
        batch_op.drop_column('ipv6_address')
        batch_op.drop_column('ipv6_boot_protocol')

