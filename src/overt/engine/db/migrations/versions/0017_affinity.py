"""affinity groups: VMs kept together or apart, on or off hosts

Revision ID: 0017_affinity
Revises: 0016_drain
Create Date: 2026-11-30 21:41:32.654789
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables


revision = '0017_affinity'
down_revision = '0016_drain'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('affinity_groups',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('cluster_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('priority', sa.Float(), nullable=False),
    sa.Column('vms_rule_enabled', sa.Boolean(), nullable=False),
    sa.Column('vms_rule_positive', sa.Boolean(), nullable=False),
    sa.Column('vms_rule_enforcing', sa.Boolean(), nullable=False),
    sa.Column('hosts_rule_enabled', sa.Boolean(), nullable=False),
    sa.Column('hosts_rule_positive', sa.Boolean(), nullable=False),
    sa.Column('hosts_rule_enforcing', sa.Boolean(), nullable=False),
    sa.Column('created_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['clusters.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cluster_id', 'name')
    )
    with op.batch_alter_table('affinity_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_affinity_groups_cluster_id'), ['cluster_id'], unique=False)

    op.create_table('affinity_group_hosts',
    sa.Column('group_id', sa.Uuid(), nullable=False),
    sa.Column('host_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['affinity_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'host_id')
    )
    with op.batch_alter_table('affinity_group_hosts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_affinity_group_hosts_host_id'), ['host_id'], unique=False)

    op.create_table('affinity_group_vms',
    sa.Column('group_id', sa.Uuid(), nullable=False),
    sa.Column('vm_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['affinity_groups.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'vm_id')
    )
    with op.batch_alter_table('affinity_group_vms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_affinity_group_vms_vm_id'), ['vm_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('affinity_group_vms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_affinity_group_vms_vm_id'))

    op.drop_table('affinity_group_vms')
    with op.batch_alter_table('affinity_group_hosts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_affinity_group_hosts_host_id'))

    op.drop_table('affinity_group_hosts')
    with op.batch_alter_table('affinity_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_affinity_groups_cluster_id'))

    op.drop_table('affinity_groups')
