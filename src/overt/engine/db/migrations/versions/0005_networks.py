"""networks: STP, vNIC profile options, cluster networks, MAC pools, host network attachments

Revision ID: 0005_netw
Revises: 0004
Create Date: 2026-11-30 17:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_netw'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cluster_networks',
    sa.Column('cluster_id', sa.Uuid(), nullable=False),
    sa.Column('network_id', sa.Uuid(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['network_id'], ['networks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('cluster_id', 'network_id')
    )
    op.create_table('mac_pools',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('allow_duplicates', sa.Boolean(), nullable=False),
    sa.Column('default_pool', sa.Boolean(), nullable=False),
    sa.Column('ranges', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('cluster_mac_pools',
    sa.Column('cluster_id', sa.Uuid(), nullable=False),
    sa.Column('mac_pool_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['mac_pool_id'], ['mac_pools.id'], ),
    sa.PrimaryKeyConstraint('cluster_id')
    )
    op.create_table('host_network_attachments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('host_id', sa.Uuid(), nullable=False),
    sa.Column('network_id', sa.Uuid(), nullable=False),
    sa.Column('nic_name', sa.String(length=64), nullable=False),
    sa.Column('boot_protocol', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('netmask', sa.String(length=64), nullable=True),
    sa.Column('gateway', sa.String(length=64), nullable=True),
    sa.Column('applied', sa.Boolean(), nullable=False),
    sa.Column('committed', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['network_id'], ['networks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('host_id', 'network_id')
    )
    with op.batch_alter_table('host_network_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_host_network_attachments_host_id'), ['host_id'],
                              unique=False)

    # Existing rows get the defaults: no STP, no mirroring, no filter, no properties.
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stp', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('vnic_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('port_mirroring', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('network_filter', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('custom_properties', sa.JSON(), nullable=False,
                                      server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('vnic_profiles', schema=None) as batch_op:
        batch_op.drop_column('custom_properties')
        batch_op.drop_column('network_filter')
        batch_op.drop_column('port_mirroring')
    with op.batch_alter_table('networks', schema=None) as batch_op:
        batch_op.drop_column('stp')
    with op.batch_alter_table('host_network_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_host_network_attachments_host_id'))
    op.drop_table('host_network_attachments')
    op.drop_table('cluster_mac_pools')
    op.drop_table('mac_pools')
    op.drop_table('cluster_networks')
