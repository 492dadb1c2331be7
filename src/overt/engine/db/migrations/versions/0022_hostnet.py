"""hostnet: IPv6 assignments of host network attachments, host bonds

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
    op.create_table('host_bonds',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('host_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=15), nullable=False),
    sa.Column('slaves', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('host_id', 'name')
    )
    with op.batch_alter_table('host_bonds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_host_bonds_host_id'), ['host_id'], unique=False)
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
    with op.batch_alter_table('host_bonds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_host_bonds_host_id'))
    op.drop_table('host_bonds')

