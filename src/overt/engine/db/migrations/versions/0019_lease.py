"""lease: VM leases and lease renewal reports

Revision ID: 0019_lease
Revises: 0018_notify
Create Date: 2026-11-30 23:56:51.635060
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import overt.engine.db.tables


revision = '0019_lease'
down_revision = '0018_notify'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('storage_lease_renewals',
    sa.Column('host_id', sa.Uuid(), nullable=False),
    sa.Column('storage_domain_id', sa.Uuid(), nullable=False),
    sa.Column('renewed_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('lease_timeout_s', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['storage_domain_id'], ['storage_domains.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('host_id', 'storage_domain_id')
    )
    op.create_table('vm_lease_renewals',
    sa.Column('vm_id', sa.Uuid(), nullable=False),
    sa.Column('host_id', sa.Uuid(), nullable=False),
    sa.Column('storage_domain_id', sa.Uuid(), nullable=False),
    sa.Column('renewed_at', overt.engine.db.tables.UtcDateTime(timezone=True), nullable=False),
    sa.Column('lease_timeout_s', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['storage_domain_id'], ['storage_domains.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vm_id'], ['vms.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vm_id')
    )
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_storage_domain_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('lease_slot', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_vms_lease_storage_domain_id_storage_domains', 'storage_domains', ['lease_storage_domain_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('vms', schema=None) as batch_op:
        batch_op.drop_constraint('fk_vms_lease_storage_domain_id_storage_domains', type_='foreignkey')
        batch_op.drop_column('lease_slot')
        batch_op.drop_column('lease_storage_domain_id')

    op.drop_table('vm_lease_renewals')
    op.drop_table('storage_lease_renewals')
